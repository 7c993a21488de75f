"""Pieces shared by every ``metallb.io`` model: metadata, label selectors, Go durations, errors.

The models mirror MetalLB's CRDs field for field. On the wire the names are MetalLB's camelCase ones;
in Python they are snake_case attributes (``aggregation_length_v6`` ⇄ ``aggregationLengthV6``).
Kubernetes objects are foreign payloads: unknown fields are ignored, never refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

API_GROUP = "metallb.io"

# The error type every validator in this package raises, so that the messages reach the user verbatim.
_ERROR_TYPE = "metallb_invalid"


def invalid(reason: str, *, field: str | None = None) -> PydanticCustomError:
    """An error for a pydantic validator: ``reason`` is shown as is, ``field`` (a wire name under the
    validated object, e.g. ``peerASN``) is appended to the location when a model-level check fails."""
    context: dict[str, Any] = {"reason": reason}
    if field is not None:
        context["field"] = field
    return PydanticCustomError(_ERROR_TYPE, "{reason}", context)


class InvalidConfigObject(ValueError):
    """A ``metallb.io`` object that cannot be used, with where and why.

    ``str()`` reads ``IPAddressPool metallb-system/lan: spec.addresses[1]: "10.0.0.5/24" has host bits set``.
    When several fields are wrong, the first is in ``field``/``reason`` and all are in ``problems``.
    """

    def __init__(
        self,
        *,
        kind: str,
        namespace: str | None,
        name: str | None,
        problems: tuple[tuple[str, str], ...],
    ) -> None:
        if not problems:
            raise ValueError("InvalidConfigObject needs at least one problem")
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.problems = problems
        self.field, self.reason = problems[0]
        super().__init__(self._render())

    @property
    def object_ref(self) -> str:
        """``kind namespace/name`` (or ``kind name`` without a namespace)."""
        return f"{self.kind} {object_path(self.namespace, self.name)}"

    def _render(self) -> str:
        parts = [f"{field}: {reason}" if field else reason for field, reason in self.problems]
        return f"{self.object_ref}: " + "; ".join(parts)

    def __str__(self) -> str:
        return self._render()


def object_path(namespace: str | None, name: str | None) -> str:
    shown_name = name if name else "<unnamed>"
    return f"{namespace}/{shown_name}" if namespace else shown_name


class WireModel(BaseModel):
    """Base of every part of a ``metallb.io`` object: frozen, camelCase aliases, unknown fields ignored."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _null_means_unset(cls, data: object) -> object:
        # Kubernetes omits empty fields; a YAML key left empty (null) means the same as leaving it out.
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value is not None}
        return data


class ObjectMeta(WireModel):
    """The part of Kubernetes ``metadata`` the configuration needs."""

    name: str = Field(min_length=1)
    namespace: str | None = None
    labels: Mapping[str, str] = Field(default_factory=dict)
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None


class SelectorOperator(StrEnum):
    """``matchExpressions`` operators of a Kubernetes ``LabelSelector``."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(WireModel):
    key: str
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    @field_validator("key")
    @classmethod
    def _key_not_empty(cls, key: str) -> str:
        if not key:
            raise invalid("label selector key must not be empty")
        return key

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs_values and not self.values:
            raise invalid(f"operator {self.operator.value} needs at least one value", field="values")
        if not needs_values and self.values:
            raise invalid(f"operator {self.operator.value} takes no values", field="values")
        if len(set(self.values)) != len(self.values):
            raise invalid("duplicate values", field="values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case SelectorOperator.IN:
                return present and labels[self.key] in self.values
            case SelectorOperator.NOT_IN:
                return not present or labels[self.key] not in self.values
            case SelectorOperator.EXISTS:
                return present
            case SelectorOperator.DOES_NOT_EXIST:
                return not present


class LabelSelector(WireModel):
    """A Kubernetes ``LabelSelector``. All terms must hold; an empty selector matches everything."""

    match_labels: Mapping[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with ``labels`` is selected (Kubernetes semantics, pure)."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)

    def canonical(self) -> str:
        """A stable text form, equal for selectors that select the same way (used to spot duplicates)."""
        terms = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        terms += sorted(f"{r.key} {r.operator.value} ({','.join(sorted(r.values))})" for r in self.match_expressions)
        return ",".join(terms)


def any_selector_matches(selectors: tuple[LabelSelector, ...], labels: Mapping[str, str]) -> bool:
    """MetalLB's rule for a list of selectors: none selects everything, otherwise any one must match."""
    return not selectors or any(selector.matches(labels) for selector in selectors)


