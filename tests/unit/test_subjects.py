"""Subject tokens: reversible, and never containing what NATS treats specially."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import ObjectKind
from services.common.subjects import (
    decode_token,
    encode_token,
    ipam_placement_subject,
    k8s_subject,
    parse_k8s_subject,
)


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("web", "web"),
        ("192.168.10.5", "192%2E168%2E10%2E5"),
        ("fc00:f853::5", "fc00:f853::5"),
        ("my.service.name", "my%2Eservice%2Ename"),
        ("", "_"),
        ("a%b", "a%25b"),
        ("w*ld>", "w%2Ald%3E"),
    ],
)
def test_tokens_are_subject_safe_and_readable(value: str, token: str) -> None:
    assert encode_token(value) == token
    assert decode_token(token) == value


@given(st.text(min_size=1))
def test_any_text_round_trips_through_one_safe_token(value: str) -> None:
    token = encode_token(value)
    assert not any(char in token for char in ".*> \t\r\n")
    assert token
    assert decode_token(token) == value


def test_k8s_subject_names_kind_namespace_and_object() -> None:
    subject = k8s_subject(ObjectKind.NODE, "", "node-1.example.com")
    assert subject == "k8s.node._.node-1%2Eexample%2Ecom"
    assert parse_k8s_subject(subject) == (ObjectKind.NODE, "", "node-1.example.com")


def test_placement_subject_holds_one_ip_token() -> None:
    assert ipam_placement_subject("10.0.0.1").count(".") == 2
