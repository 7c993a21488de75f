"""Reading a directory: YAML files only, status/ and hidden files left out, a half-edited file keeps its objects."""

from __future__ import annotations

from pathlib import Path

from services.watcher.files.documents import Document, Problem, Resource
from services.watcher.files.source import read_directory

SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {type: LoadBalancer}\n"


def names(directory: Path, last_good: dict[str, list[Document]]) -> list[str]:
    loaded = read_directory(directory, namespace="metallb-system", last_good=last_good)
    return [o["metadata"]["name"] for o in loaded.objects[Resource.SERVICES]]


def test_only_manifests_are_read(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(SERVICE)
    (tmp_path / "status").mkdir()
    (tmp_path / "status" / "demo_web.yaml").write_text(SERVICE.replace("web", "from-status"))
    (tmp_path / ".web.yaml.swp").write_text(SERVICE.replace("web", "hidden"))
    (tmp_path / "notes.txt").write_text(SERVICE.replace("web", "text"))
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "api.yml").write_text(SERVICE.replace("web", "api"))
    assert names(tmp_path, {}) == ["api", "web"]


def test_a_file_broken_mid_edit_keeps_its_last_readable_objects_until_removed(tmp_path: Path) -> None:
    last_good: dict[str, list[Document]] = {}
    path = tmp_path / "web.yaml"
    path.write_text(SERVICE)
    assert names(tmp_path, last_good) == ["web"]
    path.write_text(SERVICE + "spec: [unclosed\n")
    loaded = read_directory(tmp_path, namespace="metallb-system", last_good=last_good)
    assert [o["metadata"]["name"] for o in loaded.objects[Resource.SERVICES]] == ["web"]
    assert [s.problem for s in loaded.skipped] == [Problem.UNREADABLE_YAML]
    assert "keeping its last readable version" in loaded.skipped[0].detail
    path.unlink()
    assert names(tmp_path, last_good) == [] and last_good == {}
