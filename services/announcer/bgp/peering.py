"""From a MetalLB ``BGPPeer`` spec to a :class:`SpeakerConfig`, or a refusal naming what this speaker
cannot do (never a field silently ignored). Pure: the node's identity and the resolved password come in."""

from __future__ import annotations

import enum
import ipaddress
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.metallb.bfd import BFDProfileSpec
from schemas.metallb.bgp import BGPPeerSpec, DynamicASNMode
from services.announcer.bgp.bfd import BfdConfig
from services.announcer.bgp.capabilities import IPV4_UNICAST, IPV6_UNICAST
from services.announcer.bgp.session import DynamicAsn, SessionConfig
from services.announcer.bgp.speaker import SpeakerConfig
from services.announcer.bgp.unnumbered import UNSPECIFIED

DEFAULT_HOLD_TIME = 90  # MetalLB's default
DEFAULT_CONNECT_TIME = 120.0  # RFC 4271 ConnectRetryTime


class Refusal(enum.StrEnum):
    BFD_UNAVAILABLE = "BfdUnavailable"
    BFD_ECHO_IPV6 = "BfdEchoIPv6"  # the echo function loops IPv4 only (as FRR's, MetalLB refuses it with IPv6)
    BFD_ECHO_MULTIHOP = "BfdEchoMultihop"  # RFC 5883 §3: no echo function over several hops
    PASSWORD_TOO_LONG = "PasswordTooLong"  # TCP MD5 keys hold at most 80 octets
    LOCAL_ASN_NOT_EXTERNAL = "LocalAsnNotExternal"  # local-as is for external sessions only (as FRR has it)
    DUPLICATE_PEER_ADDRESS = "DuplicatePeerAddress"  # two peers on one node: a connection could not tell them apart
    # a password is asked for but cannot be had: never a session without it (MetalLB refuses the configuration)
    PASSWORD_SECRET_MISSING = "PasswordSecretMissing"
    PASSWORD_SECRET_WRONG_TYPE = "PasswordSecretWrongType"  # not kubernetes.io/basic-auth
    PASSWORD_SECRET_WITHOUT_PASSWORD = "PasswordSecretWithoutPassword"  # no 'password' key
    PASSWORD_NOT_OBSERVED = "PasswordNotObserved"  # an inline password whose value has not arrived


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    message: str


def speaker_config_for(
    spec: BGPPeerSpec,
    *,
    router_id: ipaddress.IPv4Address,
    password: str | None = None,
    next_hop_v4: ipaddress.IPv4Address | None = None,
    next_hop_v6: ipaddress.IPv6Address | None = None,
    bfd_available: bool = False,
) -> SpeakerConfig | Refused:
    """The session this node opens for ``spec``.

    ``router_id`` is the node's default (``spec.routerID`` wins); ``password`` is the one read from
    ``passwordSecret`` (``spec.password`` wins); next hops default to the session's own addresses.
    """
    if spec.bfd_profile and not bfd_available:
        return Refused(Refusal.BFD_UNAVAILABLE, f"BFD profile {spec.bfd_profile!r}: BFD is not available")
    secret = spec.password or password or None
    if secret is not None and len(secret.encode()) > 80:
        return Refused(Refusal.PASSWORD_TOO_LONG, "TCP MD5 passwords hold at most 80 octets")
    local_asn = _local_asn_refusal(spec)
    if isinstance(local_asn, Refused):
        return local_asn
    # an interface peer's address is found on the link (unnumbered.py) before the session dials
    peer = ipaddress.ip_address(spec.peer_address) if spec.peer_address else UNSPECIFIED
    timers = spec.timers()
    hold = int(timers.hold_time) if timers is not None else DEFAULT_HOLD_TIME
    keepalive = timers.keepalive_time if timers is not None and hold else None
    families = frozenset({IPV4_UNICAST, IPV6_UNICAST})
    if spec.disable_mp and not spec.dual_stack_address_family:
        families = frozenset({IPV4_UNICAST if peer.version == 4 else IPV6_UNICAST})
    dynamic = {DynamicASNMode.INTERNAL: DynamicAsn.INTERNAL, DynamicASNMode.EXTERNAL: DynamicAsn.EXTERNAL}
    session = SessionConfig(
        local_as=local_asn,
        peer_as=spec.peer_asn or None,
        dynamic_asn=dynamic[spec.dynamic_asn] if spec.dynamic_asn is not None else None,
        router_id=ipaddress.IPv4Address(spec.router_id) if spec.router_id else router_id,
        hold_time=hold,
        keepalive_time=keepalive,
        families=families,
        graceful_restart=spec.enable_graceful_restart,
        extended_next_hop=bool(spec.interface),  # IPv4 prefixes over the IPv6 link-local session (RFC 8950)
        next_hop_v4=next_hop_v4,
        next_hop_v6=next_hop_v6,
    )
    return SpeakerConfig(
        session=session,
        peer_address=peer,
        peer_port=spec.peer_port,
        source_address=ipaddress.ip_address(spec.source_address) if spec.source_address else None,
        password=secret,
        connect_time=spec.connect_time or DEFAULT_CONNECT_TIME,
        # eBGP peers are one hop away unless told otherwise (RFC 4271 §5.1.3); iBGP keeps the system TTL
        ttl=None if spec.is_ibgp else (255 if spec.ebgp_multi_hop else 1),
        device=spec.interface or spec.vrf or None,  # an interface in a VRF routes in that VRF by itself
    )


