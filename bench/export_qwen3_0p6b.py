"""Export the full-size Qwen3-0.6B architecture (random init) in fp32, fp16 and int8: time, size, parity.

    .venv/bin/python bench/export_qwen3_0p6b.py --out /tmp/afrl-0p6b      # ~30 minutes on 2 cores, ~12 GB disk

The checkpoint is `Qwen3Config` with the real 0.6B dims (hidden 1024, 28
layers, 16 heads, 8 kv heads, head_dim 128, intermediate 3072, vocabulary
151,936, tied embeddings; 596M parameters, 2.4 GB in fp32) and a 188-token
guideline (`GUIDELINE`; the prefix bench cuts it to ~150). Each graph is exported to FP32 once; the fp16 and
int8 artifacts convert those same FP32 graphs (export_artifact would export
them again: add the FP32 export times to theirs). Every artifact is
validated by export_artifact against the torch model; on a random model the
INT8 grade figures mean little (near-uniform grades flip on noise), so the
figures are gated after the fact against `TOLERANCES` and the verdict is
recorded rather than raised. Writes `--out`/results_<dtypes>.json and keeps the
artifacts (`--out`/{fp32,fp16,int8}) for `bench/export_prefix_speedup.py`.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QWEN3_0P6B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                  tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)

GUIDELINE = (
    "You grade how relevant a product document is to a shopper's search query. Answer with one grade first, "
    "then explain. Grade 4: the document is exactly what the query asks for: same product type, brand, model "
    "and every stated attribute (size, capacity, colour, pack count, material). Grade 3: the right product with "
    "one minor mismatch, such as a different colour or a close size. Grade 2: a partial match or a substitute: "
    "the same need met by another type or brand, or a major attribute mismatch. Grade 1: a complement or "
    "accessory for the queried product, not the product itself; 'compatible with <brand>' is not that brand. "
    "Grade 0: irrelevant. Negations in the query ('without', 'non-') exclude documents that have the attribute. "
    "Refurbished is not new. A model-number match outweighs a weak title. Cite the rules that decided."
)


def make_checkpoint(folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from afrl.tokenizer_files import qwen3_tokenizer_dir

    torch.manual_seed(0)
    Qwen3ForCausalLM(Qwen3Config(**QWEN3_0P6B)).eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(qwen3_tokenizer_dir()).save_pretrained(folder)
    (folder / "afrl.json").write_text(json.dumps({"guideline": GUIDELINE, "label_values": [0, 1, 2, 3, 4]}))
    return folder


def reuse_fp32_exports(cache: Path, timings: dict[str, float]) -> None:
    """Export each graph to FP32 once (timed); later export_artifact calls, and later runs, copy it."""
    from export import artifact

    real = artifact.export_graph
    done: dict[str, Path] = {}

    def cached(name, model, label_token_ids, path, **kw):
        if name not in done and (cache / name / Path(path).name).is_file():
            done[name] = cache / name / Path(path).name  # from an earlier run on the same checkpoint
        if name not in done:
            start = time.perf_counter()
            done[name] = real(name, model, label_token_ids, cache / name / Path(path).name, **kw)
            timings[name] = round(time.perf_counter() - start, 1)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        for file in done[name].parent.iterdir():
            shutil.copyfile(file, Path(path).parent / file.name)
        return Path(path)

    artifact.export_graph = cached


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/afrl-0p6b")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "fp16", "int8"])
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from transformers import AutoTokenizer

    from export.artifact import export_artifact
    from export.validate import TOLERANCES, ParityError, Tolerance, check_figures

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    checkpoint = out / "checkpoint"
    if not (checkpoint / "config.json").is_file():  # seeded: a rerun would write the same weights
        make_checkpoint(checkpoint)
    guideline_tokens = len(AutoTokenizer.from_pretrained(checkpoint, fix_mistral_regex=False).encode(GUIDELINE))
    results = {"checkpoint_s": round(time.perf_counter() - start, 1), "guideline_tokens": guideline_tokens,
               "fp32_export_s": {}, "artifacts": {}}
    reuse_fp32_exports(out / "fp32-graphs", results["fp32_export_s"])
    for dtype in args.dtypes:
        start = time.perf_counter()
        manifest = export_artifact(checkpoint, out / dtype, dtype=dtype, tolerance=Tolerance(), progress=print)
        seconds = time.perf_counter() - start
        try:
            check_figures(manifest.parity, TOLERANCES[dtype])
            verdict = "within the default tolerances"
        except ParityError as e:
            verdict = f"outside: {e}"
        sizes = {f: (out / dtype / f).stat().st_size for f in manifest.files if f.endswith((".onnx", ".data"))}
        results["artifacts"][dtype] = {
            "seconds": round(seconds, 1), "bytes": sizes, "total_mb": round(sum(sizes.values()) / 1e6, 1),
            "parity": manifest.parity, "verdict": verdict,
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 1),
        }
        print(json.dumps({dtype: results["artifacts"][dtype]}, indent=2), flush=True)
        (out / f"results_{'_'.join(args.dtypes)}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results["fp32_export_s"]))


if __name__ == "__main__":
    main()
