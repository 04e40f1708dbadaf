"""Train -> export -> serve -> score, through the real CLI and a real server process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx

from afrl.manifest import load_manifest
from afrl.recipe import write_recipe
from afrl.sidecar import read_sidecar
from bench.server_process import running_server
from bench.service_common import DOCUMENTS
from training import presets

DOCS = DOCUMENTS


def afrl(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "afrl.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_pipeline_writes_checkpoint_artifact_and_report(ci_run):
    out, report = ci_run
    for name in (
        "report.json",
        "sft_loss.png",
        "afrl-ci-tiny-qwen3/afrl.json",
        "afrl-ci-tiny-qwen3/config.json",
        "data/train.jsonl",
        "data/test.jsonl",
        "artifact/score.onnx",
    ):
        assert (out / name).is_file(), name
    manifest = load_manifest(out / "artifact")
    assert manifest.model_name == "afrl-ci-tiny-qwen3"
    assert manifest.labels.values == [0, 1, 2, 3, 4]
    assert manifest.parity["max_abs_diff"] <= 1e-4
    test = report.test
    assert 0.0 <= test.accuracy <= 1.0 and 0.0 < test.majority_baseline_accuracy < 1.0
    assert report.sft.last_loss < report.sft.first_loss
    assert json.loads((out / "report.json").read_text())["test"]["examples"] == test.examples


def test_report_carries_the_guideline_evolution_log_and_the_model_ships_its_guideline(ci_run):
    out, report = ci_run
    log = json.loads((out / "guideline_evolution.json").read_text())
    assert json.loads((out / "report.json").read_text())["guideline_evolution"] == log
    assert report.guideline_evolution is not None and len(log["rounds"]) >= 1  # the ci preset runs a round
    row = log["rounds"][0]
    assert row["proposer"] == "rules" and row["before"] != row["after"] and row["diff"]
    assert row["control_agreement"] is not None and row["edit_agreement"] is not None
    assert read_sidecar(out / "afrl-ci-tiny-qwen3").guideline == log["final_guideline"]
    assert load_manifest(out / "artifact").prompt.guideline == log["final_guideline"]
    assert "## Guideline evolution" in (out / "report.md").read_text()


def test_served_artifact_scores_ten_documents_and_survives_bad_input(ci_run, tmp_path):
    out, _ = ci_run
    with running_server(out / "artifact", log_path=tmp_path / "server.log") as url:
        good = {"query": "white samsung galaxy buds2 earbuds", "documents": DOCS}
        r = httpx.post(f"{url}/v1/score", json=good, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [x["index"] for x in body["results"]] == list(range(10))
        for x in body["results"]:
            assert x["grade"] in range(5) and abs(sum(x["probs"]) - 1) < 1e-6 and 0 <= x["score"] <= 1
        assert body["usage"]["prompt_tokens"] > 10 * 50
        assert float(r.headers["x-inference-time-ms"]) > 0

        bad = httpx.post(f"{url}/v1/score", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 422 and bad.json()["error"]["type"]
        again = httpx.post(f"{url}/v1/score", json=good, timeout=30)
        assert again.status_code == 200 and again.json()["results"] == body["results"]
        assert "afrl_request_duration_seconds" in httpx.get(f"{url}/metrics").text


def test_serve_without_model_uses_the_cached_default(ci_run, tmp_path):
    out, _ = ci_run
    home = tmp_path / "afrl-home"
    shutil.copytree(out / "artifact", home / "models" / "default")
    write_recipe(home / "models" / "default", presets.recipe("default"))  # built by this afrl's recipe
    with running_server(None, env={"AFRL_HOME": str(home)}, ready_timeout_s=60) as url:
        info = httpx.get(f"{url}/info").json()
        assert info["labels"]["values"] == [0, 1, 2, 3, 4]
        assert info["limits"]["max_documents"] >= 10
    assert not (home / "builds").exists()  # served from the cache, nothing was trained


def test_eval_cli_writes_json_and_plot(ci_run, tmp_path):
    out, _ = ci_run
    r = afrl("eval", str(out / "artifact"), "--data", "test", "--limit", "60", "--out", str(tmp_path / "eval"))
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["examples"] == 60 and 0 <= report["accuracy"] <= 1
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000


def test_cli_refuses_a_corrupt_artifact_with_one_clear_line(ci_run, tmp_path):
    out, _ = ci_run
    broken = tmp_path / "broken"
    shutil.copytree(out / "artifact", broken)
    data = bytearray((broken / "score.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / "score.onnx").write_bytes(bytes(data))
    r = afrl("eval", str(broken), "--data", "test", "--limit", "5")
    assert r.returncode == 1
    assert "score.onnx" in r.stderr and "corrupt" in r.stderr and "Traceback" not in r.stderr


def test_train_data_cli(tmp_path):
    r = afrl("train", "data", "--out", str(tmp_path), "--queries", "30", "--docs-per-query", "4")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    assert len(lines) > 50 and {"query", "document", "grade", "explanation"} <= set(json.loads(lines[0]))
