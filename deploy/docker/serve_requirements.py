"""Print the serving image's pip requirements, one a line, from pyproject.toml (stdlib only).

    python deploy/docker/serve_requirements.py [--runtime cpu|cuda] [--pyproject FILE]

The project's own dependencies plus the `serve` extra. `--runtime cuda` swaps
`onnxruntime` for `onnxruntime-gpu[cuda,cudnn]` (CUDA and cuDNN as pip packages):
the two ship the same `onnxruntime` module and must never be installed side
by side, so the CUDA image never installs the CPU one first. The Dockerfile
installs this list, then the project itself with --no-deps.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

GPU_RUNTIME = "onnxruntime-gpu[cuda,cudnn]"


def requirement_name(requirement: str) -> str:
    """'onnxruntime>=1.19 ; python_version...' -> 'onnxruntime' (PEP 503 normalised)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def serve_requirements(pyproject: Path, runtime: str = "cpu") -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", [])) + list(project["optional-dependencies"]["serve"])
    if runtime == "cuda":
        requirements = [
            re.sub(r"^\s*onnxruntime", GPU_RUNTIME, r) if requirement_name(r) == "onnxruntime" else r
            for r in requirements
        ]
    return requirements


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = ap.parse_args()
    requirements = serve_requirements(args.pyproject, args.runtime)
    print("\n".join(requirements))  # noqa: T201 - its output is the requirements list
    return 0


if __name__ == "__main__":
    sys.exit(main())
