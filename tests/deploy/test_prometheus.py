"""deploy/prometheus and deploy/grafana against a real Prometheus scraping a live `afrl serve`.

promtool checks the rules and the example configuration and runs the rules' unit tests
(rules_test.yml). Then `afrl serve` runs on the tiny artifact of the service tests (the Qwen3
tokenizer, a tiny ONNX score graph), Prometheus scrapes it every second and evaluates the rules
every second, a few requests go in (200s on every scoring route, a 422, a burst that gets 429s),
and every PromQL expression of the dashboard (Grafana variables substituted as
deploy/grafana/render_panels.py does) and of the rules must evaluate without error and return
data. An alert condition (`x > 1`, `absent(x)`) is empty on a healthy server, so its `x` is what
must return data. Needs Prometheus and promtool on PATH (Debian's `prometheus` package): skipped
without them, and under CI (CI set) a test fails instead. Everything listens on 127.0.0.1; every
process is killed at the end.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import yaml

from bench.server_process import free_port, running_server

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
SERVICE_TESTS = ROOT / "tests" / "service"
QUERY_RANGE = "1m"  # $__rate_interval here: wider than the whole run, so every rate sees all its samples
DOCS = ["red running shoes size 42", "blue cotton hat", "running socks, red", "a kettle"]

HAVE_PROMETHEUS = bool(shutil.which("prometheus") and shutil.which("promtool"))
needs_prometheus = pytest.mark.skipif(
    not HAVE_PROMETHEUS, reason="prometheus and promtool are not on PATH (Debian: apt-get install prometheus)"
)


def load_module(name: str, path: Path) -> ModuleType:
    """A module from a file outside any package: deploy/grafana/ and tests/service/'s conftest."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


panels_module = load_module("render_panels", ROOT / "deploy" / "grafana" / "render_panels.py")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def condition_operand(expr: str) -> str:
    """An alert's expression without its condition: `x > 1` -> `x`, `absent(x)` -> `x`.

    The comparison must be at the top level (outside brackets and strings) with a number on its
    right, so nothing but the threshold is dropped.
    """
    expr = " ".join(expr.split())
    if expr.startswith("absent(") and expr.endswith(")"):
        return expr[len("absent(") : -1]
    depth, quote, i = 0, "", 0
    while i < len(expr):
        c = expr[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c in "<>=!":
            operator = expr[i : i + 2] if expr[i : i + 2] in ("==", "!=", ">=", "<=") else c
            threshold = expr[i + len(operator) :].strip()
            float(threshold)  # raises if the right side is more than a number
            return expr[:i].strip()
        i += 1
    return expr


def test_ci_has_prometheus():
    """CI installs them (.ci/run): skipping there would hide that the live checks stopped running."""
    if not os.environ.get("CI"):
        pytest.skip("not in CI")
    assert HAVE_PROMETHEUS, "prometheus and promtool are not on PATH; .ci/run must apt-get install prometheus"


def test_condition_operand_drops_only_the_threshold():
    assert condition_operand('max by (job) (x{a=~"b>c"}) >= 2') == 'max by (job) (x{a=~"b>c"})'
    assert condition_operand('up{job="afrl"} == 0') == 'up{job="afrl"}'
    assert condition_operand('absent(up{job="afrl"})') == 'up{job="afrl"}'
    assert condition_operand("rate(x[5m])") == "rate(x[5m])"
    with pytest.raises(ValueError):
        condition_operand("x > y")


def test_the_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_variable():
    dashboard = panels_module.load_dashboard()
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]  # Grafana 9.x+ layout
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = panels_module.panels(dashboard)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in panels)
    for subject in ("latency", "queue time", "batch size", "padding", "prefix", "rejections", "queue depth", "stuck"):
        assert subject in titles, f"no panel about {subject}"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:  # every variable used is defined (or one of Grafana's own)
            values = dict.fromkeys(panels_module.template_variables(dashboard), "x")
            panels_module.substitute(target["expr"], {**values, "__rate_interval": "1m", "__interval": "1s"})
    assert any("request_duration_seconds_bucket" in t["expr"] for p in panels for t in p["targets"])


@needs_prometheus
def test_promtool_accepts_the_rules_and_the_config_and_the_rules_unit_tests_pass():
    for args in (
        ["check", "rules", str(RULES)],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "rules_test.yml"],
    ):
        done = promtool(*args)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    assert "SUCCESS" in promtool("check", "rules", str(RULES)).stdout


