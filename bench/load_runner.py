"""`afrl bench load`: the server and locust, each in its own process, for a set time; figures as CSV + PNG.

    afrl bench load [--model DIR] [--users 8] [--spawn-rate 8] [--duration 60s] [--out runs/bench-load]

    1. write the request mix (bench.load_mix) to OUT/mix.json;
    2. start `afrl serve` (bench.server_process; log in OUT/server.log) and wait until ready;
    3. run locust headless as a subprocess (OUT/locust.log): `--users` closed-loop users started
       at `--spawn-rate` per second, for `--duration`; its final statistics land in OUT/locust.json;
    4. read them (bench.load_report): OUT/load.csv, OUT/load.png, OUT/load.json.

Locust runs as a subprocess because it cannot be imported in a process that
imported ssl or torch (gevent monkey-patching). The server's settings come
from the environment (`AFRL_*`), as for `afrl serve`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from afrl.progress import Progress, say
from bench.load_mix import read_kinds, write_mix
from bench.load_report import LoadRow, format_table, plot, read_history, read_stats, write_csv
from bench.server_process import running_server

logger = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
EXTRA_WAIT_S = 120  # beyond --duration: locust's start and its last requests


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="artifact folder (default: the embedded default model)")
    p.add_argument("--users", type=int, default=8, help="concurrent closed-loop users")
    p.add_argument("--spawn-rate", type=float, default=8.0, help="users started per second")
    p.add_argument("--duration", default="60s", help="how long locust runs (60s, 5m, ...)")
    p.add_argument("--out", default="runs/bench-load", help="folder for the CSVs, plot and logs")


def run(a: argparse.Namespace) -> int:
    from afrl.cli.output import progress

    report = run_load(a.model, a.users, a.spawn_rate, a.duration, Path(a.out), progress=progress)
    print(format_table([LoadRow(**row) for row in report["rows"]]))
    return 0


def duration_seconds(text: str) -> int:
    """Locust's time strings ("60", "60s", "2m", "1h30m") in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not text.strip() or parts is None:
        raise ValueError(f"--duration {text!r}: write it like 60s, 2m or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def run_locust(url: str, mix: Path, users: int, spawn_rate: float, duration: str, out: Path) -> int:
    """Locust headless against `url`; returns its exit code (1 when some request failed)."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        duration,
        "--json-file",
        str(out / "locust"),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    with open(out / "locust.log", "wb") as log:
        done = subprocess.run(
            command,
            env={**os.environ, "AFRL_LOAD_MIX": str(mix)},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=duration_seconds(duration) + EXTRA_WAIT_S,
        )
    return done.returncode


def run_load(
    model: str | None, users: int, spawn_rate: float, duration: str, out: Path, progress: Progress | None = None
) -> dict:
    """Returns what OUT/load.json holds; `format_table(rows)` of its rows is what the CLI prints."""
    out.mkdir(parents=True, exist_ok=True)
    seconds = duration_seconds(duration)
    mix = write_mix(out / "mix.json")
    kinds = read_kinds(mix)
    say(progress, logger, f"starting afrl serve ({model or 'embedded default model'}); log in {out / 'server.log'}")
    with running_server(model, log_path=out / "server.log") as url:
        say(progress, logger, f"locust: {users} users (+{spawn_rate}/s) for {seconds}s against {url}")
        code = run_locust(url, mix, users, spawn_rate, duration, out)
    stats = out / "locust.json"
    if code not in (0, 1) or not stats.is_file():
        raise RuntimeError(f"locust exited with code {code} without statistics; see {out / 'locust.log'}")
    rows = read_stats(stats, kinds, seconds)
    write_csv(rows, out / "load.csv")
    title = f"POST /v1/score, {users} users, {seconds}s, model {model or 'default'}"
    plot(rows, read_history(stats), out / "load.png", title)
    report = {
        "model": str(model) if model else "default",
        "users": users,
        "spawn_rate": spawn_rate,
        "duration_s": seconds,
        "rows": [asdict(r) for r in rows],
        "files": {name: str(out / name) for name in ("load.csv", "load.png", "locust.json")},
    }
    (out / "load.json").write_text(json.dumps(report, indent=2))
    say(progress, logger, f"wrote {out / 'load.csv'} and {out / 'load.png'}")
    return report
