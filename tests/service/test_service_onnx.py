"""OnnxBackend over tiny real ONNX graphs (afrl/graphs.py contract), and the provider choice."""

from __future__ import annotations

import numpy as np
import pytest
from service_testkit import DOCS, PAD_ID, chain_ids, reference_onnx_logits

from afrl.manifest import ArtifactError, load_manifest
from afrl.padding import left_pad
from afrl.scoring import grade_results
from service.backend import Backend, OnnxBackend, supports_decode, supports_prefix
from service.kv import join
from service.onnx_session import CudaGraphRunner, cuda_graph_shapes, row_bucket
from service.providers import CPU, CUDA, resolve_providers

QUERY = "insulated water bottle 500ml"
CPU_PLAN = resolve_providers(["CPUExecutionProvider"], [CPU])


def backend_for(folder, **kw) -> OnnxBackend:
    return OnnxBackend(folder, load_manifest(folder), kw.pop("plan", CPU_PLAN), intra_op_threads=1, **kw)


def test_onnx_backend_reads_left_padded_batches(artifact_dir, encoder):
    backend = backend_for(artifact_dir)
    assert isinstance(backend, Backend) and not supports_prefix(backend) and not supports_decode(backend)
    backend.health()
    rows = [p.input_ids for p in encoder().encode(QUERY, DOCS[:3])]
    ids, mask = left_pad(rows, PAD_ID, max(map(len, rows)) + 5)
    out = backend.label_logits(ids, mask)
    assert out.shape == (3, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack([reference_onnx_logits(r, 5) for r in rows]), rtol=1e-5, atol=1e-4)


def test_onnx_backend_refuses_a_label_count_mismatch(artifact_dir):
    manifest = load_manifest(artifact_dir)
    manifest.labels.values, manifest.labels.tokens, manifest.labels.token_ids = [0, 1, 2], ["0", "1", "2"], [15, 16, 17]
    with pytest.raises(ArtifactError, match="3 labels"):
        OnnxBackend(artifact_dir, manifest, CPU_PLAN)


def test_provider_choice():
    assert resolve_providers(["auto"], [CPU]).providers == [CPU]
    gpu = resolve_providers(["auto"], [CUDA, CPU], cuda_device_id=1)
    assert gpu.providers == [CUDA, CPU] and gpu.on_gpu and gpu.device_id == 1
    assert gpu.options[0]["device_id"] == 1 and gpu.options[1] == {}
    assert not resolve_providers([CPU, CPU], [CUDA, CPU]).on_gpu
    assert resolve_providers([CUDA], [CUDA, CPU], cuda_graphs=True).cuda_graphs
    with pytest.raises(ArtifactError, match="NoSuchExecutionProvider"):
        resolve_providers(["NoSuchExecutionProvider"], [CPU])
    with pytest.raises(ArtifactError, match="CUDAExecutionProvider"):
        resolve_providers([CUDA, CPU], [CPU])  # asked for a GPU, never silently on the CPU
    with pytest.raises(ArtifactError, match="CUDA_GRAPHS"):
        resolve_providers(["auto"], [CPU], cuda_graphs=True)
    with pytest.raises(ArtifactError, match="auto"):
        resolve_providers(["auto", CPU], [CPU])


def test_an_artifact_cuda_cannot_run_is_served_on_the_cpu_under_auto_and_refused_on_cuda(artifact_dir, caplog):
    from service.providers import cuda_blocker

    why = "the score graph(s) fuse attention as GroupQueryAttention ..."
    auto = resolve_providers(["auto"], [CUDA, CPU], cuda_blocked=why)
    assert auto.providers == [CPU] and not auto.on_gpu
    warned = [r.getMessage() for r in caplog.records if "serving on the CPU" in r.getMessage()]
    assert len(warned) == 1 and why in warned[0] and "afrl export --no-fuse" in warned[0]
    assert resolve_providers(["auto"], [CPU], cuda_blocked=why).providers == [CPU]
    for requested in ([CUDA], [CUDA, CPU]):
        with pytest.raises(ArtifactError, match=r"runs this artifact on CUDA, but the score graph.*--no-fuse"):
            resolve_providers(requested, [CUDA, CPU], cuda_blocked=why)
    cpu_first = resolve_providers([CPU, CUDA], [CUDA, CPU], cuda_blocked=why)
    assert cpu_first.providers == [CPU, CUDA] and not cpu_first.on_gpu  # the CPU takes every node
    with pytest.raises(ArtifactError, match="CUDA_GRAPHS.*--no-fuse"):
        resolve_providers(["auto"], [CUDA, CPU], cuda_graphs=True, cuda_blocked=why)

    manifest = load_manifest(artifact_dir)
    fused = {"score": {"GroupQueryAttention": 2, "RotaryEmbedding": 4}, "decode": {"GroupQueryAttention": 2}}
    assert "score, decode graph(s)" in (cuda_blocker(manifest.model_copy(update={"fusions": fused})) or "")
    # FP16 artifacts: norms and rotary fused, attention plain (GroupQueryAttention 0); unfused: no fusions.
    for fusions in ({"score": {"GroupQueryAttention": 0, "RotaryEmbedding": 4}}, {}):
        assert cuda_blocker(manifest.model_copy(update={"fusions": fusions})) is None


