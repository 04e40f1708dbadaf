"""`afrl bench gpu`'s CPU dry run (its CUDA run is done on a lent GPU machine)."""

from __future__ import annotations

import json

from afrl.cli import main


def test_dry_run_times_both_paths(tiny_checkpoint, reused_fp32_graphs, tmp_path, capsys):
    code = main(
        [
            "bench",
            "gpu",
            "--tiny",
            "--providers",
            "CPUExecutionProvider",
            "--checkpoint",
            str(tiny_checkpoint),
            "--shapes",
            "1x16,2x16",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    report = json.loads((tmp_path / "gpu_bench.json").read_text())
    paths = report["paths"]
    assert not [name for name, step in paths.items() if "error" in step], paths
    assert code == 0
    assert paths["export"]["parity"]["max_abs_diff"] < 2e-2
    for name in ("torch_eager", "ort_io_binding"):
        assert paths[name]["1x16_ms"] > 0 and paths[name]["2x16_ms"] > 0
    assert paths["ort_io_binding"]["providers"][0] == "CPUExecutionProvider"
    assert report["model"] == "tiny"
    assert "pairs/s" in capsys.readouterr().out