@needs_prometheus
def test_promtool_rejects_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("> 0.01", "> > 0.01", 1))
    assert promtool("check", "rules", str(broken)).returncode != 0


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service tests' score-only artifact, written by their own conftest's write_artifact."""
    from tokenizers import Tokenizer

    from afrl.tokenizer_files import qwen3_tokenizer_dir

    if str(SERVICE_TESTS) not in sys.path:
        sys.path.append(str(SERVICE_TESTS))  # the conftest imports service_testkit
    service_conftest = load_module("service_tests_conftest", SERVICE_TESTS / "conftest.py")
    tokenizer = Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))
    folder = tmp_path_factory.mktemp("prometheus-artifact")
    return service_conftest.write_artifact(folder, tokenizer, {"score": service_conftest.SCORE_SPEC})


class Prometheus:
    """A Prometheus server on a free loopback port, its data in a temporary folder."""

    def __init__(self, folder: Path, target: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "afrl", "static_configs": [{"targets": [target]}]}],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(folder / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def wait_until(self, what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"prometheus exited with {self.proc.returncode}; see {self.log.name}"
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"prometheus: {what} not within {timeout_s:.0f} s"
            time.sleep(0.2)

    def query(self, expr: str) -> list[dict]:
        body = self.client.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", f"{expr}\n{body.get('errorType')}: {body.get('error')}"
        return body["data"]["result"]

    def scraped_since(self, moment: float) -> bool:
        targets = self.client.get("/api/v1/targets").json()["data"]["activeTargets"]
        return bool(targets) and all(t["health"] == "up" and rfc3339(t["lastScrape"]) > moment for t in targets)

    def rules_evaluated_since(self, moment: float) -> bool:
        groups = self.client.get("/api/v1/rules").json()["data"]["groups"]
        return len(groups) == 2 and all(rfc3339(g["lastEvaluation"]) > moment for g in groups)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def rfc3339(text: str) -> float:
    """Prometheus' timestamps ("2024-01-02T03:04:05.123456789Z", nanoseconds) in unix seconds."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text)).timestamp()


def send_traffic(url: str) -> dict[int, int]:
    """200s on every scoring route, one 422, and concurrent bursts until some get 429; statuses counted."""
    statuses: dict[int, int] = {}

    def count(response: httpx.Response) -> None:
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    with httpx.Client(base_url=url, timeout=10.0) as client:
        for _ in range(3):
            count(client.post("/v1/score", json={"query": "red shoes", "documents": DOCS}))
            count(client.post("/v1/rerank", json={"query": "red shoes", "documents": DOCS, "top_n": 2}))
            count(client.post("/v2/rerank", json={"model": "m", "query": "red shoes", "documents": DOCS}))
        count(client.post("/v1/score", json={"query": "red shoes"}))  # no documents: 422

    async def burst() -> None:  # AFRL_MAX_QUEUE=1: requests arriving while one is in flight get 429
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            body = {"query": "red shoes", "documents": DOCS * 16}
            for response in await asyncio.gather(*(client.post("/v1/score", json=body) for _ in range(12))):
                count(response)

    for _ in range(10):
        asyncio.run(burst())
        if statuses.get(429):
            break
    return statuses


@pytest.fixture(scope="module")
def scraped(
    tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Prometheus, str, dict[int, int]]]:
    """(Prometheus, the server's host:port, statuses sent) after two rounds of traffic, each scraped."""
    env = {"AFRL_MAX_QUEUE": "1", "AFRL_INTRA_OP_THREADS": "1", "AFRL_TOKENIZE_WORKERS": "1"}
    folder = tmp_path_factory.mktemp("prometheus")
    began = time.monotonic()
    with running_server(tiny_artifact, env=env, ready_timeout_s=60, log_path=folder / "server.log") as url:
        target = url.removeprefix("http://")
        logger.info("afrl serve ready after %.1f s", time.monotonic() - began)
        prometheus = Prometheus(folder, target)
        try:
            prometheus.wait_until("ready", lambda: prometheus.client.get("/-/ready").status_code == 200)
            prometheus.wait_until("a first scrape", partial(prometheus.scraped_since, 0))
            logger.info("prometheus scraped it after %.1f s", time.monotonic() - began)
            statuses: dict[int, int] = {}
            for _ in range(2):  # a counter's first sample has no rate: the second round makes every rate move
                for status, n in send_traffic(url).items():
                    statuses[status] = statuses.get(status, 0) + n
                sent = time.time()
                prometheus.wait_until("a scrape after the traffic", partial(prometheus.scraped_since, sent))
            sent = time.time()
            prometheus.wait_until("a rule evaluation after the scrape", partial(prometheus.rules_evaluated_since, sent))
            logger.info("traffic %s scraped and rules evaluated after %.1f s", statuses, time.monotonic() - began)
            yield prometheus, target, statuses
        finally:
            prometheus.close()