@pytest.mark.parametrize("gqa", [2, 0])
def test_the_loader_keeps_a_fused_attention_artifact_off_cuda(prefix_artifact_dir, monkeypatch, caplog, gqa):
    """Through onnx_backend_factory, as if onnxruntime-gpu were installed; gqa=0 is an FP16 artifact's fusions."""
    import service.artifact_loader as loader
    from service.settings import ServiceSettings

    monkeypatch.setattr(loader, "available_providers", lambda: [CUDA, CPU])
    fusions = {g: {"GroupQueryAttention": gqa, "RotaryEmbedding": 4} for g in ("score", "score_prefix", "decode")}
    manifest = load_manifest(prefix_artifact_dir).model_copy(update={"fusions": fusions})
    auto = ServiceSettings(model=prefix_artifact_dir, intra_op_threads=1)
    cuda = ServiceSettings(model=prefix_artifact_dir, intra_op_threads=1, providers=CUDA)
    if gqa:
        backend = loader.onnx_backend_factory(prefix_artifact_dir, manifest, auto)
        assert isinstance(backend, OnnxBackend) and backend.providers == [CPU]
        assert "serving on the CPU although CUDA is available" in caplog.text and "did not start" not in caplog.text
        with pytest.raises(ArtifactError, match=r"^AFRL_PROVIDERS=CUDAExecutionProvider runs this artifact on CUDA"):
            loader.onnx_backend_factory(prefix_artifact_dir, manifest, cuda)
    else:  # CUDA is tried (this CPU-only onnxruntime then falls back, as for any artifact)
        loader.onnx_backend_factory(prefix_artifact_dir, manifest, auto)
        assert "CUDAExecutionProvider did not start" in caplog.text and "although CUDA" not in caplog.text
        with pytest.raises(ArtifactError, match="CUDAExecutionProvider did not start"):
            loader.onnx_backend_factory(prefix_artifact_dir, manifest, cuda)


def test_pip_installed_cuda_libraries_are_preloaded_only_with_onnxruntime_gpu(monkeypatch):
    import sys
    import types

    from service.providers import available_providers

    for providers, expected in (([CPU], 0), ([CUDA, CPU], 1)):
        calls: list = []
        fake = types.SimpleNamespace(
            get_available_providers=lambda p=providers: p, preload_dlls=lambda calls=calls: calls.append(1)
        )
        monkeypatch.setitem(sys.modules, "onnxruntime", fake)
        assert available_providers() == providers and len(calls) == expected


def test_cuda_graph_buckets():
    assert [row_bucket(n) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 16]
    shapes = cuda_graph_shapes([64, 512], max_batch_tokens=1024)
    assert shapes == [(1, 64), (2, 64), (4, 64), (8, 64), (16, 64), (1, 512), (2, 512)]


def test_bucketed_io_binding_runner_on_cpu_pads_rows_and_matches(artifact_dir, encoder):
    """The CUDA-graph runner's buffers and bindings, exercised on the CPU (no capture there)."""
    backend = backend_for(artifact_dir)
    runner = CudaGraphRunner(backend.score, ("input_ids", "attention_mask"), "label_logits", PAD_ID)
    rows = [p.input_ids for p in encoder().encode(QUERY, DOCS[:3])]
    ids, mask = left_pad(rows, PAD_ID, 128)
    np.testing.assert_allclose(runner.run(ids, mask), backend.label_logits(ids, mask), atol=1e-5)
    runner.run(ids[:1], mask[:1])
    assert runner.shapes == [(1, 128), (4, 128)]


