"""`afrl bench load`: the server and locust as processes of their own, a short run, CSV + PNG out."""

from __future__ import annotations

import csv

import pytest

from afrl.cli import main
from bench.load_mix import request_kinds
from bench.load_runner import duration_seconds

pytestmark = pytest.mark.slow  # exports and runs every compared path / a live locust run


def test_duration_strings():
    assert [duration_seconds(t) for t in ("60", "60s", "2m", "1h30m", "1m5s")] == [60, 60, 120, 5400, 65]
    with pytest.raises(ValueError, match="--duration"):
        duration_seconds("soon")


def test_mix_is_skewed_toward_small_requests_with_some_streams():
    kinds = request_kinds()
    assert abs(sum(k.weight for k in kinds) - 1) < 1e-9
    by_size = {}
    for k in kinds:
        by_size[k.documents] = by_size.get(k.documents, 0) + k.weight
    assert sorted(by_size) == [1, 10, 50, 200] and by_size[1] > by_size[10] > by_size[50] > by_size[200]
    assert {k.extra.get("reasoning", {}).get("top_k") for k in kinds if k.stream} == {1}


def test_load_run_writes_figures(tiny_artifact, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AFRL_MAX_NEW_TOKENS", "16")  # the server's: short explanations, so streams finish in time
    out = tmp_path / "load"
    assert (
        main(
            [
                "bench",
                "load",
                "--model",
                str(tiny_artifact),
                "--users",
                "4",
                "--spawn-rate",
                "4",
                "--duration",
                "5s",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with open(out / "load.csv", newline="") as f:
        rows = {r["kind"]: r for r in csv.DictReader(f)}
    assert set(rows) == {k.name for k in request_kinds()} | {"all"}
    total = rows["all"]
    assert int(total["requests"]) >= 10 and int(total["failures"]) == 0, (out / "locust.log").read_text()
    assert float(total["pairs_per_s"]) > float(total["requests_per_s"]) > 0
    assert float(total["p50_ms"]) <= float(total["p95_ms"]) <= float(total["p99_ms"])
    assert int(total["rejected"]) == sum(int(r["rejected"]) for k, r in rows.items() if k != "all")
    assert int(rows["1 docs"]["requests"]) > 0 and float(rows["1 docs"]["p50_ms"]) > 0
    assert (out / "load.png").stat().st_size > 10_000
    assert "pairs/s" in capsys.readouterr().out
