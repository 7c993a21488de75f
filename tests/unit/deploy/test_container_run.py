"""The manifests' containers as ``docker run`` options (tests/containers/pods.py), checked without an engine:
what the container tests run is what the DaemonSet and the Deployments say, and a setting the translation
does not know stops it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.containers.pods import Untranslatable, container_run
from tests.unit.deploy.manifests import find, rendered

TOKEN_DIRECTORY = Path("/srv/token")
NODE = {"spec.nodeName": "node1", "metadata.name": "metalbus-announcer-x", "status.hostIP": "10.0.0.1"}


def announcer() -> dict[str, Any]:
    return copy.deepcopy(find(rendered("dev"), "DaemonSet", "metalbus-announcer"))


def pairs(options: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(options[i], options[i + 1]) for i in range(len(options) - 1) if options[i].startswith("--")}


def test_the_announcer_runs_as_root_holding_only_the_added_capabilities_on_a_read_only_root() -> None:
    workload = announcer()
    added = workload["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
    run = container_run(workload, "announcer", downward=NODE, volumes={"nats-token": TOKEN_DIRECTORY})
    assert run.user == 0 and run.host_network and run.capabilities == set(added) and "NET_RAW" in added
    assert {("--cap-add", name) for name in added} <= pairs(run.options)
    assert {("--user", "0"), ("--cap-drop", "ALL"),
            ("--security-opt", "no-new-privileges"), ("--tmpfs", "/tmp:rw,exec"),
            ("--volume", f"{TOKEN_DIRECTORY}:/var/run/secrets/metalbus/nats:ro"),
            ("--memory", str(256 << 20)), ("--stop-timeout", "10")} <= pairs(run.options)
    assert "--read-only" in run.options
    assert run.arguments == ("announcer",)
    assert run.environment["NODE_NAME"] == "node1"
    assert run.environment["NATS_PASSWORD_FILE"] == "/var/run/secrets/metalbus/nats/token"
    assert run.environment["METALBUS_STREAM_REPLICAS"] == "1"  # the dev overlay: one NATS server


@pytest.mark.parametrize("component", ["watcher", "ipam"])
def test_the_watcher_and_the_ipam_run_as_uid_10001_without_any_capability(component: str) -> None:
    workload = find(rendered("dev"), "Deployment", f"metalbus-{component}")
    secrets = {(f"metalbus-nats-{component}", "password"): "pw"}
    run = container_run(workload, component, secrets=secrets,
                        downward={"metadata.name": "pod", "metadata.namespace": "metallb-system"})
    assert run.user == 10001 and not run.host_network and run.capabilities == frozenset()
    assert {("--user", "10001:10001"), ("--cap-drop", "ALL"), ("--tmpfs", "/tmp:rw,exec")} <= pairs(run.options)
    assert run.environment["NATS_URL"] == f"nats://{component}:pw@metalbus-nats:4222"  # $(NATS_PASSWORD) expanded


def _refused(change: str, workload: dict[str, Any], **supplied: Any) -> str:
    with pytest.raises(Untranslatable) as refusal:
        container_run(workload, "announcer", **{"downward": NODE, "volumes": {"nats-token": TOKEN_DIRECTORY},
                                                **supplied})
    return f"{change}: {refusal.value}"


def test_a_setting_the_translation_does_not_know_is_refused() -> None:
    def container(workload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = workload["spec"]["template"]["spec"]["containers"][0]
        return result

    privileged = announcer()
    container(privileged)["securityContext"]["privileged"] = True
    assert "privileged" in _refused("privileged", privileged)

    host_path = announcer()
    host_path["spec"]["template"]["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    container(host_path)["volumeMounts"].append({"name": "host", "mountPath": "/host"})
    assert "hostPath" in _refused("a hostPath volume", host_path)

    host_pid = announcer()
    host_pid["spec"]["template"]["spec"]["hostPID"] = True
    assert "hostPID" in _refused("hostPID", host_pid)

    root_but_non_root = announcer()
    container(root_but_non_root)["securityContext"]["runAsNonRoot"] = True
    assert "runAsNonRoot" in _refused("runAsNonRoot with uid 0", root_but_non_root)

    assert "spec.nodeName" in _refused("no node name", announcer(), downward={})
    assert "nats-token" in _refused("no token", announcer(), volumes={})
