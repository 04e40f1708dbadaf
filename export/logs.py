"""Keep the exporters' chatter out of afrl's progress output.

onnxscript/onnx_ir log hundreds of INFO lines per export (rewrite rules,
initializer deduplication), and onnxruntime.quantization logs through the
root logger. While `quiet_exporters()` is active, their records below
WARNING (and known-harmless warnings: the quantizer's "pre-processing" hint,
torch's "torchvision is not installed") are dropped; nothing else about
logging changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

# logger -> the lowest level still shown while exporting
_NOISY_LOGGERS = {
    "onnxscript": logging.WARNING,
    "onnx_ir": logging.WARNING,
    "torch.onnx": logging.WARNING,
    "torch.onnx._internal.exporter._registration": logging.ERROR,  # "torchvision is not installed"
}
_HARMLESS = ("consider to run pre-processing before quantization",)


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if "onnxruntime" in record.pathname.replace("\\", "/") and "quantization" in record.pathname:
            return record.levelno >= logging.WARNING and not any(h in record.getMessage() for h in _HARMLESS)
        return True


@contextmanager
def quiet_exporters() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    root_filter = _DropChatter()
    for lg, floor in zip(loggers, _NOISY_LOGGERS.values(), strict=True):
        lg.setLevel(max(lg.getEffectiveLevel(), floor))
    logging.getLogger().addFilter(root_filter)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(root_filter)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
