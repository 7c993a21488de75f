"""What one BGPPeer's session on this node is made of (pure): a :class:`SessionSpec`, or why it is refused.

The agent builds one per applicable peer; two equal specs are the same session, so a peer whose spec changes
(addresses, timers, password, BFD) gets a new one.
"""

from __future__ import annotations

import ipaddress

from schemas.metallb import BGPPeer, PasswordSecretProblem
from schemas.metallb.advertisements import ipv6_pool_advertised_to
from schemas.metallb.rules import NodeFacts
from services.announcer.agents.bgp_inputs import PasswordUnavailable
from services.announcer.agents.bgp_plan import Configuration, next_hops, router_id_for
from services.announcer.bgp.bfd import BfdConfig
from services.announcer.bgp.peer_session import SessionSpec
from services.announcer.bgp.peering import Refusal, Refused, bfd_config_for, speaker_config_for

#: A password the peer cannot have refuses it, by what is wrong.
_PASSWORD_REFUSALS = {
    None: Refusal.PASSWORD_NOT_OBSERVED,
    PasswordSecretProblem.MISSING: Refusal.PASSWORD_SECRET_MISSING,
    PasswordSecretProblem.WRONG_TYPE: Refusal.PASSWORD_SECRET_WRONG_TYPE,
    PasswordSecretProblem.NO_PASSWORD: Refusal.PASSWORD_SECRET_WITHOUT_PASSWORD,
}


def session_spec_for(
    peer: BGPPeer, *, node: NodeFacts, password: str | PasswordUnavailable | None, configuration: Configuration
) -> SessionSpec | Refused:
    """The session of ``peer`` on ``node``; ``password`` as ``BgpWorld.password_for`` answers it."""
    if isinstance(password, PasswordUnavailable):
        return Refused(_PASSWORD_REFUSALS[password.problem], password.message)
    spec = peer.spec
    family = ipaddress.ip_address(spec.peer_address).version if spec.peer_address else 6
    v4, v6 = next_hops(node, session_family=family)
    if spec.vrf or spec.interface:  # not the node's addresses: the VRF's (bgp/session_link.py) or the link's own
        v4, v6 = None, None
    speaker = speaker_config_for(
        spec, router_id=router_id_for(node), password=password, next_hop_v4=v4, next_hop_v6=v6, bfd_available=True
    )
    if isinstance(speaker, Refused):
        return speaker
    bfd: BfdConfig | None = None
    if spec.bfd_profile:
        profile = configuration.bfd_profiles.get(spec.bfd_profile)
        if profile is None:  # the configuration check refuses this; be safe anyway
            return Refused(Refusal.BFD_UNAVAILABLE, f"BFD profile {spec.bfd_profile!r} does not exist")
        ipv6 = ipv6_pool_advertised_to(peer.name, configuration.pools.values(), configuration.advertisements)
        where = f"pool {ipv6[0]!r} by BGPAdvertisement {ipv6[1]!r}" if ipv6 is not None else None
        checked = bfd_config_for(profile.spec, peer=spec, ipv6_advertised=where)
        if isinstance(checked, Refused):
            return checked
        bfd = checked
    return SessionSpec(
        speaker=speaker, bfd=bfd, graceful_restart=spec.enable_graceful_restart, vrf=spec.vrf,
        interface=spec.interface,
    )  # fmt: skip
