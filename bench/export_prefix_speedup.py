"""Shared-prefix scoring vs scoring every full prompt: 1 query x 16 documents on this CPU.

    afrl bench export-0p6b --out /tmp/afrl-0p6b --dtypes int8   # the artifact, once
    afrl bench export-prefix-speedup --model /tmp/afrl-0p6b/int8

Each full prompt is guideline + query + document + assistant prefix, in
the artifact's own template; the guideline is the artifact's, cut to about
`--guideline-tokens` tokens (bench.compare.inputs.cut_guideline; timing depends on token counts, not on the
words; the cut guideline is the same for both paths). Timed on onnxruntime's CPU provider,
`--threads` intra-op threads, median of `--repeats` runs after a warm-up:

    full      the score graph on the 16 full prompts, left-padded, one batch
    shared    the prefix graph once on guideline + query, then score_prefix
              on the 16 documents (left-padded, one batch) with that cache

Prints token counts, both times, the ratio, and the largest label-logit
difference between the two paths. Asserts nothing (the target is >= 2.5x).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

QUERY = "wireless noise cancelling headphones over ear"
DOCUMENTS = [
    "Sony WH-1000XM5 wireless noise cancelling over-ear headphones, 30 h battery, black.",
    "Bose QuietComfort 45 Bluetooth wireless noise cancelling headphones, triple black, USB-C.",
    "Replacement ear pads for Sony WH-1000XM4, protein leather, memory foam, pair.",
    "JBL Tune 510BT wireless on-ear headphones, 40 h battery, foldable, blue.",
    "Apple AirPods Pro (2nd generation) with MagSafe case, active noise cancellation.",
    "Sennheiser Momentum 4 Wireless over-ear headphones, adaptive noise cancellation, 60 h.",
    "Wired studio monitor headphones, closed back, 3 m coiled cable, 6.35 mm adapter.",
    "Headphone stand, aluminium, cable holder, fits most over-ear headsets.",
    "Anker Soundcore Life Q30 hybrid active noise cancelling headphones, refurbished.",
    "Kids over-ear headphones with volume limit 85 dB, wired, pink unicorn design.",
    "Beats Studio Pro wireless noise cancelling over-ear headphones, sandstone, USB-C audio.",
    "Bluetooth 5.3 transmitter adapter for TV, low latency, pairs two headphones.",
    "Noise cancelling earplugs for sleeping, reusable silicone, 3 sizes.",
    "Audio-Technica ATH-M50xBT2 wireless over-ear headphones, no noise cancelling, 50 h.",
    "Philips TAH8506 over-ear wireless headphones with ANC, 60 h playtime, black.",
    "Carrying case for Bose QC45 and QC35 headphones, hard shell, grey.",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="artifact folder with score, prefix and score_prefix graphs")
    p.add_argument("--documents", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--guideline-tokens", type=int, default=150, help="cut the guideline to about this many tokens")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from afrl.manifest import load_manifest
    from afrl.padding import left_pad
    from afrl.prompt import PromptEncoder
    from bench.compare.inputs import cut_guideline

    folder = Path(args.model)
    manifest = load_manifest(folder, verify_hashes=False)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    template = cut_guideline(manifest.prompt, tokenizer, args.guideline_tokens)
    encoder = PromptEncoder(template, tokenizer)
    pad = tokenizer.token_to_id("<|endoftext|>") or 0
    docs = (DOCUMENTS * (args.documents // len(DOCUMENTS) + 1))[: args.documents]
    prefix = encoder.encode_prefix(QUERY)
    doc_ids = [ids for ids, _ in encoder.encode_documents(docs)]

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {
        name: ort.InferenceSession(
            str(folder / manifest.graphs[name].file), options, providers=["CPUExecutionProvider"]
        )
        for name in ("score", "prefix", "score_prefix")
    }
    past_names = [i.name for i in sessions["score_prefix"].get_inputs()[2:]]

    full_ids, full_mask = left_pad([prefix + d for d in doc_ids], pad)  # (B, P + T)
    doc_pad, doc_mask = left_pad(doc_ids, pad)  # (B, T)
    shared_mask = np.concatenate([np.ones((len(docs), len(prefix)), dtype=np.int64), doc_mask], axis=1)

    def full() -> np.ndarray:
        return sessions["score"].run(["label_logits"], {"input_ids": full_ids, "attention_mask": full_mask})[0]

    def shared() -> np.ndarray:
        cache = sessions["prefix"].run(None, {"input_ids": np.asarray([prefix], dtype=np.int64)})
        feeds = {"input_ids": doc_pad, "attention_mask": shared_mask, **dict(zip(past_names, cache, strict=True))}
        return sessions["score_prefix"].run(["label_logits"], feeds)[0]

    def timed(fn) -> tuple[float, np.ndarray]:
        out = fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times), out

    t_full, l_full = timed(full)
    t_shared, l_shared = timed(shared)
    print(
        json.dumps(
            {
                "model": manifest.model_name,
                "dtype": manifest.graphs["score"].dtype,
                "threads": args.threads,
                "documents": len(docs),
                "guideline_tokens": len(tokenizer.encode(template.guideline, add_special_tokens=False).ids),
                "prefix_tokens": len(prefix),
                "document_tokens_mean": round(float(np.mean([len(d) for d in doc_ids])), 1),
                "full_prompt_tokens_padded": int(full_ids.size),
                "shared_tokens_padded": len(prefix) + int(doc_pad.size),
                "full_s": round(t_full, 3),
                "shared_s": round(t_shared, 3),
                "speedup": round(t_full / t_shared, 2),
                "label_logits_max_abs_diff": float(np.abs(l_full - l_shared).max()),
            },
            indent=2,
        )
    )
    return 0
