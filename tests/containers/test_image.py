"""The image, built from the Dockerfile as shipped, run as the manifests run it.

- It holds exactly the runtime lock and metalbus: no test tool (scapy), no pip, setuptools or wheel, in
  its environment or in the base's interpreter; its size above the base is printed.
- The watcher and the ipam run from it as the dev overlay's Deployments say (uid 10001, read-only root
  filesystem, every capability dropped, no new privileges, ``/tmp`` an emptyDir; translated by
  :mod:`tests.containers.pods`), on the host's network, against a real nats-server with the shipped
  least-privilege accounts and the Kubernetes API stand-in enforcing the shipped RBAC. A LoadBalancer
  Service gets its IP written into its status: the watcher observed it, the ipam allocated it, the watcher
  wrote it back.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import lock
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from tests.containers.engine import Engine, run_once
from tests.containers.images import image_size
from tests.containers.pods import container_run, probe_passes
from tests.integration.watcher.status.harness import ingress, put_service
from tests.kubeapi import KubeApi
from tests.kubeapi.shipped import NAMESPACE, WATCHER, running_as
from tests.secured_nats import secured_nats
from tests.unit.deploy.manifests import find, rendered
from tests.unit.deploy.test_image import LOCK, _read_lock
from tests.waiting import wait_until

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

NATS_SERVICE = "metalbus-nats"
NATS_PORT = 4222  # the port of the manifests' NATS_URL
KUBECONFIG = "/var/run/secrets/metalbus-test/kubeconfig"

#: Run inside the image by its environment's interpreter: what it holds, as JSON.
_INVENTORY = """
import importlib.metadata, importlib.util, json
print(json.dumps({
    "distributions": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
    "importable": [m for m in ("scapy", "pip", "setuptools", "wheel", "pytest") if importlib.util.find_spec(m)],
}))
"""
#: The base's own interpreter (the official image's /usr/local/bin/python, Debian's /usr/bin/python3).
_BASE_INTERPRETER_TOOLS = ("for m in pip setuptools wheel; do PATH=/usr/local/bin:/usr/bin:/bin python3 -c "
                           "\"import $m\" 2>/dev/null && echo $m; done; true")


def test_the_image_holds_the_runtime_lock_and_no_build_or_test_tool(
    container_engine: Engine, metalbus_image: str, python_base_image: str
) -> None:
    answer = run_once(container_engine, metalbus_image, "-c", _INVENTORY, options=("--entrypoint", "python"))
    assert answer.returncode == 0, answer.stderr
    inventory = json.loads(answer.stdout)
    installed = {lock._key(name) for name in inventory["distributions"]}
    assert installed == set(_read_lock(LOCK)) | {"metalbus"}
    assert inventory["importable"] == [], "build or test tools in the image"
    base_tools = run_once(container_engine, metalbus_image, "-c", _BASE_INTERPRETER_TOOLS,
                          options=("--entrypoint", "sh"))
    assert base_tools.stdout.split() == [], "the base interpreter keeps build tools"

    whoami = run_once(container_engine, metalbus_image, "-c", "import os; print(os.getuid(), os.getgid())",
                      options=("--entrypoint", "python"))
    assert whoami.stdout.split() == ["10001", "10001"]
    above = image_size(container_engine, metalbus_image) - image_size(container_engine, python_base_image)
    print(f"image size above base ({python_base_image}): {above / 1e6:.0f} MB")


@pytest.fixture
def private_address() -> str:
    """A loopback address of this test's own (all of 127/8 is loopback): NATS on the manifests' port and the
    components' health endpoints on theirs can listen there beside anything else on this machine."""
    return f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 2}"


@pytest.fixture
def nats(tmp_path: Path, private_address: str) -> Iterator[EmbeddedNats]:
    with secured_nats(tmp_path / "nats", host=private_address, port=NATS_PORT) as server:
        yield server


@pytest.fixture
def kube_api_as_watcher() -> Iterator[KubeApi]:
    """The API stand-in enforcing the shipped RBAC; its kubeconfigs speak for the watcher's ServiceAccount."""
    with running_as(WATCHER) as api:
        yield api


def test_the_watcher_and_the_ipam_from_the_image_give_a_service_its_ip(
    container_engine: Engine, metalbus_image: str, nats: EmbeddedNats, kube_api_as_watcher: KubeApi,
    private_address: str, tmp_path: Path,
) -> None:
    api = kube_api_as_watcher
    credentials = nats.credentials
    assert credentials is not None
    api.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    api.put_object({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                    "metadata": {"name": "lan", "namespace": NAMESPACE},
                    "spec": {"addresses": ["192.0.2.0/28"]}})
    api.put_object({"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                    "metadata": {"name": "lan", "namespace": NAMESPACE}, "spec": {"ipAddressPools": ["lan"]}})
    put_service(api, "web")

    # The stand-in speaks plain HTTP, which in-cluster configuration refuses: the watcher is given a
    # kubeconfig (the watcher's ServiceAccount token) where the kubelet would mount that token.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.mkdir()
    api.kubeconfig(kubeconfig / "kubeconfig", namespace=NAMESPACE)
    (kubeconfig / "kubeconfig").chmod(0o644)
    kubeconfig.chmod(0o755)
    downward = {"metadata.name": "metalbus-test-0", "metadata.namespace": NAMESPACE}
    passwords = {("metalbus-nats-watcher", "password"): credentials.password(BusUser.WATCHER),
                 ("metalbus-nats-ipam", "password"): credentials.password(BusUser.IPAM)}
    on_this_network = ("--network", "host", "--add-host", f"{NATS_SERVICE}:{private_address}",
                       "--env", f"METALBUS_HTTP_ADDRESS={private_address}")
    components = {"watcher": ("--volume", f"{kubeconfig}:{Path(KUBECONFIG).parent}:ro",
                              "--env", f"KUBECONFIG={KUBECONFIG}"),
                  "ipam": ()}
    started: dict[str, str] = {}
    workloads = {component: find(rendered("dev"), "Deployment", f"metalbus-{component}") for component in components}
    try:
        for component, extra in components.items():
            run = container_run(workloads[component], component, downward=downward, secrets=passwords)
            assert run.user == 10001 and "--read-only" in run.options
            started[component] = container_engine.start(*run.options, *on_this_network, *extra, metalbus_image,
                                                        *run.arguments)
        for component, workload in workloads.items():
            wait_until(lambda w=workload, c=component: probe_passes(w, c, "readinessProbe", private_address),
                       timeout=60, what=f"{component} ready")

        wait_until(lambda: bool(ingress(api, "web")), timeout=30, what="the Service's IP in its status")
        (entry,) = ingress(api, "web")
        assert entry["ip"].startswith("192.0.2.")
    except BaseException:
        for component, container in started.items():
            print(f"--- {component}\n{container_engine.logs(container)[-4000:]}")
        raise
    finally:
        for container in started.values():
            container_engine.remove(container)
