"""The Kubernetes deployment, rendered without kubectl, checked offline.

Every rendered object validates against the Kubernetes OpenAPI schemas (kubernetes-validate, strict);
workloads run only commands and options the ``metalbus`` CLI knows; the announcer holds no Kubernetes
credentials and only NET_RAW and NET_BIND_SERVICE; RBAC exists for the watcher alone; NATS users and passwords line up.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy import nats_config
from services.cli import DEFAULT_HTTP_PORTS
from services.common.credentials import COMPONENT_SECRETS, SERVER_SECRET
from services.common.nats_jwt import SigningKey
from services.common.nats_server import nats_server_binary
from services.common.permissions import PERMISSIONS, BusUser, announcer_permissions
from services.common.subjects import CONNECTIONS_CLOSED
from tests.tls import write_test_certificates
from tests.unit.deploy.kustomize import Obj, apply_json6902, pod_spec
from tests.unit.deploy.manifests import (
    COMMANDS,
    NOT_OPTIONS,
    OVERLAYS,
    ROOT,
    env_values,
    find,
    metalbus_containers,
    options_set_by_env,
    parse,
    rendered,
)

#: The oldest Kubernetes the manifests are checked against (CEL rules with IP/duration use need >= 1.30)
#: and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
NAMESPACE = "metallb-system"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_kubernetes(overlay: str, version: str) -> None:
    for obj in rendered(overlay):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} on {version}: {error.message}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_are_unique_and_namespaced_where_they_belong(overlay: str) -> None:
    seen: set[tuple[str, str | None, str]] = set()
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in rendered(overlay):
        metadata = obj["metadata"]
        key = (obj["kind"], metadata.get("namespace"), metadata["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in metadata, key
        elif key[:2] != ("Role", "kube-system") and key[:2] != ("RoleBinding", "kube-system"):
            assert metadata.get("namespace") == NAMESPACE, key


# --- the metalbus containers against the CLI -----------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_run_commands_and_options_the_cli_knows(overlay: str) -> None:
    commands = []
    for workload, container in metalbus_containers(rendered(overlay)):
        assert "command" not in container, "the image's entry point is metalbus; only args are given"
        args = container["args"]
        env = env_values(container)
        options = parse(args, env)  # unknown commands or flags exit
        commands.append(options.command)
        for name, changed in options_set_by_env(args, env).items():
            if NOT_OPTIONS.match(name):
                continue
            assert changed, f"{workload['metadata']['name']}: {name} sets no option of `metalbus {options.command}`"
    assert sorted(commands) == sorted([*COMMANDS, "authenticator", "bus"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_component_has_its_port_probes_and_resources(overlay: str) -> None:
    for workload, container in metalbus_containers(rendered(overlay)):
        options = parse(container["args"], env_values(container))
        if options.command == "bus":
            assert options.nats.startswith("nats://admin:") and options.nats.endswith("@metalbus-nats:4222")
            continue  # the provisioning Job: no server, no probes
        port = options.http_port
        assert port == DEFAULT_HTTP_PORTS[options.command]
        if options.command == "announcer":  # its node's token: no password in its environment
            assert options.nats == "nats://metalbus-nats:4222"
            assert options.nats_password_file == "/var/run/secrets/metalbus/nats/token"
        elif options.command == "authenticator":  # beside its own server
            assert options.nats.startswith("nats://authenticator:") and options.nats.endswith("@localhost:4222")
        else:
            assert options.nats.startswith(f"nats://{options.command}:")
            assert options.nats.endswith("@metalbus-nats:4222")
        named_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert named_ports == {"http": port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), workload["metadata"]["name"]
        assert "memory" in container["resources"]["limits"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(("overlay", "replicas"), [("dev", 1), ("prod", 3)])
def test_stream_replicas_match_the_nats_servers(overlay: str, replicas: int) -> None:
    objects = rendered(overlay)
    assert find(objects, "StatefulSet", "metalbus-nats")["spec"]["replicas"] == replicas
    for _, container in metalbus_containers(objects):
        options = parse(container["args"], env_values(container))
        if options.command != "authenticator":  # it makes and reads no stream
            assert options.stream_replicas == replicas


def test_replicas_and_disruption_budgets() -> None:
    objects = rendered("prod")
    assert find(objects, "Deployment", "metalbus-watcher")["spec"]["replicas"] == 2
    assert find(objects, "Deployment", "metalbus-ipam")["spec"]["replicas"] == 2
    budgets = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert budgets["metalbus-watcher"] == {"minAvailable": 1, "selector": {
        "matchLabels": {"app.kubernetes.io/name": "metalbus-watcher"}}}
    assert budgets["metalbus-ipam"]["minAvailable"] == 1
    assert budgets["metalbus-nats"]["maxUnavailable"] == 1
    for name, budget in budgets.items():
        workload = next(o for o in objects if o["kind"] in ("Deployment", "StatefulSet")
                        and o["metadata"]["name"] == name)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert budget["selector"]["matchLabels"].items() <= labels.items()


# --- credentials and privileges ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_announcer_has_no_api_token_and_only_net_raw(overlay: str) -> None:
    objects = rendered(overlay)
    daemonset = find(objects, "DaemonSet", "metalbus-announcer")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["automountServiceAccountToken"] is False
    account = find(objects, "ServiceAccount", spec["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    capabilities = container["securityContext"]["capabilities"]
    assert capabilities == {"drop": ["ALL"], "add": ["NET_RAW", "NET_BIND_SERVICE"]}
    # its one token is for NATS: an audience the Kubernetes API does not accept
    tokens = [source["serviceAccountToken"] for volume in spec["volumes"]
              for source in volume.get("projected", {}).get("sources", []) if "serviceAccountToken" in source]
    assert tokens == [{"path": "token", "audience": "metalbus-nats", "expirationSeconds": 3600}]
    assert container["securityContext"].get("privileged", False) is False
    node = next(e for e in container["env"] if e["name"] == "NODE_NAME")
    assert node["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert parse(container["args"], {"NODE_NAME": "node-a"}).node == "node-a"
    assert not any(o["kind"] == "DaemonSet" for o in objects if o is not daemonset)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_announcer_serves_its_probes_on_the_node_address_only(overlay: str) -> None:
    """On the host network 0.0.0.0 is every interface of the node: the announcer binds the node's address
    (the downward API's status.hostIP), which is also where the kubelet sends the probes (the pod IP)."""
    spec = find(rendered(overlay), "DaemonSet", "metalbus-announcer")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    address = next(e for e in container["env"] if e["name"] == "METALBUS_HTTP_ADDRESS")
    assert address["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    env = {**env_values(container), "METALBUS_HTTP_ADDRESS": "192.0.2.7", "NODE_NAME": "node-a"}
    assert parse(container["args"], env).http_address == "192.0.2.7"
    for probe in ("livenessProbe", "readinessProbe"):
        assert "host" not in container[probe]["httpGet"], "a probe must reach the address the server binds"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_other_pod_gains_privileges_or_host_access(overlay: str) -> None:
    for obj in rendered(overlay):
        spec = pod_spec(obj)
        if spec is None or obj["metadata"]["name"] == "metalbus-announcer":
            continue
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["capabilities"] == {"drop": ["ALL"]}, obj["metadata"]["name"]
            assert context.get("runAsUser", spec.get("securityContext", {}).get("runAsUser")) != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_exists_for_the_watcher_and_the_authenticator_only(overlay: str) -> None:
    objects = rendered(overlay)
    bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    accounts = {"metalbus-watcher", "metalbus-nats"}
    for binding in bindings:
        (subject,) = binding["subjects"]
        assert subject["kind"] == "ServiceAccount" and subject["namespace"] == NAMESPACE
        assert subject["name"] in accounts
    authenticator = [rule for o in objects if o["kind"] in ("Role", "ClusterRole")
                     and o["metadata"]["name"] == "metalbus-authenticator" for rule in o["rules"]]
    assert authenticator == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    ]
    holders = {spec.get("serviceAccountName"): o["metadata"]["name"]
               for o in objects if (spec := pod_spec(o)) is not None}
    assert holders.get("metalbus-watcher") == "metalbus-watcher"
    ipam = pod_spec(find(objects, "Deployment", "metalbus-ipam"))
    assert ipam is not None and ipam["automountServiceAccountToken"] is False
    nats = pod_spec(find(objects, "StatefulSet", "metalbus-nats"))
    assert nats is not None and nats["automountServiceAccountToken"] is False


def _rules(objects: tuple[Obj, ...], kind: str, name: str, namespace: str | None = None) -> list[Obj]:
    role = next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
                and o["metadata"].get("namespace") == namespace)
    rules: list[Obj] = role["rules"]
    return rules


