"""What a replay of tens of thousands of messages may leave unread, told from the bytes alone.

An L2 agent starting at 50 000 Services reads every placement of the cluster and keeps only its own node's
(Services, interfaces, trace): another node's placement, or an IP cleared, is nothing to it. Building the
event's model (or parsing its IP) for each of those cost more than the rest of the read, so
:func:`placed_elsewhere` tells them apart by the body's bytes, as this build's encoder writes them
(``schemas.events.codec.encode``: compact JSON, the envelope's fields then the event's, in the models' order).

It answers True only on positive evidence: an ``L2PlacementDecided`` of this build's version whose ``node`` is
another one, or an ``L2PlacementCleared`` of this build's version. Anything else — this node's placement,
another version, another type, another layout, a body that is not JSON — is False: the caller reads it with
the total reader (``schemas.events.codec.read_envelope``), which upcasts it or refuses it with its reason.
A body left unread this way is not checked further (a broken one naming another node is dropped unread).
"""

from __future__ import annotations

from pydantic_core import to_json

from schemas.events.decisions import L2PlacementCleared, L2PlacementDecided

_DECIDED_HEAD = b'{"schema_version":%d,' % L2PlacementDecided.version
_CLEARED_HEAD = b'{"schema_version":%d,' % L2PlacementCleared.version
_DECIDED_TYPE = b'"event":{"type":"L2PlacementDecided","ip":"'
_CLEARED_TYPE = b'"event":{"type":"L2PlacementCleared","ip":"'
#: The event's ``node`` key. A string value holding these bytes would have its quotes escaped (``\\"``), and no
#: other key of the envelope or the event is called ``node``: the first one found is the event's.
_NODE_KEY = b'"node":"'


class NodeMark:
    """A node's name as it follows ``"node":"`` in a body: the rest of its JSON string, as the encoder writes it."""

    __slots__ = ("encoded",)

    def __init__(self, node: str) -> None:
        self.encoded = to_json(node)[1:]


def placed_elsewhere(data: bytes, node: NodeMark) -> bool:
    """True: ``data`` is, by its bytes, an L2 placement of this build's version on a node other than ``node``,
    or one clearing its IP. False: read it in full."""
    if data.startswith(_DECIDED_HEAD) and _DECIDED_TYPE in data:
        at = data.find(_NODE_KEY)
        return at >= 0 and not data.startswith(node.encoded, at + len(_NODE_KEY))
    return data.startswith(_CLEARED_HEAD) and _CLEARED_TYPE in data
