"""Session fixtures for tests that run containers: one engine, one Python base, one metalbus image per
test session, each skipped with its reason where it cannot be had (not root, no ``dockerd``, no Debian
mirror for the stand-in base). A test directory uses them by importing them into its ``conftest.py``:

    from tests.containers.fixtures import container_engine, metalbus_image, python_base_image
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.containers.engine import Engine, EngineUnavailable, running_engine, skip_reason
from tests.containers.images import Unavailable, build_metalbus, python_base


@pytest.fixture(scope="session")
def container_engine() -> Iterator[Engine]:
    """A running engine (``container_engine.host`` is its ``DOCKER_HOST``); every container a test
    started through it is removed, and a private engine stopped and deleted, at the end of the session."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        with running_engine() as engine:
            yield engine
    except EngineUnavailable as error:
        pytest.skip(f"no working container engine: {error}")


@pytest.fixture(scope="session")
def python_base_image(container_engine: Engine) -> str:
    """The name of the Python base in the engine: the official one the Dockerfile names when present
    locally, else the stand-in built from Debian packages (cached between runs)."""
    started = time.monotonic()
    try:
        base = python_base(container_engine)
    except Unavailable as reason:
        pytest.skip(str(reason))
    print(f"python base {base} ready in {time.monotonic() - started:.1f} s")
    return base


@pytest.fixture(scope="session")
def metalbus_image(container_engine: Engine, python_base_image: str) -> str:
    """The name of the metalbus image, built from the Dockerfile as shipped on :func:`python_base_image`."""
    started = time.monotonic()
    image = build_metalbus(container_engine, base=python_base_image)
    print(f"image {image} built in {time.monotonic() - started:.1f} s")
    return image
