"""A real nats-server running exactly the configuration the Kubernetes manifests ship.

The ConfigMap ``metalbus-nats-config`` is rendered from ``k8s/overlays/<overlay>`` (not copied): its
``nats.conf`` and ``accounts.conf`` are written out with only the paths and ports of this machine put in
(store, pid file, certificates, listen addresses, route URLs). The server's environment holds what the
Secrets of ``metalbus bus secrets`` would give it; the authenticator runs beside it as in the NATS pod —
with node tokens, or given the kubeconfig of an API (the stand-in, ``tests.kubeapi``) as the shipped
container runs it, with TokenReview — and the administrative step runs as the admin user.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.common.credentials import BusCredentials
from services.common.nats_server import authenticator_command, nats_server_binary, provision_command
from services.common.permissions import BusUser
from tests.tls import write_test_certificates
from tests.unit.deploy.manifests import find, rendered


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shipped_config(overlay: str) -> dict[str, str]:
    """``nats.conf`` and ``accounts.conf`` as the ConfigMap of ``overlay`` ships them."""
    data: dict[str, str] = find(rendered(overlay), "ConfigMap", "metalbus-nats-config")["data"]
    return data


def shipped_arguments(overlay: str, environment: dict[str, str]) -> list[str]:
    """The NATS container's arguments, ``$(VAR)`` expanded from ``environment`` as the kubelet does."""
    statefulset = find(rendered(overlay), "StatefulSet", "metalbus-nats")
    arguments: list[str] = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    return [kubelet_expanded(argument, environment) for argument in arguments]


def kubelet_expanded(text: str, environment: dict[str, str]) -> str:
    """``text`` with its ``$(VAR)`` references replaced from ``environment``, as the kubelet does."""
    return re.sub(r"\$\(([A-Z_]+)\)", lambda match: environment[match.group(1)], text)


@dataclass
class ShippedServer:
    """One server of the shipped configuration; ``index`` is its StatefulSet ordinal."""

    index: int
    directory: Path
    client_port: int
    cluster_port: int
    process: subprocess.Popen[bytes] | None = None
    command: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    """How it was started, to start it again the same way (same store, same ports)."""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def name(self) -> str:
        """Its ``server_name`` (the pod's name), as JetStream names stream and meta leaders."""
        return f"metalbus-nats-{self.index}"

    def start(self, log_file: Path) -> None:
        """Start (or start again) the server, its output appended to ``log_file``."""
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.environment)


@dataclass
class ShippedCluster:
    """The shipped servers (one for the dev overlay, three for prod), their credentials and certificates."""

    overlay: str
    directory: Path
    credentials: BusCredentials
    servers: list[ShippedServer] = field(default_factory=list)
    tls: Path | None = None
    authenticator: subprocess.Popen[bytes] | None = None
    authenticator_port: int = field(default_factory=free_port)
    """Where the authenticator serves /readyz and /metrics."""

    @property
    def url(self) -> str:
        return self.servers[0].url

    def url_for(self, user: BusUser) -> str:
        return self.credentials.url(self.url, user)

    def node_url(self, node: str) -> str:
        return self.credentials.node_url(self.url, node)

    @property
    def ca_file(self) -> str | None:
        return str(self.tls / "ca.crt") if self.tls is not None else None

    def log_file(self, index: int = 0) -> Path:
        return self.directory / f"nats-{index}.log"

    def log(self, index: int = 0) -> str:
        return self.log_file(index).read_text(errors="replace")

    def server_named(self, name: str) -> ShippedServer:
        return next(server for server in self.servers if server.name == name)

    def kill(self, server: ShippedServer) -> None:
        """SIGKILL ``server``, as a node that loses power: no shutdown, whatever it had not written is lost."""
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait()

    def restart(self, server: ShippedServer, *, timeout: float = 30.0) -> None:
        """Start a stopped ``server`` again as before (its store, its ports); back once it says it is ready."""
        assert server.process is None or server.process.poll() is not None, f"{server.name} is still running"
        logged = len(self.log(server.index))
        server.start(self.log_file(server.index))
        _wait_ready(self, server, deadline=time.monotonic() + timeout, logged_before=logged)


def _on_this_machine(text: str, *, cluster: ShippedCluster, server: ShippedServer) -> str:
    """Only the paths and ports of this machine put in: the store, the pid file, the certificates, the
    listen addresses, and the headless Service's names of the route URLs."""
    text = (text.replace("/data/jetstream", str(server.directory / "jetstream"))
            .replace("/var/run/nats/", f"{server.directory}/")
            .replace("/etc/nats/nats.conf", str(server.directory / "nats.conf"))
            .replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{server.client_port}")
            .replace("http: 0.0.0.0:8222", "")
            .replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{server.cluster_port}")
            .replace("@localhost:4222", f"@127.0.0.1:{server.client_port}")
            .replace("/etc/metalbus/issuer/seed", str(cluster.credentials.issuer_seed_file)))
    if cluster.tls is not None:
        text = text.replace("/etc/nats/tls/", f"{cluster.tls}/")
    for other in cluster.servers:
        text = re.sub(rf"@metalbus-nats-{other.index}\.metalbus-nats-headless:6222",
                      f"@127.0.0.1:{other.cluster_port}", text)
    return text


