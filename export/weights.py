"""One weights file for all graphs of an artifact: every distinct tensor stored once.

The four graphs run the same decoder body, so exported one by one they
would each carry a copy of it (4 x 2.4 GB for the Qwen3-0.6B architecture
in FP32). `share_weights` rewrites the graphs of a folder so that every
initializer of at least `min_bytes` points into `weights.data` (ONNX
external data: location, offset, length), written once per distinct content
(dtype, shape and bytes). INT8 and FP16 conversions are deterministic, so
the same FP32 weight becomes the same bytes in every graph and is shared too.

Offsets are 4096-aligned so onnxruntime may memory-map them. Each graph still
loads its own copy of the weights into memory when a session is created;
sharing them between sessions (`SessionOptions.add_external_initializers`)
is the service's choice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx.external_data_helper import uses_external_data

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.data"
ALIGNMENT = 4096


def share_weights(
    folder: Path, files: Sequence[str], data_name: str = WEIGHTS_FILE, min_bytes: int = 1024
) -> dict[str, int]:
    """Move the large initializers of the graphs `files` (relative to `folder`) into one shared file.

    Returns byte counts: `stored` (written once), `referenced` (what the graphs hold in total).
    """
    folder = Path(folder)
    start = time.perf_counter()
    seen: dict[bytes, tuple[int, int]] = {}
    referenced = 0
    with open(folder / data_name, "wb") as data:
        for rel in files:
            path = folder / rel
            old_files = _external_files(path) - {data_name}
            model = onnx.load(path)  # weights included, wherever they were
            for tensor in model.graph.initializer:
                if not tensor.HasField("raw_data") or len(tensor.raw_data) < min_bytes:
                    continue
                raw = tensor.raw_data
                key = hashlib.sha256(f"{tensor.data_type}:{list(tensor.dims)}:".encode() + raw).digest()
                if key not in seen:
                    data.write(b"\0" * (-data.tell() % ALIGNMENT))
                    seen[key] = (data.tell(), len(raw))
                    data.write(raw)
                offset, length = seen[key]
                referenced += length
                tensor.ClearField("raw_data")
                tensor.data_location = onnx.TensorProto.EXTERNAL
                del tensor.external_data[:]
                for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = k, v
            onnx.save_model(model, path)
            del model
            for name in old_files:
                (folder / rel).parent.joinpath(name).unlink(missing_ok=True)
        stored = data.tell()
    logger.info(
        "shared weights of %d graphs in %s: %.1f MB stored for %.1f MB referenced (%.1f s)",
        len(files),
        data_name,
        stored / 1e6,
        referenced / 1e6,
        time.perf_counter() - start,
    )
    return {"stored": stored, "referenced": referenced}


def _external_files(path: Path) -> set[str]:
    model = onnx.load(path, load_external_data=False)
    return {
        entry.value
        for tensor in model.graph.initializer
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }
