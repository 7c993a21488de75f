"""Log lines people and machines can read, in one of two formats (``--log-format``, env ``METALBUS_LOG_FORMAT``):

- ``text``: flat ``key=value`` pairs (logfmt), one record a line:
  ``time=2025-01-02T03:04:05.678Z level=info component=announcer logger=... msg="l2 agent started" node=fp1
  trace_id=...``; a value with a space, a quote, ``=``, a backslash or a control character is quoted and
  escaped; a traceback, when there is one, follows on the next lines;
- ``json``: one JSON object a line, with the same keys, the traceback under ``exception``; counts and
  durations are numbers.

Call sites keep the stdlib's lazy ``%`` style and write a short message followed by ``key=value`` fields,
each value a placeholder or a literal: ``log.info("l2 agent started node=%s desired=%d", node, count)``. The
formatter reads the fields from that template, so a value holding spaces stays one value. A template of any
other shape (a third-party library's) is logged whole as the message. The formatter adds the component and
the current trace id, so a log line can be found from a trace and the other way round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from services.common.tracing import current_trace_id

#: Keys every line carries; a template field of the same name is logged as ``field_<name>`` unless equal.
RESERVED_KEYS = frozenset({"time", "level", "component", "logger", "msg", "trace_id", "exception"})

_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?([diouxXeEfFgGcrsa%])")
_FIELD = re.compile(r"([A-Za-z_][\w.]*)=(\S*)")
_NEEDS_QUOTES = re.compile(r'[\s"=\\]|[^\x21-\x7e\u00a0-\uffff]')
_FLOAT_CONVERSIONS = frozenset("eEfFgG")


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class FieldTemplate:
    key: str
    value: str  # a %-template
    arguments: int
    #: The value is exactly one placeholder of this conversion (``d``, ``s``, ...), else empty.
    conversion: str


@dataclass(frozen=True, slots=True)
class LineTemplate:
    message: str  # a %-template
    arguments: int
    fields: tuple[FieldTemplate, ...]


Value = str | int | float | bool


def _arguments(template: str) -> int | None:
    """How many arguments ``template`` consumes; None when it cannot be told (``*`` widths, mapping keys)."""
    count = 0
    for match in _PLACEHOLDER.finditer(template):
        if "*" in match.group(0) or match.group(0).startswith("%("):
            return None
        count += match.group(1) != "%"
    return count


@lru_cache(maxsize=1024)
def parse_template(template: str) -> LineTemplate | None:
    """``"words key=value key=value"`` → its message and fields; None for a template of any other shape."""
    words = template.split()
    first_field = next((i for i, word in enumerate(words) if _FIELD.fullmatch(word)), len(words))
    message = " ".join(words[:first_field])
    message_arguments = _arguments(message)
    if message_arguments is None:
        return None
    fields: list[FieldTemplate] = []
    for word in words[first_field:]:
        match = _FIELD.fullmatch(word)
        if match is None:
            return None
        key, value = match.groups()
        arguments = _arguments(value)
        if arguments is None:
            return None
        single = _PLACEHOLDER.fullmatch(value)
        fields.append(FieldTemplate(key, value, arguments, single.group(1) if single and arguments == 1 else ""))
    return LineTemplate(message, message_arguments, tuple(fields))


def _native(field: FieldTemplate, argument: object, rendered: str) -> Value:
    """The value a machine should read: a count or a duration stays a number (JSON), anything else is text."""
    if field.conversion in ("d", "i"):
        with contextlib.suppress(ValueError):
            return int(rendered)
    elif field.conversion in _FLOAT_CONVERSIONS:
        with contextlib.suppress(ValueError):
            number = float(rendered)
            if math.isfinite(number):
                return number
    elif field.conversion == "s" and type(argument) in (int, float, bool) and isinstance(argument, int | float):
        return argument if not isinstance(argument, float) or math.isfinite(argument) else rendered
    return rendered


def message_and_fields(record: logging.LogRecord) -> tuple[str, list[tuple[str, Value]]]:
    """The record's message and its ``key=value`` fields, values rendered; the whole message when the
    template is not of the ``words key=value ...`` shape or its arguments do not match it."""
    template = parse_template(record.msg) if isinstance(record.msg, str) else None
    args: tuple[object, ...] | None = record.args if isinstance(record.args, tuple) else None
    if not record.args:
        args = ()
    if template is None or args is None or len(args) != template.arguments + sum(
        field.arguments for field in template.fields
    ):
        return record.getMessage(), []

    def render(text: str, taken: tuple[object, ...]) -> str:
        return text % taken if args else text  # as the stdlib: no arguments, no % formatting

    try:
        message = render(template.message, args[: template.arguments])
        fields: list[tuple[str, Value]] = []
        position = template.arguments
        for field in template.fields:
            taken = args[position : position + field.arguments]
            position += field.arguments
            rendered = render(field.value, taken)
            fields.append((field.key, _native(field, taken[0], rendered) if field.conversion else rendered))
    except (TypeError, ValueError):
        return record.getMessage(), []
    return message, fields


def logfmt_value(value: Value) -> str:
    """A value as logfmt writes it: bare when it can be, else double-quoted with ``"``, ``\\`` and control
    characters escaped (JSON string escapes)."""
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return json.dumps(text, ensure_ascii=False)


class StructuredFormatter(logging.Formatter):
    """The pairs of one record, in order; subclasses write them as text or JSON."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def pairs(self, record: logging.LogRecord) -> list[tuple[str, Value]]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        own: list[tuple[str, Value]] = [
            ("time", f"{stamp}.{int(record.msecs):03d}Z"),
            ("level", record.levelname.lower()),
            ("component", self._component),
            ("logger", record.name),
        ]
        message, fields = message_and_fields(record)
        own.append(("msg", message))
        reserved = dict(own)
        for key, value in fields:
            if key not in RESERVED_KEYS:
                own.append((key, value))
            elif reserved.get(key) != value:
                own.append((f"field_{key}", value))
        trace_id = current_trace_id()
        if trace_id:
            own.append(("trace_id", trace_id))
        return own

    def traceback(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)