def test_watcher_rbac_is_least_privilege() -> None:
    objects = rendered("prod")
    cluster = _rules(objects, "ClusterRole", "metalbus-watcher")
    local = _rules(objects, "Role", "metalbus-watcher", NAMESPACE)
    proxy = _rules(objects, "Role", "metalbus-watcher-kube-proxy", "kube-system")
    for rule in [*cluster, *local, *proxy]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    cluster_resources = {r for rule in cluster for r in rule["resources"]}
    assert cluster_resources == {"services", "services/status", "endpointslices", "nodes", "namespaces", "events"}
    assert not any("delete" in rule["verbs"] or "create" in rule["verbs"]
                   for rule in cluster if rule["resources"] != ["events"])
    secrets = [rule for rule in local if "secrets" in rule["resources"]]
    assert secrets and all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in secrets)
    assert proxy == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kube-proxy"],
                      "verbs": ["get", "list", "watch"]}]
    written = {r for rule in local if "create" in rule["verbs"] for r in rule["resources"]}
    assert written == {"servicel2statuses", "servicebgpstatuses", "configurationstates", "leases"}


# --- NATS -------------------------------------------------------------------------------------


def test_nats_accounts_are_generated_and_shared_with_compose() -> None:
    expected = nats_config.accounts()
    config = find(rendered("prod"), "ConfigMap", "metalbus-nats-config")
    assert config["data"]["accounts.conf"] == expected, "run: .venv/bin/python deploy/nats_config.py"
    assert (ROOT / "compose" / "nats" / "accounts.conf").read_text() == expected


