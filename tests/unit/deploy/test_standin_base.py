"""How the container tests find what defines the stand-in Python base (tests/containers/images.py), checked
without building it: the mirror apt uses, the base the Dockerfile names, the digest that names the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.containers.images import StandinRecipe, Unavailable, debian_mirror, official_base

DEB822 = """Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_the_mirror_is_the_one_apt_uses_for_bookworm_main(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_a_one_line_sources_list_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://mirror.example/debian bookworm main non-free-firmware\n")
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_without_a_bookworm_mirror_the_stand_in_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://mirror.example/debian trixie main\n")
    with pytest.raises(Unavailable, match="no Debian bookworm mirror"):
        debian_mirror(tmp_path)


def test_the_official_base_is_the_dockerfiles_default() -> None:
    assert official_base() == "python:3.11.7-slim-bookworm"


def test_the_cached_stand_in_is_named_by_everything_that_defines_it(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.crt"
    bundle.write_text("one authority")
    recipe = StandinRecipe(mirror="http://mirror.example/debian", ca_bundle=bundle)
    same = StandinRecipe(mirror="http://mirror.example/debian", ca_bundle=bundle)
    other_mirror = StandinRecipe(mirror="http://elsewhere.example/debian", ca_bundle=bundle)
    assert recipe.digest == same.digest != other_mirror.digest
    before = recipe.image
    bundle.write_text("another authority")
    assert recipe.image != before
