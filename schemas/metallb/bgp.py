"""``BGPPeer`` (metallb.io/v1beta2, and the older v1beta1 read into the same model): a BGP session to open.

Checks follow MetalLB's config parser and CRD rules: one of ``peerASN``/``dynamicASN``; one of
``peerAddress``/``interface``; ``password`` or ``passwordSecret``, not both; hold time 0 or at least 3s;
keepalive not above hold; connect time whole seconds in 1..65535; no ``ebgpMultiHop`` on an iBGP session.

An inline ``spec.password`` never travels with its BGPPeer on the bus: the watcher takes it out, publishes it
apart for the announcers alone, and leaves in the object only :class:`InlinePassword` (``metalbusInlinePassword``,
beside ``spec``), so the rules about passwords still hold without the value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator, model_validator

from schemas.metallb.common import (
    API_GROUP,
    GoDuration,
    LabelSelector,
    MetallbObject,
    WireModel,
    any_selector_matches,
    check_single_line,
    check_unique_selectors,
    has_line_breaks,
    invalid,
)

_UINT32_MAX = (1 << 32) - 1
BGP_V1BETA1 = f"{API_GROUP}/v1beta1"
BGP_V1BETA2 = f"{API_GROUP}/v1beta2"
DEFAULT_BGP_PORT = 179


class DynamicASNMode(StrEnum):
    """``dynamicASN``: accept whatever AS the peer has, as long as it is the same (internal) or not."""

    INTERNAL = "internal"
    EXTERNAL = "external"


class InlinePassword(StrEnum):
    """What the watcher leaves in a BGPPeer in place of its inline ``spec.password``: that there was one,
    and whether it could be used (the value itself goes to the announcers apart from the object)."""

    SET = "set"
    LINE_BREAKS = "lineBreaks"
    NOT_TEXT = "notText"  # not a string, or not one UTF-8 can carry


#: The key, beside ``spec``, that holds the :class:`InlinePassword` of a BGPPeer the watcher published.
INLINE_PASSWORD_KEY = "metalbusInlinePassword"


def inline_password_of(value: object) -> InlinePassword | None:
    """What stands for the raw ``spec.password`` ``value`` once the value is taken out; None for no password."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return InlinePassword.NOT_TEXT
    try:
        value.encode()
    except UnicodeEncodeError:
        return InlinePassword.NOT_TEXT
    return InlinePassword.LINE_BREAKS if has_line_breaks(value) else InlinePassword.SET


#: The Secret type a ``passwordSecret`` must have (MetalLB's rule), and the key that holds the password (the
#: one key of a referenced Secret the watcher publishes).
BASIC_AUTH_SECRET_TYPE = "kubernetes.io/basic-auth"
SECRET_PASSWORD_KEY = "password"


class PasswordSecretProblem(StrEnum):
    """Why the Secret a BGPPeer's ``passwordSecret`` names gives no password. Such a peer never opens a
    session without one: it is refused with this reason (MetalLB refuses the configuration)."""

    MISSING = "missing"
    WRONG_TYPE = "wrongType"
    NO_PASSWORD = "noPassword"


def password_secret_problem(secret_type: str | None, *, has_password: bool) -> PasswordSecretProblem | None:
    """MetalLB's checks of a password Secret: it exists (``secret_type`` None: it does not), is of type
    ``kubernetes.io/basic-auth`` and has a ``password`` key. None when the Secret is usable."""
    if secret_type is None:
        return PasswordSecretProblem.MISSING
    if secret_type != BASIC_AUTH_SECRET_TYPE:
        return PasswordSecretProblem.WRONG_TYPE
    if not has_password:
        return PasswordSecretProblem.NO_PASSWORD
    return None


def password_secret_message(problem: PasswordSecretProblem, namespace: str, name: str) -> str:
    """What is wrong, in MetalLB's words where it has some."""
    if problem is PasswordSecretProblem.MISSING:
        return f"secret ref not found: Secret {namespace}/{name} does not exist"
    if problem is PasswordSecretProblem.WRONG_TYPE:
        return f'secret type mismatch on "{namespace}/{name}", type "{BASIC_AUTH_SECRET_TYPE}" is expected'
    return f'password not specified in the secret "{namespace}/{name}"'


#: The key, beside ``spec``, where the watcher says what the Secret a BGPPeer's ``passwordSecret`` names
#: gives (:class:`PasswordSecretState`), so that the configuration check judges the peer as MetalLB does
#: without the Secret ever leaving the announcers' stream.
PASSWORD_SECRET_KEY = "metalbusPasswordSecret"


class PasswordSecretState(WireModel):
    """``problem``: what is wrong with the Secret (None: it gives a password); ``version``: the Secret's
    resourceVersion, or when it went, so that each change of state is a change of the published peer."""

    problem: PasswordSecretProblem | None = None
    version: str = ""


