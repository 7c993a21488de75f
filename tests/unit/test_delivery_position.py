"""A delivery's position read off its reply subject agrees with nats-py's metadata, in every format."""

from __future__ import annotations

import nats.errors
import pytest
from nats.aio.msg import Msg

from services.common.bus import DeliveryPosition, delivery_pending, delivery_position


def delivery(reply: str) -> Msg:
    return Msg(_client=None, subject="ipam.placement.10.0.0.1", reply=reply)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.IPAM.reader.1.417.12.1733400000000000000.62083",  # the first format
        "$JS.ACK._.4f2a.IPAM.reader.1.417.12.1733400000000000000.62083.rnd",  # with domain and account hash
        "$JS.ACK.hub.4f2a.IPAM.reader.1.417.12.1733400000000000000.62083",
    ],
)
def test_agrees_with_the_clients_metadata(reply: str) -> None:
    metadata = delivery(reply).metadata
    assert delivery_position(delivery(reply)) == DeliveryPosition(
        stream=metadata.sequence.stream, consumer=metadata.sequence.consumer, pending=metadata.num_pending
    )
    assert delivery_position(delivery(reply)) == DeliveryPosition(stream=417, consumer=12, pending=62083)
    assert delivery_pending(delivery(reply)) == 62083


@pytest.mark.parametrize("reply", ["", "_INBOX.abc", "$JS.ACK.IPAM.reader.1.x.12.17.3"])
def test_a_message_that_is_no_delivery_raises_as_the_client_does(reply: str) -> None:
    with pytest.raises((nats.errors.Error, ValueError)):
        delivery_position(delivery(reply))


@pytest.mark.parametrize("reply", ["", "_INBOX.abc", "$JS.ACK.IPAM.reader.1.12.17.3", "$JS.ACK.I.r.1.2.3.4.x"])
def test_the_pending_count_of_a_message_that_is_no_delivery_raises_as_the_client_does(reply: str) -> None:
    with pytest.raises((nats.errors.Error, ValueError)):
        delivery_pending(delivery(reply))
