"""Every benchmark of the project, each one an `afrl bench NAME` command; results to keep go in bench/results/.

    NAME                   module                        what it measures
    latency                latency                       POST /v1/score at concurrency 1, live server
    load                   load_runner                   locust: mixed sizes, some streamed, CSV + plot
    compare                compare (package)             our engine against the transformers and optimum paths
    overhead               service_overhead              /v1/score against the raw engine call
    stream                 service_stream                first `score` event of a stream against the plain answer
    engine-batching        engine_batching               shared passes and batched explanation streams, on vs off
    overload               service_overload              accepted latency and 429s at a multiple of capacity
    soak                   service_soak                  a long run: errors, latency and RSS over time, then overload
    export-0p6b            export_qwen3_0p6b             export the Qwen3-0.6B architecture: time, size, parity
    export-prefix-speedup  export_prefix_speedup         shared-prefix scoring against full prompts
    export-int8-trained    export_int8_trained           INT8 parity of a trained checkpoint on the dev split
    fused-graphs-cpu       fused_graphs_cpu              fused graphs against plain ones on CPU, FP32 and INT8
    int8-recipes           int8_recipes                  which down projections INT8 keeps FP32: grades, speed
    export-decode-choice   export_decode_choice          which exporter writes the decode graph
    gpu                    gpu_bench                     torch eager FP16 against onnxruntime CUDA (GPU host)
    gpu-export-check       gpu_export_check              FP16 graphs on CUDA: parity and latency (GPU host)
    gpu-train-smoke        gpu_train_smoke               SFT, RL and TRL GRPO steps at 0.6B size (GPU host)
    train-compact-vocab    train_compact_vocab           SFT steps/min, compact training vocabulary vs full table

Each command module holds its docstring (what it runs, how to read the
figures), `add_arguments(parser)` and `run(args) -> int`; afrl/cli/bench.py
lists them. `afrl` imports them all to build its parser, so at the top they
import the standard library and each other only; everything else (numpy,
httpx, torch, the service) inside the functions that need it. Shared pieces: the server
in its own process (server_process), the requests (service_common,
world_requests), the random-weight Qwen3 checkpoint (qwen3_0p6b), the FP32
export cache (fp32_exports); plots go through afrl.plotting.
"""
