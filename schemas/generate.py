"""Write the JSON Schema of every event into ``schemas/json/``.

Regenerate after changing an event model:  ``python -m schemas.generate``
(``python -m schemas.generate --check`` exits 1 when the files are stale).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schemas.events import EVENT_TYPES, Envelope

JSON_DIR = Path(__file__).parent / "json"


def rendered_schemas() -> dict[str, str]:
    """File name -> file content for every generated schema."""
    documents = {"Envelope.json": Envelope.model_json_schema()}
    for event_type in EVENT_TYPES:
        documents[f"{event_type.__name__}.json"] = event_type.model_json_schema()
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in documents.items()}


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of schema files that are missing, different, or no longer generated."""
    wanted = rendered_schemas()
    stale = [
        name
        for name, content in wanted.items()
        if not (directory / name).is_file() or (directory / name).read_text() != content
    ]
    stale += sorted(path.name for path in directory.glob("*.json") if path.name not in wanted)
    return stale


def write(directory: Path = JSON_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    wanted = rendered_schemas()
    for path in directory.glob("*.json"):
        if path.name not in wanted:
            path.unlink()
    for name, content in wanted.items():
        (directory / name).write_text(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: schemas/json/{name}", file=sys.stderr)
        return 1 if stale else 0
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
