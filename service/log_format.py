"""JSON-lines logs (`AFRL_LOG_FORMAT=json`): one object per record, for log shippers.

    {"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "logger": "service.app", "message": "...",
     "trace_id": "...", "span_id": "..."}

`trace_id`/`span_id` appear while a traced request's span is current
(service.tracing), so logs and traces join; `exception` carries a
traceback when one was logged. Records carry what the code logged, and the
service never logs queries, documents or keys.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_trace_ids())
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def _trace_ids() -> dict[str, str]:
    """The current span's ids, if OpenTelemetry is in use (never imported from here)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def use_json_logs() -> None:
    """Every handler of the root logger writes JSON lines (one to stderr if it had none)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
