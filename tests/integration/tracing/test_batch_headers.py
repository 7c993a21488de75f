"""``Bus.publish_many`` with per-item trace headers: each message of a batch carries its own span."""

from __future__ import annotations

from opentelemetry import trace

from schemas.events import IPAllocated, ServiceId
from services.common.bus import Bus, PublishItem
from services.common.subjects import StreamName, ipam_allocation_subject
from services.common.tracing import remote_parent, setup_tracing, span_headers, tracer


def _allocated(name: str) -> IPAllocated:
    return IPAllocated(service=ServiceId(namespace="default", name=name), ips=("10.0.0.1",), pool="lan", reason="t")


async def test_each_item_of_a_batch_carries_its_own_trace_and_plain_items_keep_working(bus: Bus) -> None:
    setup_tracing("metalbus-test")
    spans = [tracer(__name__).start_span(f"observe {name}") for name in ("a", "b")]
    items: list[PublishItem] = [
        (ipam_allocation_subject("default", "a"), _allocated("a"), None, span_headers(spans[0])),
        (ipam_allocation_subject("default", "b"), _allocated("b"), "id-b", span_headers(spans[1])),
        (ipam_allocation_subject("default", "c"), _allocated("c"), None),
    ]
    await bus.publish_many(items)
    for span in spans:
        span.end()
    carried = {r.subject.rsplit(".", 1)[-1]: remote_parent(r.headers)
               async for r in bus.read(StreamName.IPAM)}  # fmt: skip
    for name, span in zip(("a", "b"), spans, strict=True):
        origin = carried[name]
        assert origin is not None and origin.span_id == span.get_span_context().span_id
    assert carried["a"] is not None and carried["b"] is not None
    assert carried["a"].trace_id != carried["b"].trace_id
    assert carried["c"] is None or carried["c"].span_id not in {s.get_span_context().span_id for s in spans}
    assert not trace.get_current_span().get_span_context().is_valid
