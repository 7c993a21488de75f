"""nats-py's errors reach callers as the project's, grouped by what the caller does about them."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest

from services.common import errors
from services.common.nats_errors import is_wrong_last_sequence, project_error, translated


def api_error(kind: type[nats.js.errors.APIError], *, code: int, err_code: int) -> nats.js.errors.APIError:
    return kind(code=code, err_code=err_code, description="from the server")


@pytest.mark.parametrize(
    ("client_error", "group"),
    [
        # back off and retry
        (nats.errors.TimeoutError(), errors.RequestTimeout),
        (TimeoutError(), errors.RequestTimeout),
        (nats.js.errors.FetchTimeoutError(), errors.RequestTimeout),
        (nats.errors.NoRespondersError(), errors.RetryableError),
        (nats.errors.ConnectionReconnectingError(), errors.RetryableError),
        (nats.errors.StaleConnectionError(), errors.RetryableError),
        (nats.js.errors.NoStreamResponseError(), errors.RetryableError),
        (api_error(nats.js.errors.ServiceUnavailableError, code=503, err_code=10008), errors.RetryableError),
        (api_error(nats.js.errors.APIError, code=500, err_code=10049), errors.RetryableError),
        # no suitable peers for placement: a server of a forming cluster not joined yet
        (api_error(nats.js.errors.BadRequestError, code=400, err_code=10005), errors.RetryableError),
        (ConnectionResetError(), errors.RetryableError),
        # reload and retry
        (api_error(nats.js.errors.BadRequestError, code=400, err_code=10071), errors.Conflict),
        (api_error(nats.js.errors.BadRequestError, code=400, err_code=10058), errors.Conflict),
        (nats.js.errors.KeyWrongLastSequenceError(description="wrong last sequence: 4"), errors.Conflict),
        # absent
        (api_error(nats.js.errors.NotFoundError, code=404, err_code=10059), errors.NotFound),
        (nats.js.errors.KeyNotFoundError(), errors.NotFound),
        (nats.js.errors.KeyDeletedError(), errors.NotFound),
        # give up on this request
        (api_error(nats.js.errors.BadRequestError, code=400, err_code=10052), errors.Invalid),
        (nats.errors.MaxPayloadError(), errors.Invalid),
        (nats.errors.BadSubjectError(), errors.Invalid),
        # stop
        (nats.errors.ConnectionClosedError(), errors.ConnectionClosed),
        (nats.errors.ConnectionDrainingError(), errors.ConnectionClosed),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value.__name__,
)
def test_every_client_error_leaves_the_bus_layer_in_the_group_of_what_the_caller_does(
    client_error: Exception, group: type[errors.MetalbusError]
) -> None:
    with pytest.raises(errors.MetalbusError) as raised, translated("a request"):
        raise client_error
    assert type(raised.value) is group
    assert raised.value.__cause__ is client_error  # the client's detail stays with it
    assert str(raised.value).startswith("a request: ")


def test_a_timeout_is_also_a_timeout_error_for_callers_bounding_their_own_waits() -> None:
    assert isinstance(project_error(nats.errors.TimeoutError(), what="fetch"), TimeoutError)


def test_the_projects_own_errors_and_the_callers_bugs_pass_through_unchanged() -> None:
    mine = errors.NotFound("stream K8S")
    with pytest.raises(errors.NotFound) as raised, translated("a request"):
        raise mine
    assert raised.value is mine
    with pytest.raises(KeyError), translated("a request"):
        raise KeyError("a bug is not a bus error")


def test_only_a_stale_expected_sequence_is_a_wrong_last_sequence() -> None:
    assert is_wrong_last_sequence(api_error(nats.js.errors.BadRequestError, code=400, err_code=10071))
    assert not is_wrong_last_sequence(api_error(nats.js.errors.BadRequestError, code=400, err_code=10058))
    assert not is_wrong_last_sequence(nats.js.errors.KeyWrongLastSequenceError())