def test_nats_users_permissions_separate_the_writers() -> None:
    users = {user.value: PERMISSIONS[user] for user in BusUser}
    for name, permissions in users.items():
        written = {s for s in permissions.publish_allow if not s.startswith("$") and s != "deadletter.>"}
        # the admin only marks a restored K8S's lists begun (``backup.restore``): it makes ipam wait, decides nothing;
        # those who hear heartbeats may call the roll (each announcer answers at most once a second)
        assert written == {"watcher": {"k8s.>"}, "ipam": {"ipam.>", "heartbeat.roll-call"},
                           "operator": {"heartbeat.roll-call"}, "admin": {"k8s.listed.*"},
                           "authenticator": set()}[name]
        if name == "admin":
            continue
        administrative = ("$JS.API.STREAM.CREATE", "$JS.API.STREAM.UPDATE", "$JS.API.STREAM.DELETE",
                          "$JS.API.STREAM.PURGE", "$JS.API.STREAM.MSG.DELETE")
        assert not any(s in ("$JS.API.>", ">", "$JS.>") or s.startswith(administrative)
                       for s in permissions.publish_allow), name
    node = announcer_permissions("node-1")
    assert {s for s in node.publish_allow if not s.startswith("$")} == {"heartbeat.announcer.node-1",
                                                                       "announce.node-1.>"}
    assert set(node.subscribe_allow) == {"_INBOX_node_node-1.>", "heartbeat.roll-call"}
    # closed connections: only the server tells them, to ipam (a dead node's IPs move, a dead holder's lease is
    # taken) and the watcher (a dead leader's Lease is taken); nobody may forge one
    assert all(CONNECTIONS_CLOSED in permissions.publish_deny for permissions in [*users.values(), node])
    assert {name for name, permissions in users.items() if CONNECTIONS_CLOSED in permissions.subscribe_allow} \
        == {"ipam", "watcher"}
    assert CONNECTIONS_CLOSED not in node.subscribe_allow
    # BGP passwords: only the watcher (their writer) and the announcers may read the SECRETS stream
    readers = {name for name, permissions in users.items()
               if "$JS.API.CONSUMER.CREATE.SECRETS" in permissions.publish_allow}
    assert readers == {"watcher"}
    assert "$JS.API.CONSUMER.CREATE.SECRETS" in node.publish_allow
    assert not any("SECRETS" in s and ("GET" in s or "CONSUMER" in s) for s in users["ipam"].publish_allow)
    assert not any("SECRETS" in s and ("GET" in s or "CONSUMER" in s) for s in users["operator"].publish_allow)
    for name, permissions in users.items():  # replies on private inboxes only
        assert all(s.startswith(f"_INBOX_{name}.") or not s.startswith("_INBOX")
                   for s in permissions.subscribe_allow), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_component_gets_only_its_own_nats_credential(overlay: str) -> None:
    objects = rendered(overlay)
    nats = find(objects, "StatefulSet", "metalbus-nats")["spec"]["template"]["spec"]
    server, authenticator = nats["containers"]
    server_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in server["env"]
                  if "secretKeyRef" in e.get("valueFrom", {})}
    for user in BusUser:
        assert server_env[user.password_variable] == {"name": SERVER_SECRET, "key": user.value}
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in authenticator["env"] if "valueFrom" in e
            and "secretKeyRef" in e["valueFrom"]} == {SERVER_SECRET}
    secrets_read: dict[str, set[str]] = {}
    for workload, container in metalbus_containers(objects):
        names = {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
                 if "secretKeyRef" in e.get("valueFrom", {})}
        spec = workload["spec"]["template"]["spec"]
        mounted = {v["name"] for m in container.get("volumeMounts", []) for v in spec.get("volumes", [])
                   if v["name"] == m["name"]}
        names |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if v["name"] in mounted and "secret" in v
                  and v["secret"]["secretName"] != "metalbus-nats-tls"}
        secrets_read[f"{workload['metadata']['name']}/{container['name']}"] = names
    assert secrets_read == {
        "metalbus-watcher/watcher": {"metalbus-nats-watcher"},
        "metalbus-ipam/ipam": {"metalbus-nats-ipam"},
        "metalbus-announcer/announcer": set(),
        "metalbus-provision/provision": {"metalbus-nats-admin"},
        "metalbus-nats/authenticator": {SERVER_SECRET, "metalbus-nats-issuer"},
    }
    secrets = [o for o in objects if o["kind"] == "Secret"]
    if overlay == "dev":
        assert {s["metadata"]["name"] for s in secrets} == {SERVER_SECRET, "metalbus-nats-issuer",
                                                            *COMPONENT_SECRETS.values()}
    else:
        assert not secrets, "production passwords are created at install time, never committed"


