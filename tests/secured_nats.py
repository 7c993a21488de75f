"""A nats-server running exactly metalbus's least-privilege accounts, for tests that run the real components.

    with secured_nats(tmp_path) as server:
        ipam = [..., "ipam", "--nats", server.url_for(BusUser.IPAM)]
        announcer = [..., "announcer", "--node", "node1", "--nats", server.node_url("node1")]
        watcher = [..., "watcher", "--nats", server.url_for(BusUser.WATCHER), ...]
        bus = BusThread(server.url)  # the test itself: the admin user

Each component holds only its own credential (the watcher, the ipam, each announcer as its node through the
authenticator), as in a deployment. The credentials, the server's store and its log live under the
directory given. Leaving the block fails when the server refused anybody anything (a permission violation in
its log): the components must need no more than their permissions grant, even where they would retry or
carry on after a refusal.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.common.bus import Bus, BusSettings
from services.common.credentials import BusCredentials
from services.common.nats_server import EmbeddedNats

#: How nats-server logs a refused publish or subscription (``... - "METALBUS/user:ipam" - Publish Violation ...``).
_VIOLATION = re.compile(r"(Publish|Subscription) Violation")


def permission_violations(log_file: Path) -> list[str]:
    """Every line of the server's log where it refused a user a publish or a subscription."""
    if not log_file.exists():
        return []
    return [line.strip() for line in log_file.read_text().splitlines() if _VIOLATION.search(line)]


@contextmanager
def secured_nats(directory: Path, *, host: str = "127.0.0.1", port: int = 0, provision: bool = True
                 ) -> Iterator[EmbeddedNats]:
    """nats-server with the shipped accounts, the authenticator beside it, the streams provisioned by the
    admin (unless not ``provision``); ``server.url`` is the admin's URL, ``url_for``/``node_url`` each
    component's. ``port`` 0 picks a free one. Fails on leaving if any permission was refused meanwhile."""
    directory.mkdir(parents=True, exist_ok=True)
    log_file = directory / "nats-server.log"
    credentials = BusCredentials.create(directory / "credentials")
    with EmbeddedNats(host=host, port=port, store_dir=directory / "store", log_file=log_file,
                      credentials=credentials, provision=provision) as server:
        try:
            yield server
        except BaseException:
            for line in permission_violations(log_file):  # shown with the failure: often its cause
                print(f"nats-server refused: {line}")
            raise
    refused = permission_violations(log_file)
    assert not refused, "a component was refused by its NATS permissions:\n" + "\n".join(refused)


@pytest.fixture
def secured_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A secured nats-server of this test's own (see :func:`secured_nats`)."""
    with secured_nats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def admin_bus(secured_server: EmbeddedNats) -> AsyncIterator[Bus]:
    """The test's own connection to the secured server, as the admin user (reads everything)."""
    connection = await Bus.connect(BusSettings(url=secured_server.url), producer="test/admin")
    try:
        yield connection
    finally:
        await connection.close()
