"""OpenTelemetry set-up from the standard ``OTEL_*`` variables, and W3C trace context in bus headers.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, spans are
exported over OTLP/HTTP; ``OTEL_TRACES_EXPORTER=none`` turns export off. Context propagation works
either way, so a trace id still follows every event across services and shows in the logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping, Sequence

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.util.types import Attributes

from schemas.refusal import DropReason, Refused

_configured: TracerProvider | None = None


def setup_tracing(service_name: str, *, extra_processor: SpanProcessor | None = None) -> TracerProvider:
    """Install a tracer provider for this process (once); returns it."""
    global _configured
    if _configured is not None:
        if extra_processor is not None:
            _configured.add_span_processor(extra_processor)
            _SAMPLER.exporting = True  # spans now have somewhere to go
        return _configured
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    if "OTEL_TRACES_SAMPLER" in os.environ:
        provider = TracerProvider(resource=resource)  # the operator chose a sampler
    else:
        provider = TracerProvider(resource=resource, sampler=_SAMPLER)
    if _otlp_wanted():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _SAMPLER.exporting = True
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
        _SAMPLER.exporting = True
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


class _RecordOnlyWhenExported(Sampler):
    """Spans cost CPU on every event; with nowhere to send them, record none. Trace context still
    flows (a dropped span keeps a valid trace id), so log lines keep carrying trace ids."""

    def __init__(self) -> None:
        self.exporting = False
        self._delegate = ParentBased(ALWAYS_ON)

    def should_sample(self, parent_context: context.Context | None, trace_id: int, name: str,
                      kind: trace.SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[trace.Link] | None = None,
                      trace_state: trace.TraceState | None = None) -> SamplingResult:
        if not self.exporting:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "RecordOnlyWhenExported"


_SAMPLER = _RecordOnlyWhenExported()


def _otlp_wanted() -> bool:
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower()
    if "otlp" not in exporters.split(","):
        return False
    return any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def shutdown_tracing() -> None:
    if _configured is not None:
        _configured.force_flush()


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_context(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context (``traceparent``/``tracestate``) into message headers."""
    propagate.inject(headers)


def spans_exported() -> bool:
    """Whether this process records spans (it has somewhere to send them). When it does not, a hot
    path may skip span bookkeeping and send on the trace context it received (``passed_on``)."""
    return _SAMPLER.exporting


#: The W3C trace context headers.
TRACE_CONTEXT_HEADERS = ("traceparent", "tracestate")


#: W3C traceparent: version, trace id, parent id, flags (lower-case hex; a later version may append fields).
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-[\x21-\x7e]*)?")
#: W3C tracestate: printable ASCII list members; longer than 512 characters may be dropped (W3C 3.3.1.5).
_TRACESTATE = re.compile(r"[\x20-\x7e]{0,512}")


def read_trace_context(headers: Mapping[str, str] | None) -> dict[str, str] | Refused:
    """The W3C trace context headers of a received message (none, or ``traceparent`` and maybe
    ``tracestate``), or why they are not trace context. Total; the message itself stays readable."""
    if not headers:
        return {}
    found = {name: headers[name] for name in TRACE_CONTEXT_HEADERS if name in headers}
    parent, state = found.get("traceparent"), found.get("tracestate")
    if parent is None:
        return {}  # a tracestate alone means nothing (W3C 3.3.1)
    if not isinstance(parent, str) or len(parent) > 512 or not _TRACEPARENT.fullmatch(parent):
        return Refused(DropReason.BAD_TRACE_CONTEXT, f"traceparent {parent!r:.120}")
    if state is not None and not (isinstance(state, str) and _TRACESTATE.fullmatch(state)):
        return Refused(DropReason.BAD_TRACE_CONTEXT, f"tracestate {state!r:.120}")
    return found


def passed_on(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace context of a received message, unchanged, for the messages it causes: the trace
    goes on across a process that records no span of its own."""
    return {name: headers[name] for name in TRACE_CONTEXT_HEADERS if name in headers}


def extract_context(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context carried by message headers (an empty context if none)."""
    return propagate.extract(dict(headers or {}))


def span_headers(span: trace.Span) -> dict[str, str]:
    """Message headers that make ``span`` the parent of whatever handles the message (for a span
    that is not the current one, e.g. one of many in a batch)."""
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return headers


def remote_parent(headers: Mapping[str, str] | None) -> trace.SpanContext | None:
    """The span context message headers carry, or None when they carry none: kept to parent a span
    that starts later, outside the message's handling."""
    span_context = trace.get_current_span(extract_context(headers)).get_span_context()
    return span_context if span_context.is_valid else None


def parent_context(span_context: trace.SpanContext | None) -> context.Context:
    """A context whose parent is ``span_context``; a fresh (root) context for None."""
    if span_context is None:
        return context.Context()
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), context.Context())


def current_trace_id() -> str:
    """Hex trace id of the current span, or '' outside any span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""