class SecretReference(WireModel):
    """A ``kubernetes.io/basic-auth`` Secret holding the TCP MD5 password under ``password``."""

    name: str = ""
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class SessionTimers:
    """Hold and keepalive time in seconds after MetalLB's derivation (the missing one from the other)."""

    hold_time: float
    keepalive_time: float


def _check_ip(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return value
    if "%" in value:
        raise invalid(f"invalid {what} {value!r}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise invalid(f"invalid {what} {value!r}") from None
    return value


class BGPPeerSpec(WireModel):
    """The v1beta2 spec (the storage version)."""

    my_asn: int = Field(default=0, alias="myASN", ge=0, le=_UINT32_MAX)
    peer_asn: int = Field(default=0, alias="peerASN", ge=0, le=_UINT32_MAX)
    dynamic_asn: DynamicASNMode | None = Field(default=None, alias="dynamicASN")
    peer_address: str = ""
    interface: str = ""
    source_address: str = ""
    peer_port: int = Field(default=DEFAULT_BGP_PORT, ge=1, le=16384)
    hold_time: GoDuration | None = None
    keepalive_time: GoDuration | None = None
    connect_time: GoDuration | None = None
    router_id: str = Field(default="", alias="routerID")
    node_selectors: tuple[LabelSelector, ...] = ()
    password: str = ""
    password_secret: SecretReference | None = None
    bfd_profile: str = ""
    enable_graceful_restart: bool = False
    ebgp_multi_hop: bool = Field(default=False, alias="ebgpMultiHop")
    vrf: str = ""
    disable_mp: bool = Field(default=False, alias="disableMP")
    dual_stack_address_family: bool = False
    #: the AS this session presents instead of ``myASN`` (FRR's ``local-as ASN no-prepend replace-as``)
    local_asn: int | None = Field(default=None, alias="localASN", ge=1, le=_UINT32_MAX)

    @field_validator("peer_address")
    @classmethod
    def _peer_address(cls, value: str) -> str:
        _check_ip(value, "BGPPeer address")
        return value

    @field_validator("source_address")
    @classmethod
    def _source_address(cls, value: str) -> str:
        _check_ip(value, "source IP")
        return value

    @field_validator("router_id")
    @classmethod
    def _router_id(cls, value: str) -> str:
        if value:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise invalid(f"invalid router ID {value!r}: must be an IPv4 address") from None
        return value

    @field_validator("interface")
    @classmethod
    def _interface(cls, value: str) -> str:
        return check_single_line(value, "interface")

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return check_single_line(value, "password")

    @field_validator("vrf")
    @classmethod
    def _vrf(cls, value: str) -> str:
        return check_single_line(value, "VRF name")

    @field_validator("node_selectors")
    @classmethod
    def _unique_node_selectors(cls, value: tuple[LabelSelector, ...]) -> tuple[LabelSelector, ...]:
        return check_unique_selectors(value, "nodeSelectors")

    @field_validator("connect_time")
    @classmethod
    def _connect_time(cls, value: float | None) -> float | None:
        if value is None:
            return None
        if not 1 <= value <= 65535:
            raise invalid("connect time should be between 1 seconds to 65535")
        if round(value * 1000) % 1000 != 0:
            raise invalid("connect time should contain a whole number of seconds")
        return value

    @field_validator("hold_time", "keepalive_time")
    @classmethod
    def _not_negative(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise invalid("must not be negative")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BGPPeerSpec:
        if self.my_asn == 0:
            raise invalid("missing local ASN", field="myASN")
        if self.peer_asn == 0 and self.dynamic_asn is None:
            raise invalid("one of peerASN and dynamicASN is required", field="peerASN")
        if self.peer_asn != 0 and self.dynamic_asn is not None:
            raise invalid("peerASN and dynamicASN are mutually exclusive", field="dynamicASN")
        if self.ebgp_multi_hop and self.is_ibgp:
            raise invalid("invalid ebgpMultiHop set for an iBGP peer", field="ebgpMultiHop")
        if not self.peer_address and not self.interface:
            raise invalid("one of peerAddress and interface is required", field="peerAddress")
        if self.peer_address and self.interface:
            raise invalid("peerAddress and interface are mutually exclusive", field="interface")
        if self.password and self.password_secret is not None and self.password_secret.name:
            raise invalid("password and passwordSecret are mutually exclusive", field="passwordSecret")
        self._check_timers()
        return self

    def _check_timers(self) -> None:
        timers = self.timers()
        if timers is None:
            return
        shown_hold = self.hold_time if self.hold_time is not None else timers.hold_time
        whole_seconds = int(timers.hold_time)
        if whole_seconds != 0 and whole_seconds < 3:
            raise invalid(
                f"invalid hold time {shown_hold:g}s: must be 0 or >= 3s",
                field="holdTime" if self.hold_time is not None else "keepaliveTime",
            )
        if timers.keepalive_time > timers.hold_time:
            raise invalid(
                f"keepalive time {timers.keepalive_time:g}s must not be above hold time {timers.hold_time:g}s",
                field="keepaliveTime",
            )

    @property
    def is_ibgp(self) -> bool:
        """Internal BGP: same AS on both ends (known statically, or ``dynamicASN: internal``)."""
        if self.dynamic_asn is not None:
            return self.dynamic_asn is DynamicASNMode.INTERNAL
        return self.peer_asn == self.my_asn

    def timers(self) -> SessionTimers | None:
        """Hold and keepalive as MetalLB derives them: keepalive = hold/3, or hold = 3 * keepalive;
        ``None`` when neither is set (the speaker's defaults apply)."""
        if self.hold_time is None and self.keepalive_time is None:
            return None
        if self.hold_time is not None and self.keepalive_time is not None:
            return SessionTimers(self.hold_time, self.keepalive_time)
        if self.hold_time is not None:
            return SessionTimers(self.hold_time, self.hold_time / 3)
        assert self.keepalive_time is not None
        return SessionTimers(self.keepalive_time * 3, self.keepalive_time)

    def selects_node(self, node_labels: Mapping[str, str]) -> bool:
        """No node selectors: every node peers; otherwise any selector must match."""
        return any_selector_matches(self.node_selectors, node_labels)


class BGPPeerSpecV1Beta1(WireModel):
    """The v1beta1 spec: no dynamicASN, interface, passwordSecret, connectTime, vrf, graceful restart,
    disableMP or dualStackAddressFamily (those keys are ignored here, as MetalLB's v1beta1 schema has none).
    Converted to :class:`BGPPeerSpec` for use."""

    my_asn: int = Field(default=0, alias="myASN", ge=0, le=_UINT32_MAX)
    peer_asn: int = Field(default=0, alias="peerASN", ge=0, le=_UINT32_MAX)
    peer_address: str = ""
    source_address: str = ""
    peer_port: int = Field(default=DEFAULT_BGP_PORT, ge=0, le=16384)
    hold_time: GoDuration | None = None
    keepalive_time: GoDuration | None = None
    router_id: str = Field(default="", alias="routerID")
    node_selectors: tuple[LabelSelector, ...] = ()
    password: str = ""
    bfd_profile: str = ""
    ebgp_multi_hop: bool = Field(default=False, alias="ebgpMultiHop")

    def to_v1beta2(self) -> dict[str, Any]:
        """The same session as v1beta2 wire data (port 0 meant "default" in v1beta1)."""
        data = self.model_dump(by_alias=True, exclude_none=True)
        if self.peer_port == 0:
            data["peerPort"] = DEFAULT_BGP_PORT
        return data


class BGPPeer(MetallbObject):
    KIND: ClassVar[str] = "BGPPeer"
    API_VERSIONS: ClassVar[tuple[str, ...]] = (BGP_V1BETA2, BGP_V1BETA1)

    api_version: str = BGP_V1BETA2
    kind: str = "BGPPeer"
    spec: BGPPeerSpec
    inline_password: InlinePassword | None = Field(default=None, alias=INLINE_PASSWORD_KEY)
    password_secret_state: PasswordSecretState | None = Field(default=None, alias=PASSWORD_SECRET_KEY)

    @property
    def has_inline_password(self) -> bool:
        """Whether the peer has a usable inline password, here or (taken out by the watcher) apart."""
        return bool(self.spec.password) or self.inline_password is InlinePassword.SET

    @model_validator(mode="after")
    def _inline_password_rules(self) -> BGPPeer:
        """``spec.password``'s rules, for a peer whose password the watcher took out."""
        if self.inline_password is InlinePassword.LINE_BREAKS:
            raise invalid("password contains invalid characters (line breaks)", field="spec.password")
        if self.inline_password is InlinePassword.NOT_TEXT:
            raise invalid("password must be a string", field="spec.password")
        reference = self.spec.password_secret
        if self.has_inline_password and reference is not None and reference.name:
            raise invalid("password and passwordSecret are mutually exclusive", field="spec.passwordSecret")
        problem = self.password_secret_state.problem if self.password_secret_state is not None else None
        if problem is not None and reference is not None and reference.name:
            namespace = reference.namespace or self.namespace or ""
            raise invalid(password_secret_message(problem, namespace, reference.name), field="spec.passwordSecret")
        return self

    @model_validator(mode="before")
    @classmethod
    def _read_v1beta1(cls, data: object) -> object:
        if not isinstance(data, dict) or data.get("apiVersion", data.get("api_version")) != BGP_V1BETA1:
            return data
        spec = data.get("spec")
        if not isinstance(spec, dict):
            return data
        try:
            old = BGPPeerSpecV1Beta1.model_validate(spec)
        except ValidationError:
            return data  # the v1beta2 rules report the same fields, with their locations
        return {**data, "spec": old.to_v1beta2()}