@needs_prometheus
def test_the_traffic_got_answers_a_422_and_429s(scraped):
    prometheus, target, statuses = scraped
    assert statuses.get(200, 0) >= 18 and statuses.get(422) == 2 and statuses.get(429, 0) >= 2, statuses
    assert set(statuses) <= {200, 422, 429}, statuses
    assert prometheus.query(f'up{{job="afrl", instance="{target}"}} == 1'), "the server is scraped"


@needs_prometheus
def test_every_dashboard_expression_returns_data(scraped):
    prometheus, target, _ = scraped
    dashboard = panels_module.load_dashboard()
    values = {"job": "afrl", "instance": target, "__rate_interval": QUERY_RANGE, "__interval": "1s"}
    empty, evaluated = [], 0
    for panel in panels_module.panels(dashboard):
        for ref in panel["targets"]:
            expr = panels_module.substitute(ref["expr"], values)
            result = prometheus.query(expr)
            evaluated += 1
            if not result:
                empty.append(f"{panel['title']} [{ref['refId']}]: {expr}")
    assert not empty, "no data for:\n" + "\n".join(empty)
    assert evaluated >= 20
    for name, selector, label in panels_module.variable_queries(dashboard):
        series = prometheus.query(panels_module.substitute(selector, values))
        assert any(label in s["metric"] for s in series), f"variable {name}: no {label} values from {selector}"


@needs_prometheus
def test_the_dashboard_shows_what_was_sent(scraped):
    """Not only data: the figures agree with the traffic (rejections by reason, latency quantiles)."""
    prometheus, target, _ = scraped
    values = {"job": "afrl", "instance": target, "__rate_interval": QUERY_RANGE, "__interval": "1s"}
    by_title = {p["title"]: p for p in panels_module.panels(panels_module.load_dashboard())}
    (rejections,) = by_title["Rejections by reason"]["targets"]
    reasons = {s["metric"]["reason"] for s in prometheus.query(panels_module.substitute(rejections["expr"], values))}
    assert {"invalid_request", "queue_full"} <= reasons, reasons
    p99 = by_title["Latency percentiles per endpoint (answered requests)"]["targets"][-1]
    quantiles = prometheus.query(panels_module.substitute(p99["expr"], values))
    endpoints = {s["metric"]["endpoint"] for s in quantiles}
    assert {"/v1/score", "/v1/rerank", "/v2/rerank"} <= endpoints, endpoints
    assert all(0 < float(s["value"][1]) < 10 for s in quantiles), quantiles


@needs_prometheus
def test_every_rule_evaluates_and_returns_data(scraped):
    prometheus, _, _ = scraped
    groups = prometheus.client.get("/api/v1/rules").json()["data"]["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert len(loaded) == len(rules())
    assert all(rule["health"] == "ok" for rule in loaded), [(r["name"], r.get("lastError")) for r in loaded]
    empty = []
    for rule in rules():
        if "record" in rule:
            checks = [rule["expr"], rule["record"]]  # the expression, and the series Prometheus recorded from it
        else:
            checks = [rule["expr"], condition_operand(rule["expr"])]
        for i, expr in enumerate(checks):
            result = prometheus.query(expr)  # asserts that it evaluates
            if i == 1 and not result:
                empty.append(f"{rule.get('record') or rule['alert']}: {expr}")
    assert not empty, "no data for:\n" + "\n".join(empty)
    (ratio,) = prometheus.query("job:afrl_requests_throttled:ratio_rate5m")
    assert 0 < float(ratio["value"][1]) < 1, ratio  # the 429s sent, among the answers
    (errors,) = prometheus.query("job:afrl_requests_errors:ratio_rate5m")
    assert float(errors["value"][1]) == 0, errors  # zero-filled: no 5xx, yet a series
    assert not math.isnan(float(prometheus.query("job_endpoint:afrl_request_duration_seconds:p99_5m")[0]["value"][1]))


@needs_prometheus
def test_render_panels_draws_every_panel_from_the_live_prometheus(scraped, tmp_path):
    prometheus, _, _ = scraped
    dashboard = panels_module.load_dashboard()
    end = time.time()
    out = tmp_path / "panels.png"
    drawn = panels_module.render(dashboard, prometheus.url, end - 30, end, 1.0, 1.0, {"job": "afrl"}, out)
    assert drawn >= sum(len(p["targets"]) for p in panels_module.panels(dashboard))
    assert out.stat().st_size > 10_000
