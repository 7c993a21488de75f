"""Watches through ``kubernetes.watch.Watch().stream``: replay, selectors, resume, 410, bookmarks, timeouts."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client
from urllib3.exceptions import ProtocolError

from tests.kubeapi import KubeApi
from tests.kubeapi.recording import StreamEnded, WatchRecorder


def _cm(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "data": {"v": "0"}}


def _names(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["type"], e["raw_object"]["metadata"]["name"]) for e in events]


def test_watch_replays_changes_after_a_version_then_streams_live(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", _cm("before"))
    start = kube_api.resource_version
    core.create_namespaced_config_map("default", _cm("a"))
    core.patch_namespaced_config_map("a", "default", {"data": {"v": "1"}})
    core.create_namespaced_config_map("other", _cm("elsewhere"))
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version=start) as rec:
        assert _names(rec.take(2)) == [("ADDED", "a"), ("MODIFIED", "a")]
        core.delete_namespaced_config_map("a", "default")
        deleted = rec.next_event()
        assert deleted["type"] == "DELETED"
        assert deleted["object"].data == {"v": "1"}
        assert deleted["object"].metadata.resource_version == kube_api.resource_version


def test_watch_without_version_starts_with_current_state(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", _cm("a"))
    core.create_namespaced_config_map("default", _cm("b"))
    with WatchRecorder(core.list_namespaced_config_map, "default") as rec:
        assert _names(rec.take(2)) == [("ADDED", "a"), ("ADDED", "b")]
        core.create_namespaced_config_map("default", _cm("c"))
        assert _names([rec.next_event()]) == [("ADDED", "c")]


def test_label_selector_on_watch_turns_transitions_into_added_and_deleted(
    kube_api: KubeApi, core: client.CoreV1Api
) -> None:
    start = kube_api.resource_version
    with WatchRecorder(
        core.list_namespaced_config_map, "default", resource_version=start, label_selector="app in (web,api),tier!=db"
    ) as rec:
        core.create_namespaced_config_map("default", _cm("x", app="other"))
        core.create_namespaced_config_map("default", _cm("a", app="web"))
        core.patch_namespaced_config_map("x", "default", {"metadata": {"labels": {"app": "api"}}})
        core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"tier": "db"}}})
        core.patch_namespaced_config_map("x", "default", {"data": {"v": "2"}})
        assert _names(rec.take(4)) == [("ADDED", "a"), ("ADDED", "x"), ("DELETED", "a"), ("MODIFIED", "x")]


def test_selectors_on_list(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", _cm("a", app="web", tier="fe"))
    core.create_namespaced_config_map("default", _cm("b", app="web"))
    core.create_namespaced_config_map("default", _cm("c", app="db"))

    def names(**kwargs: str) -> list[str]:
        return [c.metadata.name for c in core.list_namespaced_config_map("default", **kwargs).items]

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app==web,tier") == ["a"]
    assert names(label_selector="app!=web") == ["c"]
    assert names(label_selector="!tier") == ["b", "c"]
    assert names(label_selector="app notin (web)") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b,metadata.namespace=default") == ["a", "c"]
    with pytest.raises(client.ApiException) as info:
        names(field_selector="spec.nothing=1")
    assert info.value.status == 400
    with pytest.raises(client.ApiException) as info:
        names(label_selector="app in web")
    assert info.value.status == 400


def test_field_selector_on_watch(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    start = kube_api.resource_version
    with WatchRecorder(
        core.list_namespaced_config_map, "default", resource_version=start, field_selector="metadata.name=b"
    ) as rec:
        core.create_namespaced_config_map("default", _cm("a"))
        core.create_namespaced_config_map("default", _cm("b"))
        assert _names([rec.next_event()]) == [("ADDED", "b")]


def _resuming_watcher(
    core: client.CoreV1Api, start: str, seen: list[dict], done: threading.Event, errors: list[BaseException]
) -> None:
    """A watcher loop as a controller writes it: on a broken stream, watch again from the last version."""
    rv = start
    while not done.is_set():
        try:
            from kubernetes import watch

            w = watch.Watch()
            for event in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=30):
                seen.append(event)
                rv = event["raw_object"]["metadata"]["resourceVersion"]
                if event["raw_object"]["metadata"]["name"] == "last":
                    done.set()
                    return
        except ProtocolError as exc:
            errors.append(exc)


@pytest.mark.parametrize("abrupt", [True, False])
def test_resume_after_dropped_watches_loses_and_duplicates_nothing(
    kube_api: KubeApi, core: client.CoreV1Api, abrupt: bool
) -> None:
    start = kube_api.resource_version
    seen: list[dict] = []
    errors: list[BaseException] = []
    done = threading.Event()
    watcher = threading.Thread(target=_resuming_watcher, args=(core, start, seen, done, errors))
    watcher.start()
    try:
        assert kube_api.wait_for_watches(1)
        for i in range(60):
            core.create_namespaced_config_map("default", _cm(f"cm-{i}"))
            if i % 15 == 7:
                kube_api.drop_watches(abrupt=abrupt)
        core.create_namespaced_config_map("default", _cm("last"))
        assert done.wait(10)
    finally:
        done.set()
        kube_api.drop_watches()
        watcher.join(10)
    names = [e["raw_object"]["metadata"]["name"] for e in seen]
    assert names == [f"cm-{i}" for i in range(60)] + ["last"]
    if abrupt:
        assert errors and all(isinstance(e, ProtocolError) for e in errors)
    else:
        assert not errors  # a cleanly ended stream is resumed inside Watch.stream itself


def test_graceful_drop_is_resumed_inside_watch_stream(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    start = kube_api.resource_version
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version=start) as rec:
        core.create_namespaced_config_map("default", _cm("a"))
        assert _names([rec.next_event()]) == [("ADDED", "a")]
        assert kube_api.drop_watches(abrupt=False) == 1
        core.create_namespaced_config_map("default", _cm("b"))
        assert _names([rec.next_event()]) == [("ADDED", "b")]


def test_abrupt_drop_surfaces_as_protocol_error(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version="0") as rec:
        assert kube_api.wait_for_watches(1)
        kube_api.drop_watches(abrupt=True)
        assert isinstance(rec.wait_ended().error, ProtocolError)


def test_too_old_version_after_compact_is_410_through_watch_stream(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    old = kube_api.resource_version
    core.create_namespaced_config_map("default", _cm("a"))
    kube_api.compact()
    # With timeoutSeconds, Watch.stream raises at the first 410 ERROR event.
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=5) as rec:
        ended = rec.wait_ended()
    assert isinstance(ended.error, client.ApiException)
    assert ended.error.status == 410
    assert "Expired: too old resource version" in str(ended.error.reason)
    # Without it, Watch.stream re-watches once from the same version, then raises the same way.
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version=old) as rec:
        ended = rec.wait_ended()
    assert isinstance(ended.error, client.ApiException) and ended.error.status == 410
    # The current version is still good.
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version=kube_api.resource_version) as rec:
        core.create_namespaced_config_map("default", _cm("b"))
        assert _names([rec.next_event()]) == [("ADDED", "b")]


def test_compact_does_not_break_open_watches(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    start = kube_api.resource_version
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version=start) as rec:
        assert kube_api.wait_for_watches(1)
        core.create_namespaced_config_map("default", _cm("a"))
        kube_api.compact()
        core.create_namespaced_config_map("default", _cm("b"))
        assert _names(rec.take(2)) == [("ADDED", "a"), ("ADDED", "b")]


def test_history_limit_expires_old_versions(core: client.CoreV1Api) -> None:
    with KubeApi(history_limit=3, preset_namespaces=()) as small, small.api_client() as api:
        v1 = client.CoreV1Api(api)
        first = v1.create_namespaced_config_map("default", _cm("a")).metadata.resource_version
        for name in "bcde":
            v1.create_namespaced_config_map("default", _cm(name))
        with WatchRecorder(v1.list_namespaced_config_map, "default", resource_version=first, timeout_seconds=5) as rec:
            ended = rec.wait_ended()
        assert isinstance(ended.error, client.ApiException) and ended.error.status == 410
        second = str(int(first) + 1)
        with WatchRecorder(v1.list_namespaced_config_map, "default", resource_version=second) as rec:
            assert _names(rec.take(3)) == [("ADDED", "c"), ("ADDED", "d"), ("ADDED", "e")]


def test_bookmarks_carry_the_current_version(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", _cm("a"))
    core.create_namespace({"metadata": {"name": "elsewhere"}})
    with WatchRecorder(
        core.list_namespaced_config_map, "default", resource_version="0", allow_watch_bookmarks=True
    ) as rec:
        assert _names([rec.next_event()]) == [("ADDED", "a")]
        bookmark = rec.next_event(skip_bookmarks=False)
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["raw_object"]["metadata"]["resourceVersion"] == kube_api.resource_version
        assert rec.watch.resource_version == kube_api.resource_version


def test_no_bookmarks_unless_asked(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version="0", timeout_seconds=1) as rec:
        assert isinstance(rec.next(timeout=5), StreamEnded)


def test_timeout_seconds_ends_the_stream(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    with WatchRecorder(core.list_namespaced_config_map, "default", timeout_seconds=1) as rec:
        assert rec.wait_ended(timeout=5).error is None


def test_watch_across_namespaces(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    start = kube_api.resource_version
    with WatchRecorder(core.list_service_for_all_namespaces, resource_version=start) as rec:
        core.create_namespaced_service("a", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}})
        core.create_namespaced_service("b", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}})
        events = rec.take(2)
    assert [(e["object"].metadata.namespace, e["object"].metadata.name) for e in events] == [("a", "s"), ("b", "s")]


def test_a_client_that_hangs_up_closes_its_watch(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    rec = WatchRecorder(core.list_namespaced_config_map, "default", resource_version="0").start()
    assert kube_api.wait_for_watches(1)
    rec.stop()
    assert kube_api.wait_until(lambda: kube_api.open_watches == 0)


def test_fail_next_on_watch(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    kube_api.fail_next("watch", "configmaps", 500)
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version="0") as rec:
        ended = rec.wait_ended()
    assert isinstance(ended.error, client.ApiException) and ended.error.status == 500
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version="0") as rec:
        core.create_namespaced_config_map("default", _cm("a"))
        assert _names([rec.next_event()]) == [("ADDED", "a")]


def test_invalid_version_is_bad_request(core: client.CoreV1Api) -> None:
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version="abc", timeout_seconds=5) as rec:
        ended = rec.wait_ended()
    assert isinstance(ended.error, client.ApiException) and ended.error.status == 400


def test_compact_then_graceful_drop_makes_the_rewatch_meet_410(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    start = kube_api.resource_version
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version=start) as rec:
        core.create_namespaced_config_map("default", _cm("a"))
        assert _names([rec.next_event()]) == [("ADDED", "a")]
        core.create_namespaced_config_map("other", _cm("b"))  # moves the version past the watcher's last event
        kube_api.compact()
        kube_api.drop_watches(abrupt=False)
        ended = rec.wait_ended()
    assert isinstance(ended.error, client.ApiException) and ended.error.status == 410


def test_expire_watches_sends_410_to_open_streams(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version="0", timeout_seconds=30) as rec:
        assert kube_api.wait_for_watches(1)
        assert kube_api.expire_watches("services") == 0
        assert kube_api.expire_watches("configmaps") == 1
        ended = rec.wait_ended()
    assert isinstance(ended.error, client.ApiException) and ended.error.status == 410


def test_injected_410_on_watch_is_an_error_event(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    kube_api.fail_next("watch", "configmaps", 410)
    with WatchRecorder(core.list_namespaced_config_map, "default", resource_version="0", timeout_seconds=30) as rec:
        ended = rec.wait_ended()
    assert isinstance(ended.error, client.ApiException) and ended.error.status == 410
    assert [r.code for r in kube_api.requests("watch", "configmaps")] == [200]  # 410 rides inside the stream
