"""Which exporter writes the decode graph: our wrapper, optimum-onnx or onnxruntime-genai, by measurement.

    afrl bench export-decode-choice --arch tiny      # ~1 minute
    afrl bench export-decode-choice --arch 0.6b      # ~15 minutes, ~8 GB of scratch disk
    # onnxruntime-genai runs from its own venv (never the project's): python -m venv /tmp/genai-venv;
    # echo .venv's site-packages > /tmp/genai-venv/lib/python3.11/site-packages/main.pth;
    # /tmp/genai-venv/bin/pip install --no-deps onnxruntime-genai==0.11.4   (0.18's builder needs transformers 5)
    # then pass --genai-python /tmp/genai-venv/bin/python

For one random-init Qwen3 checkpoint of the chosen size (bench.qwen3_0p6b), each exporter
writes an FP32 decoder with a KV cache; then one step (1 new token after a
`--past` token cache, batch 1 and 4) is timed on onnxruntime's CPU provider,
2 threads, median of `--steps` steps. Export time and bytes on disk are
recorded too. Prints one JSON object per exporter and writes them to
`--out`/decode_choice.json; asserts nothing.

The figures and the decision are in `export/onnx_export.py`'s docstring.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from bench.qwen3_0p6b import TINY, make_checkpoint

ARCHS = {"tiny": TINY, "0.6b": {}}  # bench.qwen3_0p6b's dims overridden: the toy model, or the real 0.6B


def folder_bytes(folder: Path) -> int:
    """Graph and weight files (optimum: model.onnx + model.onnx_data; genai: model.onnx + model.onnx.data)."""
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and ("onnx" in p.name or p.suffix == ".data") and "cache" not in p.parts
    )


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_steps(run, steps: int) -> float:
    import numpy as np

    run()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def cache_shape(config, batch: int, past: int) -> tuple[int, ...]:
    return (batch, config.num_key_value_heads, past, config.head_dim)


def measure_wrapper(ckpt: Path, out: Path, past: int, steps: int) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from afrl import graphs
    from export.onnx_export import export_graph

    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    start = time.perf_counter()
    path = export_graph(graphs.DECODE, model, [15, 16, 17, 18, 19], out / "decode.onnx")
    export_s = time.perf_counter() - start
    layers, config = model.config.num_hidden_layers, model.config
    del model
    sess = session(path)
    result = {
        "exporter": "wrapper (torch.onnx.export dynamo)",
        "export_s": round(export_s, 1),
        "bytes": folder_bytes(out),
    }
    for batch in (1, 4):
        feeds = {
            graphs.INPUT_IDS: np.full((batch, 1), 100, dtype=np.int64),
            graphs.ATTENTION_MASK: np.ones((batch, past + 1), dtype=np.int64),
        }
        for name in graphs.past_names(layers):
            feeds[name] = np.random.default_rng(0).standard_normal(cache_shape(config, batch, past), dtype=np.float32)
        result[f"step_ms_b{batch}"] = round(time_steps(lambda feeds=feeds: sess.run(None, feeds), steps), 2)
    return result


def measure_optimum(ckpt: Path, out: Path, past: int, steps: int) -> dict:
    import numpy as np
    from optimum.exporters.onnx import main_export
    from transformers import AutoConfig

    start = time.perf_counter()
    # no_post_process: its tied-weight dedup serialises one proto, which fails over 2 GB (0.6B: EncodeError)
    main_export(str(ckpt), output=str(out), task="text-generation-with-past", device="cpu", no_post_process=True)
    export_s = time.perf_counter() - start
    config = AutoConfig.from_pretrained(ckpt)
    sess = session(out / "model.onnx")
    names = [i.name for i in sess.get_inputs()]
    result = {
        "exporter": "optimum-onnx main_export text-generation-with-past",
        "export_s": round(export_s, 1),
        "bytes": folder_bytes(out),
        "inputs": names[:4] + ["..."],
        "outputs": [o.name for o in sess.get_outputs()][:2],
        "logits_shape": sess.get_outputs()[0].shape,
    }
    for batch in (1, 4):
        feeds = {
            "input_ids": np.full((batch, 1), 100, dtype=np.int64),
            "attention_mask": np.ones((batch, past + 1), dtype=np.int64),
        }
        if "position_ids" in names:
            feeds["position_ids"] = np.full((batch, 1), past, dtype=np.int64)
        for name in names:
            if name.startswith("past_key_values"):
                feeds[name] = np.random.default_rng(0).standard_normal(
                    cache_shape(config, batch, past), dtype=np.float32
                )
        result[f"step_ms_b{batch}"] = round(time_steps(lambda feeds=feeds: sess.run(None, feeds), steps), 2)
    return result


GENAI_TIMER = r"""
import json, sys, time, numpy as np, onnxruntime_genai as og
folder, past, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = og.Model(folder)
params = og.GeneratorParams(model)
params.set_search_options(max_length=past + steps + 8, do_sample=False)
gen = og.Generator(model, params)
gen.append_tokens(np.full((1, past), 100, dtype=np.int32))
times = []
for _ in range(steps + 1):
    start = time.perf_counter(); gen.generate_next_token(); times.append(time.perf_counter() - start)
