"""`afrl bench compare`: our engine against what users would otherwise run, same weights, same inputs.

Modules, one job each: `models` (which checkpoint and artifacts, built and
cached in OUT), `inputs` (the request and its prompts), `torch_paths`,
`optimum_path` and `engine_path` (the compared paths), `timing`, `report`,
and `runner`, which runs them in order. `qwen3_0p6b` builds the full-size
random-weight checkpoint; `fp32_exports` exports each graph once for every
dtype. torch, transformers and optimum are imported only inside the paths.
"""