def test_shared_prefix_graphs_match_the_score_graph(prefix_artifact_dir, encoder):
    backend = backend_for(prefix_artifact_dir)
    assert supports_prefix(backend) and supports_decode(backend) and backend.layers == 2
    pairs = encoder().encode(QUERY, DOCS[:4])
    prefix = backend.prefix_cache(np.asarray([pairs[0].prefix_ids]))
    assert prefix.batch == 1 and prefix.length == len(pairs[0].prefix_ids)
    ids, mask = left_pad([p.document_ids for p in pairs], PAD_ID, 64)
    logits, cache = backend.score_with_prefix(prefix, ids, mask, keep_cache=True)
    full_ids, full_mask = left_pad([p.input_ids for p in pairs], PAD_ID)
    np.testing.assert_allclose(logits, backend.label_logits(full_ids, full_mask), atol=1e-5)
    assert cache.batch == 4 and cache.length == 64 and len(cache.tensors) == 4
    no_cache = backend.score_with_prefix(prefix, ids, mask)
    assert no_cache[1] is None and np.array_equal(no_cache[0], logits)


def test_decode_continues_from_the_joined_cache(prefix_artifact_dir, encoder, tokenizer):
    backend = backend_for(prefix_artifact_dir)
    pairs = encoder().encode(QUERY, DOCS[:2])
    prefix = backend.prefix_cache(np.asarray([pairs[0].prefix_ids]))
    ids, mask = left_pad([p.document_ids for p in pairs], PAD_ID, 64)
    _, cache = backend.score_with_prefix(prefix, ids, mask, keep_cache=True)
    past = join(prefix, [cache.row(0), cache.row(1)])
    logits, present = backend.decode(np.asarray([[19], [17]]), past)  # the grade tokens "4" and "2"
    assert logits.shape == (2, tokenizer.get_vocab_size())
    assert present.length == past.length + 1 and present.mask[:, -1].tolist() == [1, 1]
    assert logits.argmax(-1).tolist() == [chain_ids(tokenizer)[0]] * 2


def test_io_binding_path_on_cpu_matches_plain_runs(prefix_artifact_dir, encoder):
    plain, bound = backend_for(prefix_artifact_dir), backend_for(prefix_artifact_dir, io_binding=True)
    pairs = encoder().encode(QUERY, DOCS[:3])
    ids, mask = left_pad([p.document_ids for p in pairs], PAD_ID, 64)
    results = []
    for backend in (plain, bound):
        prefix = backend.prefix_cache(np.asarray([pairs[0].prefix_ids]))
        logits, cache = backend.score_with_prefix(prefix, ids, mask, keep_cache=True)
        step, present = backend.decode(np.asarray([[18]]), join(prefix, [cache.row(2)]))
        results.append((logits, step, present))
    assert not isinstance(results[1][2].tensors[0], np.ndarray), "IO binding keeps the decode cache as OrtValues"
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6)
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][2].tensors[0], results[1][2].tensors[0].numpy())


def test_app_over_onnx_matches_reference_and_batching(make_client, encoder):
    client, _ = make_client(onnx=True, max_batch_tokens=700)
    docs = [f"{DOCS[i % 10]} " + "detail " * (i * 4) for i in range(20)]
    r = client.post("/v1/score", json={"query": QUERY, "documents": docs})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    rows = [p.input_ids for p in encoder().encode(QUERY, docs)]
    expected = grade_results(np.stack([reference_onnx_logits(row, 5) for row in rows]), [0, 1, 2, 3, 4])
    for res, exp in zip(results, expected, strict=True):
        assert res["grade"] == exp.grade
        np.testing.assert_allclose(res["probs"], exp.probs, atol=1e-5)
    alone = client.post("/v1/score", json={"query": QUERY, "documents": [docs[13]]}).json()["results"][0]
    np.testing.assert_allclose(alone["probs"], results[13]["probs"], atol=1e-6)


def test_a_gpu_provider_that_does_not_start_is_an_error_unless_auto(artifact_dir, caplog):
    """onnxruntime quietly falls back to the CPU when CUDA cannot start (here: a CPU-only build)."""
    from service.onnx_session import GraphSession

    pretend = [CUDA, CPU]  # as if onnxruntime-gpu were installed
    with pytest.raises(ArtifactError, match="CUDAExecutionProvider did not start"):
        GraphSession("score", artifact_dir / "score.onnx", resolve_providers([CUDA, CPU], pretend))
    auto = GraphSession("score", artifact_dir / "score.onnx", resolve_providers(["auto"], pretend))
    assert auto.providers == [CPU] and not auto.io_binding and "serving on the CPU" in caplog.text
