"""The afrl relevance service: a model artifact behind HTTP (DESIGN section 4-6).

    settings.py         ServiceSettings (AFRL_* environment)
    artifact_loader.py  manifest + tokenizer + backend from an artifact folder
    backend.py          Backend protocol, OnnxScoreBackend
    batching.py         micro-batch planning and left padding (pure)
    engine.py           ScoringEngine: tokenize -> batch -> backend -> grades
    admission.py        in-flight bound behind 429 and afrl_queue_depth
    metrics.py          per-app Prometheus registry
    runtime.py          lifecycle state on app.state.runtime (background load + warmup)
    api/                schemas, errors, auth, body limits, serving glue, routes, middleware
    app.py              create_app(settings, backend_factory), run(settings)

Never imports torch or transformers.
"""
