"""The app's lifecycle state: settings, metrics, and the engine once the model is loaded.

Loading runs in the background from the lifespan, so `/health/live` answers
while a large model loads and warms; `/health/ready` turns 200 only when
the engine is warmed. A load failure is kept (and logged) and handed to
`on_load_failure`, which `service.app.run` uses to stop the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from afrl.manifest import ArtifactError
from service.artifact_loader import BackendFactory, LoadedModel, load_artifact
from service.engine import ScoringEngine
from service.metrics import ServiceMetrics
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)


class ServiceRuntime:
    """Everything routes need, stored on `app.state.runtime`."""

    def __init__(self, settings: ServiceSettings, backend_factory: BackendFactory | None = None):
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.backend_factory = backend_factory
        self.model: LoadedModel | None = None
        self.engine: ScoringEngine | None = None
        self.load_error: str | None = None
        self.on_load_failure: Callable[[str], None] | None = None
        self._ready = False
        self.draining = False  # SIGTERM received: not ready, in-flight work finishes
        self._task: asyncio.Task | None = None

    @property
    def serving(self) -> bool:
        """Loaded and warmed: requests are served (also while draining)."""
        return self._ready and self.engine is not None

    @property
    def ready(self) -> bool:
        """What /health/ready reports: serving, and not shutting down."""
        return self.serving and not self.draining

    def start(self) -> None:
        """Begin loading and warming the model in the background."""
        self._task = asyncio.create_task(self._load(), name="afrl-load-model")

    async def wait_ready(self) -> None:
        """Wait for the background load; raises if it failed."""
        if self._task is not None:
            await asyncio.shield(self._task)
        if self.load_error is not None:
            raise RuntimeError(self.load_error)

    async def _load(self) -> None:
        engine = None
        try:
            model = await asyncio.to_thread(load_artifact, self.settings, self.backend_factory)
            engine = ScoringEngine(model, self.settings.max_batch_tokens, self.metrics, self.settings)
            engine.start_background()
            await asyncio.to_thread(engine.warmup)
        except Exception as e:  # any failure is reported, never left as an unhandled task error
            if engine is not None:
                engine.close()
            self.load_error = str(e) or type(e).__name__
            # An ArtifactError's message is the whole story; anything else deserves its traceback.
            logger.error("model load failed: %s", self.load_error, exc_info=not isinstance(e, ArtifactError))
            if self.on_load_failure is not None:
                self.on_load_failure(self.load_error)
            return
        self.model, self.engine, self._ready = model, engine, True
        logger.info("model %s ready", model.name)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._ready = False
        if self.engine is not None:
            self.engine.close()
