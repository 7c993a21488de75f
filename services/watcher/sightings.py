"""Objects as the observe side sees them, told to the status writer of the same leadership term.

The status writer owns what it writes: a Service's status or a pool's status changed by anyone else is
put back on that object's next change. It learns of the change from the reflectors that already watch
those objects (no second watch, no read per change): each object they read is told here, and the writer,
while it runs, compares it with what it wants shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from schemas.events import ObjectKind

RawObject = dict[str, Any]
Listener = Callable[[ObjectKind, RawObject], None]

#: The kinds whose status metalbus writes on the object itself.
TOLD_KINDS = frozenset({ObjectKind.SERVICE, ObjectKind.IP_ADDRESS_POOL})


class Sightings:
    """One listener at a time; telling is a plain call on the event loop, so it must stay cheap."""

    def __init__(self) -> None:
        self._listener: Listener | None = None

    def tell(self, kind: ObjectKind, obj: RawObject) -> None:
        if self._listener is not None:
            self._listener(kind, obj)

    @contextmanager
    def listening(self, listener: Listener) -> Iterator[None]:
        self._listener = listener
        try:
            yield
        finally:
            if self._listener is listener:
                self._listener = None