print(json.dumps({"step_ms_b1": round(float(np.median(times[1:])) * 1e3, 2), "genai": og.__version__}))
"""


def measure_genai(ckpt: Path, out: Path, past: int, steps: int, python: str) -> dict:
    start = time.perf_counter()
    subprocess.run(
        [
            python,
            "-m",
            "onnxruntime_genai.models.builder",
            "-i",
            str(ckpt),
            "-o",
            str(out),
            "-p",
            "fp32",
            "-e",
            "cpu",
            "-c",
            str(out / "cache"),
        ],
        check=True,
        capture_output=True,
    )
    export_s = time.perf_counter() - start
    # One thread pool setting for all: genai reads session options from genai_config.json.
    cfg_path = out / "genai_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = 2
    cfg_path.write_text(json.dumps(cfg))
    import onnx

    graph = onnx.load(out / "model.onnx", load_external_data=False).graph
    timed = subprocess.run(
        [python, "-c", GENAI_TIMER, str(out), str(past), str(steps)], check=True, capture_output=True, text=True
    )
    result = {
        "exporter": "onnxruntime-genai model builder (fp32, cpu)",
        "export_s": round(export_s, 1),
        "bytes": folder_bytes(out),
        "inputs": [i.name for i in graph.input][:4] + ["..."],
        "outputs": [o.name for o in graph.output][:2],
        "ops": sorted({n.op_type for n in graph.node if n.domain == "com.microsoft"}),
    }
    result.update(json.loads(timed.stdout.strip().splitlines()[-1]))
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    p.add_argument("--past", type=int, default=256, help="cached tokens before the timed step")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--genai-python", help="python of a venv with onnxruntime-genai (skipped without)")
    p.add_argument(
        "--only", nargs="*", choices=["wrapper", "optimum", "genai"], default=["wrapper", "optimum", "genai"]
    )
    p.add_argument("--out", default="bench/results")


def run(args: argparse.Namespace) -> int:
    results = []
    with tempfile.TemporaryDirectory(prefix="afrl-decode-choice-") as tmp:
        ckpt = make_checkpoint(Path(tmp) / "checkpoint", ARCHS[args.arch])
        runs = {
            "wrapper": lambda out: measure_wrapper(ckpt, out, args.past, args.steps),
            "optimum": lambda out: measure_optimum(ckpt, out, args.past, args.steps),
            "genai": lambda out: measure_genai(ckpt, out, args.past, args.steps, args.genai_python),
        }
        for name in args.only:
            if name == "genai" and not args.genai_python:
                continue
            out = Path(tmp) / name
            out.mkdir()
            result = {"arch": args.arch, "past": args.past, **runs[name](out)}
            print(json.dumps(result), flush=True)
            results.append(result)
            subprocess.run(["rm", "-rf", str(out)], check=False)  # GBs at 0.6B
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"decode_choice_{args.arch}.json").write_text(json.dumps(results, indent=2))
    return 0
