"""Every benchmark is an `afrl bench NAME` subcommand, and listing them costs `afrl` no heavy import."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import bench
from afrl.cli import main
from afrl.cli.bench import BENCHMARKS

LOCUSTFILE = "bench.locustfile"  # locust's, run in locust's own process: importing it monkey-patches this one


def test_every_benchmark_module_is_a_subcommand():
    commands = set()
    for info in pkgutil.walk_packages(bench.__path__, "bench."):
        if info.name == LOCUSTFILE:
            continue
        module = importlib.import_module(info.name)
        if hasattr(module, "add_arguments") or hasattr(module, "run"):
            commands.add(info.name)
    assert commands == {module for module, _ in BENCHMARKS.values()}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_help_shows_the_module_docstring(name, capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", name, "--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"usage: afrl bench {name} [-h]")
    assert importlib.import_module(BENCHMARKS[name][0]).__doc__.splitlines()[0] in printed


def test_building_the_parser_imports_nothing_heavy():
    heavy = (
        "numpy",
        "httpx",
        "pydantic",
        "torch",
        "transformers",
        "onnxruntime",
        "matplotlib",
        "service",
        "training",
        "export",
    )
    code = (
        "import sys; from afrl.cli import build_parser; build_parser(); "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_a_bad_env_setting_is_one_line(capsys):
    assert main(["bench", "overhead", "--model", "unused", "--env", "AFRL_MAX_QUEUE"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "afrl bench: 'AFRL_MAX_QUEUE': write server settings as AFRL_NAME=value"
