"""Export each graph of one checkpoint to FP32 once, however many artifacts (fp32, int8, fp16) are built from it.

`export_artifact` exports every graph to FP32 before converting it; for a
0.6B model that is 100-180 s a graph. Inside `reuse_fp32_exports(cache)`,
the first export of a graph lands in `cache/<key>/<graph>/` and every later
one (another dtype, or a later run with the same cache folder) copies it.
The key is the checkpoint's path, the label ids and the export options; the
weights behind a path are not hashed, so give a checkpoint whose weights
change a fresh cache folder.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def reuse_fp32_exports(cache: Path, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Patch export.artifact's export_graph for the duration; `timings` receives the seconds of real exports."""
    from export import artifact

    real = artifact.export_graph

    def cached(name, model, label_token_ids, path, **kw):
        key = repr((model.config._name_or_path, list(label_token_ids), sorted(kw.items())))
        stored = Path(cache) / hashlib.sha256(key.encode()).hexdigest()[:16] / name / Path(path).name
        if not stored.is_file():
            start = time.perf_counter()
            real(name, model, label_token_ids, stored, **kw)
            if timings is not None:
                timings[name] = round(time.perf_counter() - start, 1)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        for file in stored.parent.iterdir():
            shutil.copyfile(file, Path(path).parent / file.name)
        return Path(path)

    artifact.export_graph = cached
    try:
        yield
    finally:
        artifact.export_graph = real
