"""OpenTelemetry set-up from the standard ``OTEL_*`` variables, and W3C trace context in bus headers.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, spans are
exported over OTLP/HTTP; ``OTEL_TRACES_EXPORTER=none`` turns export off. Context propagation works
either way, so a trace id still follows every event across services and shows in the logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured: TracerProvider | None = None


def setup_tracing(service_name: str, *, extra_processor: SpanProcessor | None = None) -> TracerProvider:
    """Install a tracer provider for this process (once); returns it."""
    global _configured
    if _configured is not None:
        if extra_processor is not None:
            _configured.add_span_processor(extra_processor)
        return _configured
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    if _otlp_wanted():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


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
