"""``BFDProfile`` (metallb.io/v1beta1): BFD timers a ``BGPPeer`` can refer to by name.

Unset fields take FRR's defaults (the values MetalLB's FRR mode ends up with), so consumers always see
concrete numbers. Intervals are milliseconds.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.metallb.common import API_GROUP, MetallbObject, WireModel

DEFAULT_RECEIVE_INTERVAL_MS = 300
DEFAULT_TRANSMIT_INTERVAL_MS = 300
DEFAULT_DETECT_MULTIPLIER = 3
DEFAULT_ECHO_INTERVAL_MS = 50
DEFAULT_MINIMUM_TTL = 254


class BFDProfileSpec(WireModel):
    receive_interval: int = Field(default=DEFAULT_RECEIVE_INTERVAL_MS, ge=10, le=60000)
    """The slowest rate (ms) at which this system wants to receive control packets."""
    transmit_interval: int = Field(default=DEFAULT_TRANSMIT_INTERVAL_MS, ge=10, le=60000)
    """The minimum interval (ms, before jitter) at which this system sends control packets."""
    detect_multiplier: int = Field(default=DEFAULT_DETECT_MULTIPLIER, ge=2, le=255)
    """Missed remote intervals before the session is declared down."""
    echo_interval: int = Field(default=DEFAULT_ECHO_INTERVAL_MS, ge=10, le=60000)
    """The minimum interval (ms, before jitter) at which this system sends echo packets, and the slowest
    at which it asks the peer to send its own (the Required Min Echo RX Interval it advertises)."""
    echo_mode: bool = False
    """The echo function (RFC 5880 §6.4): packets the peer's forwarding plane loops back; single hop only."""
    passive_mode: bool = False
    """Wait for the peer's control packets before sending any."""
    minimum_ttl: int = Field(default=DEFAULT_MINIMUM_TTL, ge=1, le=254)
    """Multi-hop only: the lowest TTL accepted on incoming control packets."""

    @property
    def detection_time_ms(self) -> int:
        """How long without packets until the session is down, from our own side's settings."""
        return self.receive_interval * self.detect_multiplier


class BFDProfile(MetallbObject):
    KIND: ClassVar[str] = "BFDProfile"
    API_VERSIONS: ClassVar[tuple[str, ...]] = (f"{API_GROUP}/v1beta1",)

    api_version: str = "metallb.io/v1beta1"
    kind: str = "BFDProfile"
    spec: BFDProfileSpec = BFDProfileSpec()
