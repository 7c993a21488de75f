"""The API server's answers mapped, once, to the project's errors (:mod:`services.common.errors`), grouped by
what the caller does: :class:`Conflict` (409: re-read and retry), :class:`NotFound` (404, 410: the object or its
namespace is not there, drop quietly), :class:`RetryableError` (5xx, 429: back off and retry later),
:class:`Invalid` (any other 4xx: the request is invalid or forbidden; log, do not retry at once). A 429 is
:class:`TooManyRequests`, a retryable error that carries the answer's ``Retry-After``."""

from __future__ import annotations

from collections.abc import Mapping

from services.common.errors import Conflict, Invalid, MetalbusError, NotFound, RetryableError, TooManyRequests
from services.watcher.status.pacing import retry_after_seconds


def failure_for_status(status: int, reason: str, headers: Mapping[str, str] | None, body: object) -> MetalbusError:
    detail = f"{status} {reason}"
    if status == 409:
        return Conflict(detail)
    if status in (404, 410):
        return NotFound(detail)
    if status == 429:
        return TooManyRequests(detail, retry_after=retry_after_seconds((headers or {}).get("Retry-After")))
    if status >= 500 or status == 0:
        return RetryableError(detail)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return Invalid(f"{detail}: {text[:300]}")
