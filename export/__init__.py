"""export: checkpoint -> model artifact (the graphs of afrl/graphs.py, tokenizer files, manifest).

score_graph.py     LabelScoreModel: transformer body + the K label rows of the LM head, last position
cache_graphs.py    PrefixModel, ScorePrefixModel, DecodeModel: the KV-cache graphs as torch wrappers
onnx_export.py     export_graph: torch.onnx.export(dynamo=True), dynamic batch/sequence/cache dims
fusion.py          fuse_graph: RMSNorm, rotary, attention as onnxruntime contrib ops, contract unchanged
float16.py         convert_fp16: onnxruntime's float16 converter, float32 logits and norm statistics
quantize.py        quantize_int8: onnxruntime dynamic QInt8, label head kept FP32
weights.py         share_weights: one weights.data for all graphs, each tensor stored once
validate.py        validate_score_graph: names, shapes, then parity against torch (typed errors)
validate_cache.py  validate_cache_graphs: prefix + score_prefix vs torch and the score graph, decode vs greedy
verify.py          verify_artifact: the refusals at load (hashes, contract names, dtypes, labels)
artifact.py        export_artifact: all of the above into a folder serving can load
"""
