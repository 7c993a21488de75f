"""One entry point from a raw Kubernetes object (``yaml.safe_load`` of MetalLB YAML) to a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.metallb.advertisements import BGPAdvertisement, L2Advertisement
from schemas.metallb.bfd import BFDProfile
from schemas.metallb.bgp import BGPPeer
from schemas.metallb.common import API_GROUP, InvalidConfigObject
from schemas.metallb.community import Community
from schemas.metallb.pools import IPAddressPool

ConfigObject = IPAddressPool | L2Advertisement | BGPAdvertisement | BGPPeer | BFDProfile | Community
"""Any parsed ``metallb.io`` configuration object."""

MODELS: Mapping[str, type[ConfigObject]] = {
    model.KIND: model for model in (IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer, BFDProfile, Community)
}
"""Model class per ``kind``."""


def parse_config_object(raw: Mapping[str, Any]) -> ConfigObject:
    """Validate one ``metallb.io`` object, dispatching on ``apiVersion`` and ``kind``.

    Raises :class:`InvalidConfigObject` naming the object, the field path and the problem.
    """
    kind, namespace, name = _identity(raw)
    shown_kind = kind if isinstance(kind, str) and kind else "<unknown kind>"

    def refuse(field: str, reason: str) -> InvalidConfigObject:
        return InvalidConfigObject(kind=shown_kind, namespace=namespace, name=name, problems=((field, reason),))

    if not isinstance(raw, Mapping):
        raise refuse("", f"expected a mapping, got {type(raw).__name__}")
    api_version = raw.get("apiVersion")
    if not isinstance(api_version, str) or api_version.partition("/")[0] != API_GROUP:
        raise refuse("apiVersion", f"expected {API_GROUP}/<version>, got {api_version!r}")
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise refuse("kind", f"unknown {API_GROUP} kind {kind!r}, expected one of {sorted(MODELS)}")
    if api_version not in model.API_VERSIONS:
        raise refuse("apiVersion", f"unsupported apiVersion {api_version!r} for {kind}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as error:
        raise InvalidConfigObject(
            kind=shown_kind,
            namespace=namespace,
            name=name,
            problems=tuple(_problem(detail) for detail in error.errors(include_url=False)),
        ) from None


def _identity(raw: object) -> tuple[object, str | None, str | None]:
    if not isinstance(raw, Mapping):
        return None, None, None
    metadata = raw.get("metadata")
    namespace: str | None = None
    name: str | None = None
    if isinstance(metadata, Mapping):
        raw_namespace, raw_name = metadata.get("namespace"), metadata.get("name")
        namespace = raw_namespace if isinstance(raw_namespace, str) else None
        name = raw_name if isinstance(raw_name, str) else None
    return raw.get("kind"), namespace, name


def _problem(detail: ErrorDetails) -> tuple[str, str]:
    location: list[int | str] = list(detail["loc"])
    context = detail.get("ctx") or {}
    if detail["type"] == "metallb_invalid":
        reason = str(context.get("reason", detail["msg"]))
        extra_field = context.get("field")
        if isinstance(extra_field, str):
            location.append(extra_field)
    else:
        reason = detail["msg"]
        if detail["type"] not in ("missing",) and "input" in detail:
            reason = f"{reason} (got {detail['input']!r})"
    return format_location(location), reason


def format_location(location: list[int | str]) -> str:
    """``["spec", "addresses", 1]`` → ``spec.addresses[1]``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