def test_tls_on_every_nats_connection_in_production() -> None:
    objects = rendered("prod")
    config = find(objects, "ConfigMap", "metalbus-nats-config")["data"]["nats.conf"]
    assert config.count("cert_file: /etc/nats/tls/tls.crt") == 2  # clients and routes
    for workload, container in metalbus_containers(objects):
        assert env_values(container).get("NATS_CA_FILE", "").endswith("ca.crt"), workload["metadata"]["name"]
    for overlay in OVERLAYS:
        image = find(rendered(overlay), "StatefulSet", "metalbus-nats")["spec"]["template"]["spec"]["containers"][0]
        assert image["image"] == "nats:2.15.1-alpine"  # the server the tests run; CVE-2025-30215 fixed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_server_accepts_the_configuration(overlay: str, tmp_path: Path) -> None:
    """The real nats-server parses the rendered nats.conf (with accounts.conf) in test mode."""
    objects = rendered(overlay)
    config = find(objects, "ConfigMap", "metalbus-nats-config")["data"]
    tls = write_test_certificates(tmp_path / "tls", hosts=["localhost"])
    for name, text in config.items():
        (tmp_path / name).write_text(text.replace("/data/jetstream", str(tmp_path / "js"))
                                     .replace("/var/run/nats/", str(tmp_path) + "/")
                                     .replace("/etc/nats/tls/", f"{tls}/"))
    env = {"POD_NAME": "metalbus-nats-0", "ROUTE_PASSWORD": "r", "PATH": "/usr/bin:/bin",
           "AUTH_CALLOUT_ISSUER": SigningKey.new_account().public_key,
           **{user.password_variable: user.value for user in BusUser}}
    result = subprocess.run([nats_server_binary(), "-t", "-c", str(tmp_path / "nats.conf")],
                            capture_output=True, text=True, env=env, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    statefulset = find(objects, "StatefulSet", "metalbus-nats")
    replicas = statefulset["spec"]["replicas"]
    arguments = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    routes = arguments[arguments.index("--routes") + 1].split(",") if "--routes" in arguments else []
    assert len(routes) == (replicas if replicas > 1 else 0)
    for ordinal, route in enumerate(routes):  # the password expanded by the kubelet, not NATS
        assert route == f"nats://route:$(ROUTE_PASSWORD)@metalbus-nats-{ordinal}.metalbus-nats-headless:6222"
    assert "$ROUTE_PASSWORD@" not in config["nats.conf"]


def test_metrics_services_select_each_component_port() -> None:
    objects = rendered("prod")
    for command, port in DEFAULT_HTTP_PORTS.items():
        service = find(objects, "Service", f"metalbus-{command}-metrics")
        pods = "metalbus-nats" if command == "authenticator" else f"metalbus-{command}"  # beside each server
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": pods}
        assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "http"}]


def test_the_json_patch_helper_follows_rfc_6902() -> None:
    document: Obj = {"a": {"b": [1, 2]}, "c": 1}
    apply_json6902(document, yaml.safe_load("""
- {op: add, path: /a/b/-, value: 3}
- {op: replace, path: /c, value: 2}
- {op: remove, path: /a/b/0}
- {op: test, path: /a/b/0, value: 2}
"""))
    assert document == {"a": {"b": [2, 3]}, "c": 2}
    with pytest.raises(ValueError, match="test failed"):
        apply_json6902(document, [{"op": "test", "path": "/c", "value": 9}])
