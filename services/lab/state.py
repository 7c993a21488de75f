"""The lab's record of what it made — written as each thing is made, so ``lab down`` finds it after a crash."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class LabState:
    prefix: str
    nats_url: str = ""
    objects: str = ""
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    #: role → pid (processes in this host's namespace and in the lab's namespaces)
    pids: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("prefix"), str):
            return None
        return cls(
            prefix=data["prefix"],
            nats_url=str(data.get("nats_url") or ""),
            objects=str(data.get("objects") or ""),
            namespaces=[str(n) for n in data.get("namespaces") or ()],
            links=[str(n) for n in data.get("links") or ()],
            pids={str(k): int(v) for k, v in (data.get("pids") or {}).items()},
        )