@contextlib.contextmanager
def shipped_cluster(overlay: str, directory: Path, *, startup_timeout: float = 30.0,
                    kubeconfig: Path | None = None) -> Iterator[ShippedCluster]:
    """The overlay's NATS servers, provisioned; the authenticator checks node tokens, or with ``kubeconfig``
    runs as the shipped container (``--token-review``) against that API."""
    config = shipped_config(overlay)
    replicas = find(rendered(overlay), "StatefulSet", "metalbus-nats")["spec"]["replicas"]
    cluster = ShippedCluster(overlay, directory, BusCredentials.create(directory / "credentials"))
    if "tls {" in config["nats.conf"]:
        cluster.tls = write_test_certificates(directory / "tls", hosts=["localhost", "127.0.0.1"])
    for index in range(replicas):
        server_dir = directory / f"server-{index}"
        server_dir.mkdir(parents=True)
        cluster.servers.append(ShippedServer(index, server_dir, free_port(), free_port()))
    environment = {**os.environ, **cluster.credentials.server_environment(), "ROUTE_PASSWORD": "mbroute"}
    try:
        for server in cluster.servers:
            (server.directory / "accounts.conf").write_text(config["accounts.conf"])
            (server.directory / "nats.conf").write_text(_on_this_machine(config["nats.conf"], cluster=cluster,
                                                                         server=server))
            server.command = [nats_server_binary(), *(_on_this_machine(argument, cluster=cluster, server=server)
                                                      for argument in shipped_arguments(overlay, environment))]
            server.environment = {**environment, "POD_NAME": server.name}
            server.start(cluster.log_file(server.index))
        deadline = time.monotonic() + startup_timeout
        for server in cluster.servers:
            _wait_ready(cluster, server, deadline=deadline)
        cluster.authenticator = (_start_authenticator(cluster) if kubeconfig is None
                                 else _start_shipped_authenticator(cluster, kubeconfig))
        _provision(cluster, startup_timeout)
        _wait_answering(cluster, deadline=time.monotonic() + startup_timeout)
        yield cluster
    finally:
        for process in (cluster.authenticator, *(server.process for server in cluster.servers)):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_ready(cluster: ShippedCluster, server: ShippedServer, *, deadline: float, logged_before: int = 0) -> None:
    """Until ``server`` logs that it is ready (after the first ``logged_before`` characters of its log)."""
    while "Server is ready" not in cluster.log(server.index)[logged_before:]:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"nats-server {server.index} exited:\n{cluster.log(server.index)[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nats-server {server.index} not ready:\n{cluster.log(server.index)[-3000:]}")
        time.sleep(0.05)  # polling a child's log for readiness, with a deadline


def _wait_answering(cluster: ShippedCluster, *, deadline: float) -> None:
    """Until the authenticator says it answers (its subscription reached the server): a node connecting
    before would wait for the callout's timeout and be closed meanwhile by the server's pings."""
    log = cluster.directory / "authenticator.log"
    while 'msg="authenticator answering"' not in log.read_text(errors="replace"):
        assert cluster.authenticator is not None
        if cluster.authenticator.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the authenticator does not answer:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)  # polling a child's log for readiness, with a deadline


def _start_authenticator(cluster: ShippedCluster) -> subprocess.Popen[bytes]:
    command = authenticator_command(cluster.credentials, nats_url=cluster.url, http_address="127.0.0.1",
                                    http_port=cluster.authenticator_port)
    if cluster.ca_file is not None:
        command += ["--nats-ca-file", cluster.ca_file]
    with (cluster.directory / "authenticator.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _start_shipped_authenticator(cluster: ShippedCluster, kubeconfig: Path) -> subprocess.Popen[bytes]:
    """The StatefulSet's authenticator container (``metalbus`` and its args, its environment from the
    Secrets, as the kubelet gives it), the API reached through ``kubeconfig`` instead of in-cluster."""
    statefulset = find(rendered(cluster.overlay), "StatefulSet", "metalbus-nats")
    container = next(c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "authenticator")
    secrets = {user.value: cluster.credentials.password(user) for user in BusUser}
    environment = dict(os.environ)
    for entry in container["env"]:
        if "value" in entry:
            value = kubelet_expanded(entry["value"], environment)
        elif "secretKeyRef" in entry["valueFrom"]:
            value = secrets[entry["valueFrom"]["secretKeyRef"]["key"]]
        else:  # the downward API: the pod's name
            value = "metalbus-nats-0"
        environment[entry["name"]] = _on_this_machine(value, cluster=cluster, server=cluster.servers[0])
    environment |= {"METALBUS_HTTP_PORT": str(cluster.authenticator_port), "METALBUS_HTTP_ADDRESS": "127.0.0.1"}
    command = [sys.executable, "-m", "services.cli", *container["args"], "--kubeconfig", str(kubeconfig)]
    with (cluster.directory / "authenticator.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)


def _provision(cluster: ShippedCluster, timeout: float) -> None:
    command = provision_command(cluster.url_for(BusUser.ADMIN))
    if cluster.ca_file is not None:
        command += ["--nats-ca-file", cluster.ca_file]
    command += ["--stream-replicas", str(len(cluster.servers))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 60, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    if done.returncode != 0:
        raise RuntimeError(f"provisioning failed:\n{done.stderr[-3000:]}")


