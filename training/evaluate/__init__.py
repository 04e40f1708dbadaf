"""Evaluation in one place: every figure training and `afrl eval` report comes from this package.

    training.metrics                    pure figure functions over gold and predicted grades
                                        (accuracy, macro-F1, QWK, NDCG, ECE, entropies, per-rule accuracy)
    training.evaluate.reports           any predictor on examples: `grade_report`, `explanation_report`,
                                        `predict_examples` (no torch: `afrl eval` measures ONNX artifacts with it)
    training.evaluate.torch_model       a torch model during training: `evaluate_model` (grades from one prefill,
                                        explanations by greedy decoding), `TorchPredictor` (the export's score
                                        computation), `latency_ms`, `model_size`

`afrl.evaluation` (the `afrl eval` command) drives these for artifacts and
checkpoints. This package imports no torch; `torch_model` does.
"""

from training.evaluate.reports import explanation_report, grade_report, predict_examples

__all__ = ["explanation_report", "grade_report", "predict_examples"]
