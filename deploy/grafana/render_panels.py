"""Draw the panels of the Grafana dashboard (afrl.json) from a running Prometheus, one subplot per panel.

No Grafana runs in CI: this reads the dashboard's own panels and PromQL, substitutes Grafana's
variables the way Grafana does ($__rate_interval = max(step + scrape interval, 4 x scrape interval),
$__interval = the step, template variables from --var, "All" = `.+`), asks Prometheus'
`/api/v1/query_range` for each target and plots the series with the panel's legend format, so the PNG
shows what the dashboard would. tests/deploy/test_prometheus.py uses the same substitution to evaluate
every expression against a live server.

    python deploy/grafana/render_panels.py --prometheus http://127.0.0.1:9090 --minutes 10 \
        --scrape-interval 15s --out deploy/grafana/panels.png
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from pathlib import Path

import httpx

logger = logging.getLogger("render_panels")

DASHBOARD = Path(__file__).with_name("afrl.json")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")  # $name, ${name}, ${name:format}
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\)\s*$")  # Grafana's variable query, not PromQL
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
ALL = ".+"  # the dashboard's allValue: what a multi-value variable set to "All" becomes
# unit -> (factor, axis label) for the panels' Grafana units
UNITS = {
    "s": (1000.0, "ms"),
    "percentunit": (100.0, "%"),
    "reqps": (1.0, "req/s"),
    "short": (1.0, ""),
    "none": (1.0, ""),
}


def load_dashboard(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def duration_s(text: str) -> float:
    """Prometheus durations ("1s", "15s", "2m", "1h") in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 15s, 2m or 1h")
    return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match[2]]


def grafana_intervals(step_s: float, scrape_s: float) -> dict[str, str]:
    """$__interval and $__rate_interval as Grafana computes them for a query of that step."""
    rate = max(step_s + scrape_s, 4 * scrape_s)
    return {"__interval": f"{int(math.ceil(step_s))}s", "__rate_interval": f"{int(math.ceil(rate))}s"}


def template_variables(dashboard: dict) -> list[str]:
    return [v["name"] for v in dashboard.get("templating", {}).get("list", [])]


def substitute(expr: str, values: dict[str, str]) -> str:
    """The expression with every $variable replaced; an undefined one is an error, not left in the query."""

    def value(match: re.Match) -> str:
        name = match[1] or match[2]
        if name not in values:
            raise ValueError(f"no value for ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(value, expr)


def panels(dashboard: dict) -> list[dict]:
    """Every panel that queries, those inside collapsed rows included, in dashboard order."""
    out = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            out += panel.get("panels", [])
        else:
            out.append(panel)
    return [p for p in out if p.get("targets")]


def variable_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(variable name, series selector, label) of each `label_values(selector, label)` query variable."""
    out = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = LABEL_VALUES.match(query)
        if match is None:
            raise ValueError(f"variable {variable['name']}: only label_values(selector, label) queries are drawn")
        out.append((variable["name"], match[1] or "", match[2]))
    return out


def legend(fmt: str, labels: dict[str, str]) -> str:
    return LEGEND_LABEL.sub(lambda m: labels.get(m[1], ""), fmt) if fmt else json.dumps(labels)


def query_range(client: httpx.Client, expr: str, start: float, end: float, step: float) -> list[dict]:
    """Prometheus' matrix result for the expression; raises with Prometheus' own error text."""
    response = client.get("/api/v1/query_range", params={"query": expr, "start": start, "end": end, "step": step})
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def render(
    dashboard: dict,
    prometheus: str,
    start: float,
    end: float,
    step: float,
    scrape_s: float,
    variables: dict[str, str],
    out: Path,
) -> int:
    """Draws every panel into `out`; returns how many series were drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = {**{name: ALL for name in template_variables(dashboard)}, **variables}
    values.update(grafana_intervals(step, scrape_s))
    queried = panels(dashboard)
    columns = 3
    rows = math.ceil(len(queried) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 3.4 * rows), squeeze=False)
    drawn = 0
    with httpx.Client(base_url=prometheus, timeout=30.0) as client:
        for ax, panel in zip(axes.flat, queried, strict=False):
            factor, unit = UNITS.get(panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "none"), (1.0, ""))
            for target in panel["targets"]:
                for series in query_range(client, substitute(target["expr"], values), start, end, step):
                    times = [(float(t) - start) / 60.0 for t, _ in series["values"]]
                    ys = [float(v) * factor for _, v in series["values"]]
                    ax.plot(times, ys, linewidth=1.2, label=legend(target.get("legendFormat", ""), series["metric"]))
                    drawn += 1
            kind = " (stat)" if panel["type"] == "stat" else ""
            ax.set_title(panel["title"] + kind, fontsize=10)
            ax.set_ylabel(unit)
            ax.set_xlabel("minutes")
            top = ax.get_ylim()[1]
            ax.set_ylim(-0.02 * top, top)  # a series at 0 shows above the axis line
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="upper left")
            else:
                ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color="grey")
    for ax in axes.flat[len(queried) :]:
        ax.set_visible(False)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(start))
    figure.suptitle(f"{dashboard['title']}: panels from Prometheus, {when} UTC + {(end - start) / 60:.0f} min")
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--minutes", type=float, default=10.0, help="how far back from --end to draw")
    parser.add_argument("--end", type=float, default=None, help="unix time of the right edge (default: now)")
    parser.add_argument("--step", type=float, default=None, help="seconds between points (default: span / 200)")
    parser.add_argument("--scrape-interval", default="15s", help="the scrape interval, for $__rate_interval")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="template variable value")
    parser.add_argument("--out", type=Path, default=Path("panels.png"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per query otherwise
    try:
        variables = dict(item.split("=", 1) for item in args.var)
    except ValueError:
        parser.error("--var takes NAME=VALUE")
    end = args.end if args.end is not None else time.time()
    start = end - args.minutes * 60
    step = args.step or max(1.0, args.minutes * 60 / 200)
    try:
        drawn = render(
            load_dashboard(args.dashboard),
            args.prometheus,
            start,
            end,
            step,
            duration_s(args.scrape_interval),
            variables,
            args.out,
        )
    except (httpx.HTTPError, RuntimeError, ValueError) as e:
        logger.error("render_panels: %s", e)
        return 1
    logger.info("wrote %s (%d series)", args.out, drawn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
