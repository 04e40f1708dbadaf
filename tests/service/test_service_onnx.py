"""OnnxScoreBackend over a tiny real ONNX graph, end to end through the app."""

from __future__ import annotations

import numpy as np
import pytest
from service_testkit import DOCS, reference_onnx_logits

from afrl.manifest import ArtifactError
from afrl.scoring import grade_results
from service.backend import Backend, OnnxScoreBackend

QUERY = "insulated water bottle 500ml"


def test_onnx_backend_reads_left_padded_batches(artifact_dir, encoder):
    backend = OnnxScoreBackend(artifact_dir / "score.onnx", num_labels=5, providers=["CPUExecutionProvider"],
                               intra_op_threads=1)  # fmt: skip
    assert isinstance(backend, Backend)
    backend.health()
    rows = [p.input_ids for p in encoder().encode(QUERY, DOCS[:3])]
    length = max(map(len, rows)) + 5
    ids = np.full((3, length), 151643, dtype=np.int64)
    mask = np.zeros_like(ids)
    for b, row in enumerate(rows):
        ids[b, length - len(row) :], mask[b, length - len(row) :] = row, 1
    out = backend.label_logits(ids, mask)
    assert out.shape == (3, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack([reference_onnx_logits(r, 5) for r in rows]), rtol=1e-5, atol=1e-4)


def test_onnx_backend_refuses_a_missing_provider_and_a_label_count_mismatch(artifact_dir):
    with pytest.raises(ArtifactError, match="NoSuchExecutionProvider"):
        OnnxScoreBackend(artifact_dir / "score.onnx", 5, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ArtifactError, match="3 labels"):
        OnnxScoreBackend(artifact_dir / "score.onnx", 3, providers=["CPUExecutionProvider"])


def test_app_over_onnx_matches_reference_and_batching(make_client, encoder):
    client, _ = make_client(onnx=True, max_batch_tokens=700, intra_op_threads=1)
    docs = [f"{DOCS[i % 10]} " + "detail " * (i * 4) for i in range(20)]
    r = client.post("/v1/score", json={"query": QUERY, "documents": docs})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    rows = [p.input_ids for p in encoder().encode(QUERY, docs)]
    expected = grade_results(np.stack([reference_onnx_logits(row, 5) for row in rows]), [0, 1, 2, 3, 4])
    for res, exp in zip(results, expected):
        assert res["grade"] == exp.grade
        np.testing.assert_allclose(res["probs"], exp.probs, atol=1e-5)
    alone = client.post("/v1/score", json={"query": QUERY, "documents": [docs[13]]}).json()["results"][0]
    np.testing.assert_allclose(alone["probs"], results[13]["probs"], atol=1e-6)
