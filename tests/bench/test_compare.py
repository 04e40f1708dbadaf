"""`afrl bench compare` on a tiny model: every path runs on the same weights and prompts, and agrees."""

from __future__ import annotations

import json
import statistics

import pytest

from afrl.cli import main

pytestmark = pytest.mark.slow  # exports and runs every compared path / a live locust run

PATHS = {
    "naive_fp32",
    "generate_fp32",
    "optimum_fp32",
    "reason_first_fp32",
    "engine_prefix_fp32",
    "engine_plain_fp32",
    "engine_prefix_int8",
    "engine_plain_int8",
}
SAME_PREDICTION_FP32 = {"generate_fp32", "optimum_fp32", "engine_prefix_fp32", "engine_plain_fp32"}


def test_compare_runs_every_path(tiny_artifact, reused_fp32_graphs, tmp_path, capsys):
    out = tmp_path / "compare"
    args = [
        "bench",
        "compare",
        "--model",
        str(tiny_artifact),
        "--documents",
        "4",
        "--guideline-tokens",
        "40",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--reason-tokens",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    report = json.loads((out / "compare.json").read_text())
    table = {row["key"]: row for row in report["table"]}
    assert set(table) == PATHS and not [row for row in table.values() if "error" in row]
    assert report["threads"] == {"torch_intra_op": 2, "onnxruntime_intra_op": 2}
    request = report["request"]
    assert request["documents"] == 4 and 30 <= request["guideline_tokens"] <= 40
    assert request["prefix_tokens"] > request["guideline_tokens"]
    for row in table.values():
        assert row["pairs_per_s"] > 0 and row["p50_ms"] > 0
        assert row["pairs_per_s"] == pytest.approx(4 / statistics.median(row["seconds"]), rel=0.01)  # 4 per request
    assert table["naive_fp32"]["vs_naive_fp32"] == 1.0
    for key in SAME_PREDICTION_FP32:  # the same weights and prompts give the same probabilities
        assert table[key]["max_abs_prob_diff"] < 1e-4, (key, table[key])
        assert table[key]["grade_agreement"] == 1.0
    for key in ("engine_prefix_int8", "engine_plain_int8"):
        assert table[key]["max_abs_prob_diff"] < 0.2
    # the FP32 artifact given is used as it is; the INT8 one and optimum's graph are exported
    assert report["model"]["artifacts"]["fp32"] == str(tiny_artifact)
    assert set(report["build_s"]) == {"export_int8", "export_optimum"}
    assert (out / "compare.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "afrl engine, shared prefix" in printed and "x naive" in printed
