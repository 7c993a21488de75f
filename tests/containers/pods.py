"""A workload's container as ``docker run`` options: how the kubelet would run it, read from the manifest.

    run = container_run(find(rendered("dev"), "DaemonSet", "metalbus-announcer"), "announcer",
                        downward={"spec.nodeName": "node1", ...}, volumes={"nats-token": token_dir})
    engine.start(*run.options, "--network", "none", image, *run.arguments)

Translated, field by field, as a container runtime under Kubernetes applies them:

- the pod's and the container's ``securityContext`` (the container's wins): ``runAsUser``/``runAsGroup``
  → ``--user``; ``runAsNonRoot: true`` refuses uid 0 as the kubelet does; ``readOnlyRootFilesystem`` →
  ``--read-only``; ``allowPrivilegeEscalation: false`` → ``no-new-privileges``; ``capabilities`` →
  ``--cap-drop``/``--cap-add``; ``seccompProfile: RuntimeDefault`` → the engine's default profile (what
  it is);
- ``volumeMounts`` of ``emptyDir`` volumes → a tmpfs (``readOnly`` kept); of any other volume (a projected
  token, a Secret) → a bind mount of the directory the caller made for it under that volume's name;
- ``env``: literal values with ``$(VAR)`` expanded as the kubelet does, ``fieldRef`` from ``downward``
  (field path → value), ``secretKeyRef`` from ``secrets`` ((Secret, key) → value);
- ``resources.limits`` (memory, cpu) → ``--memory``/``--cpus``; ``terminationGracePeriodSeconds`` →
  ``--stop-timeout``; ``args`` → the command after the image's entrypoint.

Scheduling and the kubelet's own business (probes, ports, tolerations, affinity, the service account's
name, DNS policy) change nothing in how the container runs and are passed over; ``hostNetwork`` is
answered, for the caller to wire. Any other field is refused with :class:`Untranslatable`: a manifest that
grows a setting this translation does not know must not be run as if it were not there.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

#: Fields that do not change how the container runs (the scheduler's, the kubelet's probes and metadata).
POD_FIELDS_PASSED_OVER = frozenset({"serviceAccountName", "tolerations", "affinity", "dnsPolicy", "nodeSelector"})
CONTAINER_FIELDS_PASSED_OVER = frozenset({"name", "image", "ports", "livenessProbe", "readinessProbe",
                                          "startupProbe", "imagePullPolicy"})
SECURITY_FIELDS = frozenset({"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem",
                             "allowPrivilegeEscalation", "capabilities", "seccompProfile"})
POD_SECURITY_FIELDS = frozenset({"runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"})
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi)?$")
_BINARY_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


class Untranslatable(AssertionError):
    """The manifest holds something this translation does not know: the field and where it is."""


@dataclass(frozen=True)
class ContainerRun:
    """A container as ``docker run`` would start it: ``options`` go before the image, ``arguments`` after."""

    options: tuple[str, ...]
    arguments: tuple[str, ...]
    environment: Mapping[str, str]
    host_network: bool
    user: int
    capabilities: frozenset[str] = field(default_factory=frozenset)


def container_run(
    workload: Obj,
    container_name: str,
    *,
    downward: Mapping[str, str] = {},
    secrets: Mapping[tuple[str, str], str] = {},
    volumes: Mapping[str, Path] = {},
) -> ContainerRun:
    """The ``docker run`` options for ``container_name`` of ``workload`` (a Deployment, DaemonSet, ...,
    rendered or as written). ``downward``, ``secrets`` and ``volumes`` supply what the cluster would."""
    pod: Obj = workload["spec"]["template"]["spec"]
    _refuse_unknown(pod, POD_FIELDS_PASSED_OVER | {"containers", "volumes", "securityContext", "hostNetwork",
                                                   "automountServiceAccountToken", "terminationGracePeriodSeconds"},
                    "the pod spec")
    (container,) = [c for c in pod["containers"] if c["name"] == container_name]
    _refuse_unknown(container, CONTAINER_FIELDS_PASSED_OVER | {"args", "env", "resources", "securityContext",
                                                               "volumeMounts"},
                    f"container {container_name}")
    if container.get("command"):
        raise Untranslatable(f"container {container_name}: command replaces the image's entrypoint")
    pod_security: Obj = pod.get("securityContext", {})
    _refuse_unknown(pod_security, POD_SECURITY_FIELDS, "the pod's securityContext")
    security: Obj = container.get("securityContext", {})
    _refuse_unknown(security, SECURITY_FIELDS, f"container {container_name}'s securityContext")
    merged = {**pod_security, **security}

    options: list[str] = []
    user = _user(merged, options)
    if merged.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    if merged.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    _seccomp(merged.get("seccompProfile"))
    capabilities = _capabilities(merged.get("capabilities", {}), options)
    options += _mounts(pod.get("volumes", []), container.get("volumeMounts", []), volumes)
    options += _limits(container.get("resources", {}))
    if "terminationGracePeriodSeconds" in pod:
        options += ["--stop-timeout", str(int(pod["terminationGracePeriodSeconds"]))]
    environment = _environment(container.get("env", []), downward, secrets)
    for name, value in environment.items():
        options += ["--env", f"{name}={value}"]
    return ContainerRun(options=tuple(options), arguments=tuple(container.get("args", [])),
                        environment=environment, host_network=bool(pod.get("hostNetwork")), user=user,
                        capabilities=capabilities)


def _refuse_unknown(part: Obj, known: frozenset[str], where: str) -> None:
    unknown = sorted(set(part) - known)
    if unknown:
        raise Untranslatable(f"{where}: {', '.join(unknown)} not translated to docker run options")


def _user(security: Obj, options: list[str]) -> int:
    if "runAsUser" not in security:
        raise Untranslatable("no runAsUser: the image's USER would decide, which the manifest should say")
    uid = int(security["runAsUser"])
    if security.get("runAsNonRoot") and uid == 0:
        raise Untranslatable("runAsNonRoot with runAsUser 0: the kubelet refuses to start it")
    group = security.get("runAsGroup")
    options += ["--user", f"{uid}:{int(group)}" if group is not None else str(uid)]
    return uid


def _seccomp(profile: Obj | None) -> None:
    if profile is not None and profile != {"type": "RuntimeDefault"}:
        raise Untranslatable(f"seccompProfile {profile}: only RuntimeDefault (the engine's default) is known")


def _capabilities(capabilities: Obj, options: list[str]) -> frozenset[str]:
    _refuse_unknown(capabilities, frozenset({"drop", "add"}), "capabilities")
    for name in capabilities.get("drop", []):
        options += ["--cap-drop", name]
    for name in capabilities.get("add", []):
        options += ["--cap-add", name]
    if capabilities.get("drop") != ["ALL"]:
        raise Untranslatable("capabilities: only drop [ALL] (then add what is needed) is translated")
    return frozenset(capabilities.get("add", []))


def _mounts(volumes: list[Obj], mounts: list[Obj], supplied: Mapping[str, Path]) -> list[str]:
    by_name = {volume["name"]: volume for volume in volumes}
    options: list[str] = []
    for mount in mounts:
        _refuse_unknown(mount, frozenset({"name", "mountPath", "readOnly"}), f"volumeMount {mount.get('name')}")
        volume = by_name[mount["name"]]
        read_only = bool(mount.get("readOnly"))
        kinds = set(volume) - {"name"}
        if kinds == {"emptyDir"}:
            _refuse_unknown(volume["emptyDir"] or {}, frozenset({"medium"}), f"emptyDir {mount['name']}")
            options += ["--tmpfs", f"{mount['mountPath']}:{'ro' if read_only else 'rw,exec'}"]
        elif kinds & {"projected", "secret", "configMap"}:
            source = supplied.get(mount["name"])
            if source is None:
                raise Untranslatable(f"volume {mount['name']} ({', '.join(sorted(kinds))}): no directory supplied")
            options += ["--volume", f"{source}:{mount['mountPath']}:{'ro' if read_only else 'rw'}"]
        else:
            raise Untranslatable(f"volume {mount['name']}: {', '.join(sorted(kinds))} not translated")
    return options


def _limits(resources: Obj) -> list[str]:
    _refuse_unknown(resources, frozenset({"requests", "limits"}), "resources")
    options: list[str] = []
    for name, quantity in resources.get("limits", {}).items():
        if name == "memory":
            match = _QUANTITY.match(str(quantity))
            if match is None:
                raise Untranslatable(f"memory limit {quantity}")
            options += ["--memory", str(int(match.group(1)) * _BINARY_UNITS[match.group(2)])]
        elif name == "cpu":
            text = str(quantity)
            options += ["--cpus", str(int(text[:-1]) / 1000 if text.endswith("m") else float(text))]
        else:
            raise Untranslatable(f"resource limit {name}")
    return options


def _environment(entries: list[Obj], downward: Mapping[str, str],
                 secrets: Mapping[tuple[str, str], str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for entry in entries:
        name = entry["name"]
        if "value" in entry:
            values[name] = _REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), str(entry["value"]))
            continue
        source: Obj = entry.get("valueFrom", {})
        if set(source) == {"fieldRef"}:
            path = source["fieldRef"]["fieldPath"]
            if path not in downward:
                raise Untranslatable(f"env {name}: the downward API's {path} not supplied")
            values[name] = downward[path]
        elif set(source) == {"secretKeyRef"}:
            reference = (source["secretKeyRef"]["name"], source["secretKeyRef"]["key"])
            if reference not in secrets:
                raise Untranslatable(f"env {name}: Secret {reference[0]} key {reference[1]} not supplied")
            values[name] = secrets[reference]
        else:
            raise Untranslatable(f"env {name}: {sorted(source)} not translated")
    return values


def probe_passes(workload: Obj, container_name: str, probe: str, address: str) -> bool:
    """Whether ``probe`` (``readinessProbe``, ``livenessProbe``) of the container passes as the kubelet would
    run it, an HTTP GET of its path and port (a named port looked up in the container's ports) at ``address``."""
    (container,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == container_name]
    get: Obj = container[probe]["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        (port,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    try:
        with urllib.request.urlopen(f"http://{address}:{port}{get['path']}", timeout=2) as answer:
            return 200 <= answer.status < 400
    except OSError:
        return False
