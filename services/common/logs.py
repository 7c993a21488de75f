"""Structured log lines: ``time level logger message key=value ... trace_id=...``.

Call sites put their stable fields into the message as ``key=value`` pairs; the formatter adds the
component and the current trace id, so a log line can be found from a trace and the other way round.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from services.common.tracing import current_trace_id


class KeyValueFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"{stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} "
            f"component={self._component} logger={record.name} msg={record.getMessage()}"
        )
        trace_id = current_trace_id()
        if trace_id:
            line += f" trace_id={trace_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(component: str, level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("METALBUS_LOG_LEVEL", "INFO")).upper())
    logging.getLogger("nats").setLevel(logging.WARNING)
