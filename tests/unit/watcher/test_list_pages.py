"""A page of a list is kept without what nothing reads."""

from __future__ import annotations

import json
from typing import Any, cast

from services.watcher.observe.stream import _json_body


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()
        self.released = False

    def release_conn(self) -> None:
        self.released = True


def test_a_page_drops_managed_fields_and_keeps_the_rest() -> None:
    service = {"metadata": {"name": "web", "uid": "u", "resourceVersion": "7", "labels": {"app": "web"},
                            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
               "spec": {"type": "LoadBalancer"}}
    response = _Response({"metadata": {"resourceVersion": "9"}, "items": [service, "not an object"]})
    body = _json_body(cast(Any, response))
    assert response.released
    assert body["items"][0] == {"metadata": {"name": "web", "uid": "u", "resourceVersion": "7",
                                             "labels": {"app": "web"}}, "spec": {"type": "LoadBalancer"}}
    assert body["items"][1] == "not an object"  # left for the caller to skip, as before
