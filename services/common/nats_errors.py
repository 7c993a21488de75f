"""nats-py's errors mapped, in this one place, to the project's (:mod:`services.common.errors`).

The bus layer calls the client inside :func:`translated`; what leaves it is a
:class:`~services.common.errors.MetalbusError` grouped by what the caller does, with the client's error
as its cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeGuard

import nats.errors
import nats.js.errors

from services.common.errors import (
    Conflict,
    ConnectionClosed,
    Invalid,
    MetalbusError,
    NotFound,
    RequestTimeout,
    RetryableError,
)

#: JetStream's codes for a publish whose expected last sequence (stream, subject) or message id is stale.
WRONG_LAST_SEQUENCE_CODES = frozenset({10070, 10071, 10164})
#: JetStream's answer to creating a stream that exists with another configuration.
STREAM_NAME_IN_USE = 10058

_CONFLICT_CODES = WRONG_LAST_SEQUENCE_CODES | {STREAM_NAME_IN_USE}
#: JetStream's 400s that pass: "no suitable peers for placement" (a replicated stream or bucket made while a
#: server of the cluster is not known to be up: one still joining a cluster that is forming, or one down).
_TRANSIENT_CODES = frozenset({10005})

_CLOSED = (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError)
_TRANSIENT = (
    nats.errors.NoRespondersError,
    nats.errors.NoServersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.SlowConsumerError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    ConnectionError,
)

#: What :func:`translated` maps: the client's errors and the timeouts and broken connections it lets through.
CLIENT_ERRORS = (nats.errors.Error, TimeoutError, ConnectionError)


def project_error(error: BaseException, *, what: str) -> MetalbusError:
    """The project's error for one of the client's (``what``: the request, for the message)."""
    detail = f"{what}: {error!r}"
    if isinstance(error, _CLOSED):
        return ConnectionClosed(detail)
    if isinstance(error, TimeoutError):  # nats-py raises its own flavour and asyncio's
        return RequestTimeout(detail)
    if isinstance(error, nats.js.errors.KeyWrongLastSequenceError):
        return Conflict(detail)
    if isinstance(error, nats.js.errors.APIError) and _code(error, "err_code") in _CONFLICT_CODES:
        return Conflict(detail)
    if isinstance(error, nats.js.errors.NotFoundError):
        return NotFound(detail)
    if isinstance(error, _TRANSIENT):
        return RetryableError(detail)
    if isinstance(error, nats.js.errors.APIError) and (
        _code(error, "code") in (429, *range(500, 600)) or _code(error, "err_code") in _TRANSIENT_CODES
    ):
        return RetryableError(detail)
    return Invalid(detail)


def is_wrong_last_sequence(error: object) -> TypeGuard[nats.js.errors.BadRequestError]:
    """A publish refused because its expected last sequence (or message id) is stale."""
    return isinstance(error, nats.js.errors.BadRequestError) and _code(error, "err_code") in WRONG_LAST_SEQUENCE_CODES


def _code(error: nats.js.errors.APIError, name: str) -> int:
    """The server's status or error code (0 when the client made the error without one: its key-value
    errors do not always carry them)."""
    value = getattr(error, name, None)
    return value if isinstance(value, int) else 0


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run client calls; any client error leaves as the project's (see :func:`project_error`)."""
    try:
        yield
    except MetalbusError:
        raise  # mapped already (a nested call), or the bus layer's own
    except CLIENT_ERRORS as error:
        raise project_error(error, what=what) from error