def check_unique_selectors(selectors: tuple[LabelSelector, ...], what: str) -> tuple[LabelSelector, ...]:
    seen: set[str] = set()
    for selector in selectors:
        text = selector.canonical()
        if text in seen:
            raise invalid(f"duplicate definition of {what} {{{text}}}")
        seen.add(text)
    return selectors


def check_unique_strings(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise invalid(f"duplicate definition of {what} {value!r}")
        seen.add(value)
    return values


def has_line_breaks(value: str) -> bool:
    return "\n" in value or "\r" in value


def check_single_line(value: str, what: str) -> str:
    if has_line_breaks(value):
        raise invalid(f"{what} contains invalid characters (line breaks)")
    return value


# --- Go durations ---------------------------------------------------------------------------------

_UNIT_SECONDS: Mapping[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_TERM = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Parse a Go ``time.Duration`` string (``"90s"``, ``"1m30s"``, ``"1.5h"``, ``"0"``) to seconds."""
    body = text.strip()
    sign = 1.0
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'invalid duration "{text}": expected a Go duration such as "90s" or "1m30s"')
    position = 0
    total = 0.0
    while position < len(body):
        term = _DURATION_TERM.match(body, position)
        if term is None:
            missing_unit = re.fullmatch(r"\d+\.?\d*|\.\d+", body[position:]) is not None
            detail = "missing unit (one of ns, us, ms, s, m, h)" if missing_unit else "unknown unit or syntax"
            raise ValueError(f'invalid duration "{text}": {detail}; expected e.g. "90s" or "1m30s"')
        total += float(term.group(1)) * _UNIT_SECONDS[term.group(2)]
        position = term.end()
    return sign * total


def format_go_duration(seconds: float) -> str:
    """Format seconds the way Go prints a ``time.Duration`` (``90.0`` → ``"1m30s"``)."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    remaining = abs(seconds)
    if remaining < 1:
        millis = remaining * 1000
        return f"{sign}{millis:g}ms"
    hours, remaining = divmod(remaining, 3600)
    minutes, remaining = divmod(remaining, 60)
    text = ""
    if hours:
        text += f"{int(hours)}h"
    if hours or minutes:
        text += f"{int(minutes)}m"
    text += f"{round(remaining, 9):g}s"
    return sign + text


def _duration_input(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise invalid(f'duration must be a string such as "90s" or "1m30s", got {value!r}')
    try:
        seconds = parse_go_duration(value)
    except ValueError as error:
        raise invalid(str(error)) from None
    if math.isinf(seconds) or math.isnan(seconds):
        raise invalid(f'invalid duration "{value}"')
    return seconds


GoDuration = Annotated[
    float,
    BeforeValidator(_duration_input),
    PlainSerializer(format_go_duration, return_type=str),
]
"""A ``metav1.Duration``: a Go duration string on the wire, seconds (float) in Python."""


# --- the object envelope ----------------------------------------------------------------------------


class MetallbObject(WireModel):
    """Envelope shared by all ``metallb.io`` kinds: ``apiVersion``, ``kind``, ``metadata``."""

    KIND: ClassVar[str] = ""
    API_VERSIONS: ClassVar[tuple[str, ...]] = ()

    api_version: str
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def labels(self) -> Mapping[str, str]:
        return self.metadata.labels

    @property
    def ref(self) -> str:
        """``kind namespace/name``, as error messages name the object."""
        return f"{self.KIND} {object_path(self.namespace, self.name)}"

    @field_validator("kind")
    @classmethod
    def _kind_is_ours(cls, kind: str) -> str:
        if cls.KIND and kind != cls.KIND:
            raise invalid(f"expected kind {cls.KIND}, got {kind!r}")
        return kind

    @field_validator("api_version")
    @classmethod
    def _version_is_ours(cls, api_version: str) -> str:
        if cls.API_VERSIONS and api_version not in cls.API_VERSIONS:
            raise invalid(f"unsupported apiVersion {api_version!r}, expected one of {list(cls.API_VERSIONS)}")
        return api_version
