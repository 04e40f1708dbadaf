"""llama.cpp, the CPU peer users pick: llama-cpp-python on a Q8_0 GGUF of the compared checkpoint.

An optional row of `afrl bench compare` (`--llama-cpp CONVERTER`), not in CI: it needs
`pip install llama-cpp-python` (builds llama.cpp from its source distribution) and llama.cpp's
own converter, `convert_hf_to_gguf.py` (in a llama.cpp checkout, or in llama-cpp-python's source
distribution under vendor/llama.cpp; it imports the gguf-py beside it, so converter and format
match). The conversion (`--outtype q8_0`: llama.cpp's 8-bit weights, its usual CPU choice) runs
once per checkpoint; the GGUF is kept in OUT/<model>/gguf with the checkpoint's sha256 beside it.

llama.cpp at its best for this workload: one context, the request's pairs evaluated in order,
each reusing the KV cache of the longest token prefix it shares with what the context holds,
the same prefix match `Llama.generate` does (its server's rerank endpoint recomputes every
pair, by its source). Within a request that reuses the guideline and the query for every
document after the first; across requests only the guideline's tokens are kept, as our
engine's guideline cache does, so no request reuses another's query. The grade is read from the
last position's logits over the label tokens, with the same token ids as every other path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from afrl.progress import Progress, say
from bench.compare.inputs import CompareInputs

logger = logging.getLogger(__name__)

SOURCE_FILE = "afrl_source.json"  # {"checkpoint", "sha256", "outtype"} of what was converted
OUTTYPE = "q8_0"
GGUF_NAME = f"model-{OUTTYPE}.gguf"


def common_prefix_length(held: Sequence[int], wanted: Sequence[int]) -> int:
    """How many leading tokens of `wanted` the context already holds (`held`); the idiom of
    service.engine.guideline_ids."""
    return len(os.path.commonprefix([list(held), list(wanted)]))


def convert_gguf(
    checkpoint: Path, sha: str, converter: Path, folder: Path, progress: Progress | None = None
) -> tuple[Path, float]:
    """The Q8_0 GGUF of `checkpoint` in `folder`, converted unless already there; (file, seconds spent)."""
    gguf = folder / GGUF_NAME
    marker = folder / SOURCE_FILE
    saved = json.loads(marker.read_text()) if marker.is_file() else {}
    if gguf.is_file() and saved.get("sha256") == sha and saved.get("outtype") == OUTTYPE:
        return gguf, 0.0
    if not converter.is_file():
        raise FileNotFoundError(
            f"--llama-cpp {converter}: not a file; pass llama.cpp's convert_hf_to_gguf.py (a llama.cpp "
            "checkout, or vendor/llama.cpp in llama-cpp-python's source distribution)"
        )
    say(progress, logger, f"converting {checkpoint} to {OUTTYPE} GGUF with {converter}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    command = [sys.executable, str(converter), str(checkpoint), "--outtype", OUTTYPE, "--outfile", str(gguf)]
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # set at all, it skips the gguf-py beside it
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not gguf.is_file():
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    marker.write_text(json.dumps({"checkpoint": str(checkpoint), "sha256": sha, "outtype": OUTTYPE}))
    return gguf, round(time.perf_counter() - start, 1)


def llama_cpp_call(
    gguf: Path, inputs: CompareInputs, threads: int
) -> tuple[Callable[[], np.ndarray], Callable[[], None]]:
    """The call ((B, K) label logits of the request) and what frees the context."""
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError(
            "the llama.cpp row needs llama-cpp-python: pip install -e '.[llama-cpp]' (compiles llama.cpp)"
        ) from e

    from service.engine import guideline_ids

    prompts = [p.input_ids for p in inputs.encoder.encode(inputs.query, inputs.documents)]
    llm = llama_cpp.Llama(
        model_path=str(gguf),
        n_ctx=max(len(p) for p in prompts) + 8,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )
    guideline = guideline_ids(inputs.encoder)
    label_ids = np.asarray(inputs.label_token_ids)
    vocabulary = llm.n_vocab()

    def call() -> np.ndarray:
        pairs = inputs.encoder.encode(inputs.query, inputs.documents)  # tokenization timed, as on every path
        llm.n_tokens = common_prefix_length(llm.input_ids[: llm.n_tokens], guideline)  # no other query's prefix
        out = []
        for pair in pairs:
            ids = pair.input_ids
            # at least the last token is evaluated: its logits are the grade's
            llm.n_tokens = common_prefix_length(llm.input_ids[: llm.n_tokens], ids[:-1])
            llm.eval(ids[llm.n_tokens :])  # drops the cache past n_tokens first, then extends it
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocabulary,))
            out.append(logits[label_ids].copy())
        return np.stack(out)

    return call, llm.close