def _local_asn_refusal(spec: BGPPeerSpec) -> int | Refused:
    """The AS the session presents: ``localASN`` (FRR's ``local-as ASN no-prepend replace-as``: the OPEN and
    the AS_PATH carry it alone) or ``myASN``; refused where FRR refuses ``local-as``."""
    if spec.local_asn is None:
        return spec.my_asn
    if spec.local_asn == spec.my_asn:
        return Refused(Refusal.LOCAL_ASN_NOT_EXTERNAL, f"localASN {spec.local_asn} is myASN: it would change nothing")
    if spec.is_ibgp:
        return Refused(Refusal.LOCAL_ASN_NOT_EXTERNAL, "localASN applies to external (eBGP) peers only")
    if spec.peer_asn == spec.local_asn:
        return Refused(
            Refusal.LOCAL_ASN_NOT_EXTERNAL,
            f"localASN {spec.local_asn} is the peer's own AS: the peer would see an internal session",
        )
    return spec.local_asn


def duplicate_peer_addresses(peers: Mapping[str, BGPPeerSpec]) -> dict[str, Refused]:
    """The peers (by name) that share their address (or interface) and VRF with another peer of this node:
    a connection from that address could belong to either, so each of them is refused, naming the others."""
    by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, spec in sorted(peers.items()):
        where = f"peer address {ipaddress.ip_address(spec.peer_address)}" if spec.peer_address else (
            f"interface {spec.interface}")  # fmt: skip
        by_key[(where, spec.vrf)].append(name)
    refused = {}
    for (where, vrf), names in by_key.items():
        if len(names) < 2:
            continue
        in_vrf = f" in VRF {vrf!r}" if vrf else ""
        for name in names:
            others = ", ".join(other for other in names if other != name)
            message = f"BGPPeer {others} on this node has the same {where}{in_vrf}"
            refused[name] = Refused(Refusal.DUPLICATE_PEER_ADDRESS, message)
    return refused


def bfd_config_for(
    profile: BFDProfileSpec, *, peer: BGPPeerSpec, ipv6_advertised: str | None = None
) -> BfdConfig | Refused:
    """The BFD session a ``BFDProfile`` asks for beside ``peer``'s BGP session: multihop (RFC 5883, the
    profile's ``minimumTtl``) for an ``ebgpMultiHop`` peer, else single hop (RFC 5881); with ``echoMode``, the
    echo function every ``echoInterval``. ``ipv6_advertised`` names IPv6 prefixes the peer is sent, if any."""
    if profile.echo_mode:
        if peer.ebgp_multi_hop:
            return Refused(Refusal.BFD_ECHO_MULTIHOP, "BFD echo mode on an ebgpMultiHop peer: the echo function "
                           "runs over a single hop only (RFC 5883 section 3)")  # fmt: skip
        if not peer.peer_address or ipaddress.ip_address(peer.peer_address).version == 6:
            return Refused(Refusal.BFD_ECHO_IPV6, "BFD echo mode on an IPv6 session: echoes are looped over IPv4 only")
        if ipv6_advertised is not None:
            return Refused(Refusal.BFD_ECHO_IPV6, f"BFD echo mode on a peer sent IPv6 prefixes ({ipv6_advertised}): "
                           "echoes are looped over IPv4 only, as MetalLB refuses it")  # fmt: skip
    return BfdConfig(
        desired_min_tx=profile.transmit_interval / 1000,
        required_min_rx=profile.receive_interval / 1000,
        detect_mult=profile.detect_multiplier,
        passive=profile.passive_mode,
        echo_interval=profile.echo_interval / 1000 if profile.echo_mode else None,
        multihop=peer.ebgp_multi_hop,
        minimum_ttl=profile.minimum_ttl,
    )
