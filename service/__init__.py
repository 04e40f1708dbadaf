"""The afrl relevance service: a model artifact behind HTTP (DESIGN section 4-6).

    settings.py         ServiceSettings (AFRL_* environment)
    artifact_loader.py  manifest + tokenizer + backend from an artifact folder
    providers.py        AFRL_PROVIDERS -> execution providers and their options (auto: CUDA if present)
    onnx_session.py     one graph in an onnxruntime session: plain runs on CPU, IO binding on GPU,
                        CUDA graphs per shape bucket (AFRL_CUDA_GRAPHS)
    backend.py          what a backend can do, as protocols checked with isinstance: Backend (score),
                        PrefixBackend, ExtendBackend (a cache extended by new tokens), DecodeBackend,
                        DeviceBackend (providers, warmup shapes); OnnxBackend
    kv.py               KV caches between graphs: the guideline's cache, shared pasts of several requests,
                        prefix ++ document caches for decoding, decode batches
    batching.py         micro-batch planning, shape buckets, which batches may merge (pure)
    work.py             what is queued: a request's work, its score and decode jobs
    scheduler.py        the cross-request batcher: token budget, fairness, max wait, dead work,
                        queued-token bound; one inference thread
    passes.py           one score pass on the inference thread: prefixes on the guideline cache, a shared past
    reasoning.py        greedy decoding of explanations from the score's KV cache, every stream in one batch
    result_cache.py     (query, document) -> label logits, LRU (AFRL_RESULT_CACHE_SIZE)
    engine.py           ScoringEngine: tokenize -> scheduler -> grades -> explanations; the one object
                        routes call (admission pre-checks and slots, health, liveness, model info)
    admission.py        requests-in-flight bound (owned by the engine), QueueFull (429), Deadline (504)
    metrics.py          per-app Prometheus registry
    runtime.py          lifecycle state on app.state.runtime (background load + warmup, draining)
    api/                schemas (query and documents validated once), errors, auth, body limits,
                        serving glue (score, stream, rerank), routes, middleware
    app.py              create_app(settings, backend_factory), run(settings): graceful SIGTERM

Never imports torch or transformers.
"""
