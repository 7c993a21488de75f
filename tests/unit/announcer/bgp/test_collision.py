"""RFC 4271 §6.8 as a table: which of two connections to one peer carries the session."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from services.announcer.bgp.collision import Initiator, Kept, resolve_collision
from services.announcer.bgp.events import State

LOW, HIGH = ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.9")
LOCAL, REMOTE = Initiator.LOCAL, Initiator.REMOTE
OPENING = (State.OPEN_SENT, State.OPEN_CONFIRM)


def kept(
    *,
    local_id: ipaddress.IPv4Address,
    remote_id: ipaddress.IPv4Address,
    existing: Initiator,
    new: Initiator,
    state: State = State.OPEN_CONFIRM,
    local_as: int = 64512,
    remote_as: int = 64513,
) -> Kept:
    return resolve_collision(
        local_id=local_id, remote_id=remote_id, local_as=local_as, remote_as=remote_as,
        existing=existing, existing_state=state, new=new,
    )  # fmt: skip


@pytest.mark.parametrize("state", OPENING)
@pytest.mark.parametrize(
    ("local_id", "remote_id", "existing", "new", "expected"),
    [
        # we dialled first, the peer's connection arrives: the higher identifier's connection stays
        (LOW, HIGH, LOCAL, REMOTE, Kept.NEW),  # the peer is higher: its connection
        (HIGH, LOW, LOCAL, REMOTE, Kept.EXISTING),  # we are higher: ours
        # the peer dialled first, ours completes second: the same connections win
        (LOW, HIGH, REMOTE, LOCAL, Kept.EXISTING),
        (HIGH, LOW, REMOTE, LOCAL, Kept.NEW),
    ],
)
def test_the_connection_opened_by_the_higher_identifier_stays(
    local_id: ipaddress.IPv4Address,
    remote_id: ipaddress.IPv4Address,
    existing: Initiator,
    new: Initiator,
    expected: Kept,
    state: State,
) -> None:
    assert kept(local_id=local_id, remote_id=remote_id, existing=existing, new=new, state=state) is expected


def test_both_ends_keep_the_same_tcp_connection() -> None:
    """Each end runs the rule with the identifiers swapped and the initiators mirrored: they agree."""
    for (a, b), (existing, new) in itertools.product([(LOW, HIGH), (HIGH, LOW)], [(LOCAL, REMOTE), (REMOTE, LOCAL)]):
        here = kept(local_id=a, remote_id=b, existing=existing, new=new)
        mirror = {LOCAL: REMOTE, REMOTE: LOCAL}
        there = kept(local_id=b, remote_id=a, existing=mirror[existing], new=mirror[new], local_as=64513,
                     remote_as=64512)  # fmt: skip
        opener_here = new if here is Kept.NEW else existing
        opener_there = mirror[new] if there is Kept.NEW else mirror[existing]
        assert mirror[opener_here] is opener_there  # the same connection, seen from its two ends


def test_identifiers_compare_as_unsigned_integers_not_as_text() -> None:
    small, large = ipaddress.IPv4Address("9.255.255.255"), ipaddress.IPv4Address("10.0.0.0")
    assert kept(local_id=small, remote_id=large, existing=LOCAL, new=REMOTE) is Kept.NEW
    assert kept(local_id=ipaddress.IPv4Address("200.0.0.1"), remote_id=large, existing=LOCAL, new=REMOTE) is (
        Kept.EXISTING
    )


def test_equal_identifiers_are_settled_by_the_as_numbers() -> None:
    """RFC 6286 §2.3: external peers may share an identifier; the larger AS's connection stays."""
    assert kept(local_id=LOW, remote_id=LOW, existing=LOCAL, new=REMOTE, local_as=64512, remote_as=64513) is Kept.NEW
    assert kept(local_id=LOW, remote_id=LOW, existing=LOCAL, new=REMOTE, local_as=64514, remote_as=64513) is (
        Kept.EXISTING
    )


@pytest.mark.parametrize(("existing", "new"), list(itertools.product(Initiator, Initiator)))
@pytest.mark.parametrize(("local_id", "remote_id"), [(LOW, HIGH), (HIGH, LOW)])
def test_an_established_session_is_never_given_up(
    existing: Initiator, new: Initiator, local_id: ipaddress.IPv4Address, remote_id: ipaddress.IPv4Address
) -> None:
    assert kept(local_id=local_id, remote_id=remote_id, existing=existing, new=new, state=State.ESTABLISHED) is (
        Kept.EXISTING
    )


@pytest.mark.parametrize("state", OPENING)
@pytest.mark.parametrize("initiator", Initiator)
def test_a_second_connection_from_the_same_end_replaces_the_first(state: State, initiator: Initiator) -> None:
    """The end that opened both gave up on the older one: whatever the identifiers, the newer one stays."""
    for local_id, remote_id in ((LOW, HIGH), (HIGH, LOW)):
        assert kept(local_id=local_id, remote_id=remote_id, existing=initiator, new=initiator, state=state) is (
            Kept.NEW
        )
