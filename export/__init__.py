"""export: checkpoint -> model artifact (score graph, tokenizer files, manifest).

    score_graph.py   LabelScoreModel: transformer body + the K label rows of the LM head
    onnx_export.py   export_score_onnx: torch.onnx.export(dynamo=True), dynamic batch/sequence
    quantize.py      quantize_score_int8: onnxruntime dynamic QInt8
    validate.py      validate_score_graph: names, shapes, then parity against torch (typed errors)
    artifact.py      export_artifact: all of the above into a folder serving can load
"""