class TextFormatter(StructuredFormatter):
    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{key}={logfmt_value(value)}" for key, value in self.pairs(record))
        traceback = self.traceback(record)
        return f"{line}\n{traceback}" if traceback else line


class JsonFormatter(StructuredFormatter):
    def format(self, record: logging.LogRecord) -> str:
        document = dict(self.pairs(record))
        traceback = self.traceback(record)
        if traceback:
            document["exception"] = traceback
        return json.dumps(document, ensure_ascii=False, default=str)


FORMATTERS: dict[LogFormat, type[StructuredFormatter]] = {LogFormat.TEXT: TextFormatter, LogFormat.JSON: JsonFormatter}


def add_logging_arguments(parser: argparse.ArgumentParser, *, default_level: str = "INFO") -> None:
    """``--log-level`` and ``--log-format``, as every long-running command takes them."""
    parser.add_argument("--log-level", default=os.environ.get("METALBUS_LOG_LEVEL", default_level),
                        help=f"DEBUG, INFO, WARNING or ERROR (env METALBUS_LOG_LEVEL; default {default_level})")
    parser.add_argument(
        "--log-format", type=LogFormat, choices=list(LogFormat),
        default=LogFormat(os.environ.get("METALBUS_LOG_FORMAT") or LogFormat.TEXT),
        help="text: key=value pairs; json: one JSON object a line (env METALBUS_LOG_FORMAT; default text)",
    )


def setup_logging(component: str, *, level: str | None = None, log_format: LogFormat | None = None) -> None:
    """Every record of the process to stderr, in ``log_format`` (else ``METALBUS_LOG_FORMAT``, else text)."""
    chosen = log_format or LogFormat(os.environ.get("METALBUS_LOG_FORMAT") or LogFormat.TEXT)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[chosen](component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("METALBUS_LOG_LEVEL", "INFO")).upper())
    logging.getLogger("nats").setLevel(logging.WARNING)
