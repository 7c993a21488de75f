"""A BGPPeer's password is never silently dropped: a passwordSecret that is missing, of another type than
kubernetes.io/basic-auth or without a ``password`` key refuses the peer with the reason; the announcer never
dials it without TCP MD5 instead. BIRD here takes sessions without MD5, so one would be seen at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bgp_world import bgp_advertisement, bgp_peer, node, secret
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Bird
from tests.network.bgp_agent.harness import NODES, ROUTER4, fabric, start_bird

_SKIP = skip_reason() or Bird.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

ASN = 64512


def test_a_password_that_cannot_be_had_refuses_the_peer_and_never_dials_without_md5(tmp_path: Path) -> None:
    with fabric(tmp_path) as fab:
        bird = start_bird(fab, router_as=ASN, node_as=ASN)  # no password: a session without MD5 would come up
        router = bird["node1"]
        md5 = {"passwordSecret": {"name": "bgp-md5"}}
        fab.observe(
            pool("lan", "198.51.100.0/24"), bgp_advertisement("ads"),
            bgp_peer("router", ROUTER4, my_asn=ASN, peer_asn=ASN, holdTime="9s", **md5),
            *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
        )  # fmt: skip
        announcer = fab.start_announcer("node1")
        try:
            announcer.wait_logged("reason=PasswordSecretMissing")
            assert not router.established()
            basic_auth = secret("bgp-md5", "s3cret")
            fab.observe(basic_auth.model_copy(update={"secret_type": "Opaque"}))
            announcer.wait_logged("reason=PasswordSecretWrongType")
            assert not router.established()
            fab.observe(basic_auth.model_copy(update={"data": {}}))
            announcer.wait_logged("reason=PasswordSecretWithoutPassword")
            assert not router.established()
            # the same peer asking for no password: the session comes up (this router would have taken one)
            fab.observe(bgp_peer("router", ROUTER4, my_asn=ASN, peer_asn=ASN, holdTime="9s", version="2"))
            wait_for(router.established, timeout=20, message="a session once no password is asked for")
        except BaseException:
            print(fab.diagnostics(), router.diagnostics()[-3000:], sep="\n")
            raise
