"""The ConfigurationState's desired status: configuration validity and the kube-proxy strictARP check.

Pure: events in, desired conditions out. MetalLB's ConfigurationState reports ``status.result``
(Valid / Invalid / Unknown), ``errorSummary`` and one condition per reporter; metalbus reports the
configuration (``ConfigurationValid``) and kube-proxy's strictARP (``KubeProxyStrictARP``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.events import ConfigProblem, ConfigurationEvaluated, KubeProxyObserved

CONFIG_STATE_NAME = "metalbus"
CONDITION_CONFIGURATION = "ConfigurationValid"
CONDITION_STRICT_ARP = "KubeProxyStrictARP"

STRICT_ARP_FIX = (
    'kubectl get configmap kube-proxy -n kube-system -o yaml | sed -e "s/strictARP: false/strictARP: true/" '
    "| kubectl apply -f - -n kube-system"
)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


class ConfigResult(StrEnum):
    VALID = "Valid"
    INVALID = "Invalid"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class ConfigStateTarget:
    """``result`` None: leave result and summary as they are (only conditions to set)."""

    name: str
    result: ConfigResult | None
    error_summary: str
    conditions: tuple[Condition, ...]


def strict_arp_missing(kube_proxy: KubeProxyObserved) -> bool:
    """kube-proxy in IPVS mode answers ARP for every Service IP on every node unless ``strictARP``."""
    return kube_proxy.mode.lower() == "ipvs" and not kube_proxy.strict_arp


def strict_arp_message() -> str:
    return ("kube-proxy runs in IPVS mode without strictARP: true, so every node answers ARP for "
            f"LoadBalancer IPs and layer2 announcements break. Fix: {STRICT_ARP_FIX}")


def config_state_target(config: ConfigurationEvaluated | None, kube_proxy: KubeProxyObserved | None,
                        *, name: str = CONFIG_STATE_NAME) -> ConfigStateTarget:
    conditions: list[Condition] = []
    result: ConfigResult | None = None
    summary: list[str] = []
    if config is not None:
        messages = [_problem_text(problem) for problem in config.problems]
        messages += [config.unlisted_problems] if config.unlisted_problems else []
        if config.valid:
            result = ConfigResult.VALID
            conditions.append(Condition(CONDITION_CONFIGURATION, ConditionStatus.TRUE, "Valid",
                                        "the metallb.io configuration is valid"))
        else:
            result = ConfigResult.INVALID
            summary += messages
            conditions.append(Condition(CONDITION_CONFIGURATION, ConditionStatus.FALSE, "ConfigurationError",
                                        "\n".join(messages) or "the metallb.io configuration is invalid"))
    if kube_proxy is not None:
        if strict_arp_missing(kube_proxy):
            conditions.append(Condition(CONDITION_STRICT_ARP, ConditionStatus.FALSE, "StrictARPDisabled",
                                        strict_arp_message()))
        else:
            conditions.append(Condition(CONDITION_STRICT_ARP, ConditionStatus.TRUE, "StrictARPNotNeeded"
                                        if kube_proxy.mode.lower() != "ipvs" else "StrictARPEnabled",
                                        f"kube-proxy mode {kube_proxy.mode or 'default'!r}: layer2 is safe"))
    return ConfigStateTarget(name, result, "\n".join(summary), tuple(conditions))


def _problem_text(problem: ConfigProblem) -> str:
    where = f"{problem.kind} {problem.namespace}/{problem.name}" if problem.namespace else \
        f"{problem.kind} {problem.name}"
    if problem.field:
        where = f"{where.strip()} {problem.field}"
    return f"{where.strip()}: {problem.message}"
