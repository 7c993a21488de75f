"""The ``metalbus`` command: one entry point for every component and the operator tools."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from services.common.logs import add_logging_arguments, setup_logging
from services.common.records import KEEPALIVE_INTERVAL
from services.common.runtime import RuntimeOptions, ServiceContext, ServiceMain, run_service

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_HTTP_PORTS = {"watcher": 7470, "ipam": 7471, "announcer": 7472, "authenticator": 7473}
LAB_STATE_DIR_HELP = "env METALBUS_LAB_STATE_DIR, default /run/metalbus-lab"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _add_runtime_arguments(parser: argparse.ArgumentParser, component: str) -> None:
    parser.add_argument(
        "--nats", default=os.environ.get("NATS_URL", DEFAULT_NATS_URL),
        help="NATS server URL(s), comma-separated (env NATS_URL)",
    )
    parser.add_argument(
        "--nats-password-file", default=os.environ.get("NATS_PASSWORD_FILE") or None,
        help="file holding the NATS password, read at every connection (env NATS_PASSWORD_FILE); the"
        " announcer then connects as node-<node> with its node's credential",
    )
    parser.add_argument(
        "--nats-ca-file", default=os.environ.get("NATS_CA_FILE") or None,
        help="CA bundle of the NATS servers' certificates, for tls:// URLs (env NATS_CA_FILE)",
    )
    parser.add_argument(
        "--http-port", type=int,
        default=_env_int("METALBUS_HTTP_PORT", DEFAULT_HTTP_PORTS[component]),
        help="port for /healthz, /readyz and /metrics; 0 picks a free one (env METALBUS_HTTP_PORT)",
    )
    parser.add_argument(
        "--http-address", "--http-host", dest="http_address",
        default=os.environ.get("METALBUS_HTTP_ADDRESS") or os.environ.get("METALBUS_HTTP_HOST") or "0.0.0.0",
        help="address /healthz, /readyz and /metrics listen on; the announcer's DaemonSet gives the node's"
        " (env METALBUS_HTTP_ADDRESS)",
    )
    parser.add_argument(
        "--stream-replicas", type=int, default=_env_int("METALBUS_STREAM_REPLICAS", 1),
        help="JetStream replicas per stream: 1 for one server, 3 for a NATS cluster",
    )
    add_logging_arguments(parser)


def _add_operator_bus_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats", default=None,
        help=f"NATS server URL (env NATS_URL; without either: the bus of the lab running here, found through"
        f" its state directory ({LAB_STATE_DIR_HELP}), else {DEFAULT_NATS_URL})",
    )
    parser.add_argument("--nats-ca-file", default=os.environ.get("NATS_CA_FILE") or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metalbus", description="LoadBalancer for Kubernetes without a cloud, over NATS JetStream"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    watcher = commands.add_parser("watcher", help="observe Kubernetes, write status back")
    _add_runtime_arguments(watcher, "watcher")
    watcher.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (env KUBECONFIG); in-cluster configuration when absent",
    )
    watcher.add_argument(
        "--source-dir", type=Path, default=None,
        help="read Kubernetes YAML from this directory instead of a Kubernetes API (edits apply live;"
        " status is written to DIR/status/)",
    )
    watcher.add_argument(
        "--namespace", default=os.environ.get("METALBUS_NAMESPACE", "metallb-system"),
        help="namespace of the metallb.io configuration objects (env METALBUS_NAMESPACE)",
    )

    ipam = commands.add_parser("ipam", help="decide address allocations and L2 placements")
    _add_runtime_arguments(ipam, "ipam")
    ipam.add_argument(
        "--load-balancer-class", default=os.environ.get("METALBUS_LOAD_BALANCER_CLASS") or None,
        help="serve only Services of this loadBalancerClass (default: only Services without one)",
    )

    announcer = commands.add_parser("announcer", help="announce IPs on this node (ARP/NDP, BGP)")
    _add_runtime_arguments(announcer, "announcer")
    announcer.add_argument(
        "--node", default=os.environ.get("NODE_NAME"), help="this node's Kubernetes name (env NODE_NAME)"
    )
    announcer.add_argument(
        "--exclude-interfaces", default=os.environ.get("METALBUS_EXCLUDE_INTERFACES", ""),
        help="comma-separated interface name patterns (shell style) never to answer ARP/NDP on, in addition"
        " to the built-in ones (lo, veth*, docker*, cni*, kube-ipvs*, ...) (env METALBUS_EXCLUDE_INTERFACES)",
    )
    announcer.add_argument(
        "--bgp-listen-port", type=int, default=_env_int("METALBUS_BGP_LISTEN_PORT", 179),
        help="TCP port BGP peers that dial in connect to, on every address of the node; 0: dial out only"
        " (env METALBUS_BGP_LISTEN_PORT)",
    )

    authenticator = commands.add_parser(
        "authenticator", help="the NATS auth callout: authenticates each announcer as its node (beside NATS)")
    _add_runtime_arguments(authenticator, "authenticator")
    authenticator.add_argument(
        "--issuer-seed-file", default=os.environ.get("METALBUS_ISSUER_SEED_FILE"),
        help="the account nkey seed whose public key the server's auth_callout names as issuer",
    )
    authenticator.add_argument(
        "--node-token-key-file", default=os.environ.get("METALBUS_NODE_TOKEN_KEY_FILE") or None,
        help="accept node tokens made with this key (`metalbus bus node-token`): labs and hosts without"
        " Kubernetes",
    )
    authenticator.add_argument(
        "--token-review", action="store_true", default=bool(os.environ.get("METALBUS_TOKEN_REVIEW")),
        help="accept Kubernetes projected ServiceAccount tokens (audience metalbus-nats), checked by TokenReview",
    )
    authenticator.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                               help="for --token-review; in-cluster configuration when absent")
    authenticator.add_argument(
        "--announcer-service-account",
        default=os.environ.get("METALBUS_ANNOUNCER_SERVICE_ACCOUNT", "metallb-system:metalbus-announcer"),
        help="NAMESPACE:NAME of the announcers' ServiceAccount (for --token-review)",
    )

    bus = commands.add_parser("bus", help="administer the bus: provision streams, render the NATS accounts, keys")
    bus_commands = bus.add_subparsers(dest="bus_command", required=True)
    provision = bus_commands.add_parser(
        "provision", help="create or upgrade every stream, durable consumer and lease bucket (as the admin user)")
    provision.add_argument("--nats", default=os.environ.get("NATS_URL", DEFAULT_NATS_URL))
    provision.add_argument("--nats-ca-file", default=os.environ.get("NATS_CA_FILE") or None)
    provision.add_argument("--stream-replicas", type=int, default=_env_int("METALBUS_STREAM_REPLICAS", 1))
    add_logging_arguments(provision)
    for name, action in (("backup", "back every stream up into DIR (JetStream snapshots, as the admin user)"),
                         ("restore", "restore the streams in DIR into a NATS holding none of them (as admin)")):
        backup = bus_commands.add_parser(name, help=action)
        backup.add_argument("directory", type=Path, metavar="DIR")
        backup.add_argument("--nats", default=os.environ.get("NATS_URL", DEFAULT_NATS_URL))
        backup.add_argument("--nats-ca-file", default=os.environ.get("NATS_CA_FILE") or None)
        add_logging_arguments(backup)
    accounts = bus_commands.add_parser("accounts", help="print the NATS server's accounts.conf")
    accounts.add_argument("--issuer", default="$AUTH_CALLOUT_ISSUER",
                          help="the auth callout issuer's public key (default: the server's environment variable)")
    bus_commands.add_parser("new-issuer", help="print a new issuer seed for the authenticator, and its public key")
    secrets = bus_commands.add_parser(
        "secrets", help="print new Kubernetes Secrets for a deployment (random passwords, a new issuer key)")
    secrets.add_argument("--namespace", default=os.environ.get("METALBUS_NAMESPACE", "metallb-system"))
    node_token = bus_commands.add_parser("node-token", help="print the token that authenticates one node")
    node_token.add_argument("--key-file", required=True)
    node_token.add_argument("--node", required=True)

    nats_cmd = commands.add_parser("nats", help="run a local nats-server with JetStream")
    nats_cmd.add_argument("--host", default="127.0.0.1")
    nats_cmd.add_argument("--port", type=int, default=4222, help="0 picks a free port")
    nats_cmd.add_argument("--store", type=Path, default=None, help="JetStream store (default: temporary)")
    add_logging_arguments(nats_cmd)

    dev = commands.add_parser("dev", help="run NATS and every service locally (Ctrl-C stops them)")
    dev.add_argument("--port", type=int, default=4222, help="NATS port; 0 picks a free one")
    dev.add_argument("--store", type=Path, default=None, help="JetStream store (default: temporary)")
    dev.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    dev.add_argument("--node", default=os.environ.get("NODE_NAME"), help="node name of the local announcer")
    add_logging_arguments(dev)

    status = commands.add_parser("status", help="what metalbus is doing, read from the bus")
    _add_operator_bus_arguments(status)

    explain = commands.add_parser("explain", help="why a Service has (or has not) an IP, and where it is announced")
    explain.add_argument("service", help="NAMESPACE/NAME")
    _add_operator_bus_arguments(explain)

    history = commands.add_parser("history", help="which Service held an IP when, which node answered for it when")
    history.add_argument("query", help="NAMESPACE/NAME of a Service, or an IP address")
    _add_operator_bus_arguments(history)

    lab = commands.add_parser("lab", help="the whole system in network namespaces on this machine (root)")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True)
    lab_up = lab_commands.add_parser("up", help="build the lab, apply the examples, prove reachability")
    lab_up.add_argument("--dir", type=Path, default=None,
                        help="directory of Kubernetes YAML the watcher reads (default STATE_DIR/objects; the"
                        " examples are written there when it holds no YAML)")
    lab_up.add_argument("--no-follow", action="store_true",
                        help="return after the checks, leaving the lab up (default: live table until Ctrl-C,"
                        " which removes the lab)")
    add_logging_arguments(lab_up)
    lab_down = lab_commands.add_parser("down", help="remove every namespace and process of the lab")
    for sub in (lab_up, lab_down):
        sub.add_argument("--state-dir", type=Path, default=None,
                         help=f"where the lab keeps its state ({LAB_STATE_DIR_HELP})")
        sub.add_argument("--prefix", default="mbuslab", help="namespace name prefix")
        sub.add_argument("--mgmt-subnet", default="10.254.77", help="first three octets of the management /24")
        sub.add_argument("--nats-port", type=int, default=4322)
    return parser


def _runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    user = None
    if args.command == "announcer" and args.nats_password_file:
        from services.common.permissions import node_user

        user = node_user(args.node)
    keepalive = KEEPALIVE_INTERVAL
    if args.command == "announcer":
        from services.announcer.agents.bus_contact import CLIENT_KEEPALIVE as keepalive
    return RuntimeOptions(
        nats_url=args.nats,
        nats_user=user,
        nats_password_file=args.nats_password_file,
        nats_ca_file=args.nats_ca_file,
        needs_streams=args.command != "authenticator",
        bus_keepalive=keepalive,
        http_address=args.http_address,
        http_port=args.http_port,
        stream_replicas=args.stream_replicas,
        log_level=args.log_level,
        log_format=args.log_format,
    )


def _service_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ServiceMain:
    if args.command == "announcer":
        if not args.node:
            parser.error("announcer needs --node NAME (or NODE_NAME)")
        from services.announcer.l2.interfaces import DEFAULT_POLICY, ExclusionPolicy
        from services.announcer.service import announcer_main

        extra = tuple(p.strip() for p in args.exclude_interfaces.split(",") if p.strip())
        policy = ExclusionPolicy(names=DEFAULT_POLICY.names + extra, kinds=DEFAULT_POLICY.kinds)
        return announcer_main(node=args.node, policy=policy, bgp_listen_port=args.bgp_listen_port or None)
    if args.command == "ipam":
        from services.ipam.replica import ReplicaSettings
        from services.ipam.service import ipam_main

        return ipam_main(ReplicaSettings(load_balancer_class=args.load_balancer_class))
    if args.command == "authenticator":
        return _authenticator_main(args, parser)
    if args.source_dir is not None:
        from services.watcher.files.service import directory_watcher_main

        return directory_watcher_main(directory=args.source_dir, namespace=args.namespace)
    from services.watcher.service import watcher_main

    return watcher_main(kubeconfig=args.kubeconfig, namespace=args.namespace)


def _authenticator_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ServiceMain:
    from services.authenticator.kubernetes_tokens import AnnouncerAccount, TokenReviewer
    from services.authenticator.service import Verifiers, run_authenticator
    from services.common.nats_jwt import SigningKey

    if not args.issuer_seed_file:
        parser.error("authenticator needs --issuer-seed-file (or METALBUS_ISSUER_SEED_FILE)")
    if not args.node_token_key_file and not args.token_review:
        parser.error("authenticator needs --node-token-key-file, --token-review, or both")
    issuer = SigningKey.from_seed(Path(args.issuer_seed_file).read_text())
    key = Path(args.node_token_key_file).read_text().strip().encode() if args.node_token_key_file else None
    reviewer = None
    if args.token_review:
        namespace, _, name = args.announcer_service_account.partition(":")
        reviewer = TokenReviewer.connect(args.kubeconfig, account=AnnouncerAccount(namespace, name))
    verifiers = Verifiers(node_token_key=key, token_reviewer=reviewer)

    async def main(ctx: ServiceContext) -> None:
        await run_authenticator(ctx, issuer=issuer, verifiers=verifiers)

    return main


def _run_bus(args: argparse.Namespace) -> int:
    if args.bus_command == "accounts":
        from services.common.permissions import render_accounts

        sys.stdout.write(render_accounts(issuer=args.issuer))
        return 0
    if args.bus_command == "new-issuer":
        from services.common.nats_jwt import SigningKey

        key = SigningKey.new_account()
        print(f"seed: {key.seed.decode()}\npublic: {key.public_key}")
        return 0
    if args.bus_command == "secrets":
        import yaml

        from services.common.credentials import kubernetes_secrets

        sys.stdout.write(yaml.safe_dump_all(kubernetes_secrets(namespace=args.namespace), sort_keys=False))
        return 0
    if args.bus_command == "node-token":
        from services.common.node_tokens import node_token

        print(node_token(Path(args.key_file).read_text().strip().encode(), args.node))
        return 0
    if args.bus_command in ("backup", "restore"):
        from services.common.backup import backup_command

        setup_logging(args.bus_command, level=args.log_level, log_format=args.log_format)
        return asyncio.run(backup_command(args.nats, args.directory, ca_file=args.nats_ca_file,
                                          restoring=args.bus_command == "restore"))
    from services.common.provision import provision_command

    setup_logging("provision", level=args.log_level, log_format=args.log_format)
    return asyncio.run(provision_command(args.nats, replicas=args.stream_replicas, ca_file=args.nats_ca_file))


def _run_operator_command(args: argparse.Namespace) -> int:
    """``status``, ``explain``, ``history``: a person is waiting, so a bus that cannot be reached is one line
    saying why (exit 2), not a traceback."""
    from services.common.errors import MetalbusError

    url = _operator_bus(args)
    try:
        if args.command == "status":
            from services.operator.status import show_status

            return asyncio.run(show_status(url, ca_file=args.nats_ca_file))
        if args.command == "explain":
            from services.operator.explain import show_explain

            return asyncio.run(show_explain(url, args.service, ca_file=args.nats_ca_file))
        from services.operator.history import show_history

        return asyncio.run(show_history(url, args.query, ca_file=args.nats_ca_file))
    except MetalbusError as error:
        print(f"metalbus {args.command}: {error}", file=sys.stderr)
        return 2


def _run_nats(args: argparse.Namespace) -> int:
    from services.common.nats_server import EmbeddedNats

    setup_logging("nats", level=args.log_level, log_format=args.log_format)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with EmbeddedNats(host=args.host, port=args.port, store_dir=args.store) as server:
        print(f"nats-server with JetStream at {server.url} (store {server.store_dir}); Ctrl-C stops it",
              flush=True)
        stop.wait()
    return 0


def _log_as_told(component: str, args: argparse.Namespace) -> None:
    """This process and the services it starts (`dev`, `lab up`: they inherit the environment) log at the
    level and in the format this command was given."""
    os.environ["METALBUS_LOG_LEVEL"] = args.log_level
    os.environ["METALBUS_LOG_FORMAT"] = args.log_format.value
    setup_logging(component, level=args.log_level, log_format=args.log_format)


def _run_lab(args: argparse.Namespace) -> int:
    from services.lab.command import lab_down, lab_up
    from services.lab.discovery import lab_state_dir
    from services.lab.plan import LabPlan

    state_dir = args.state_dir or lab_state_dir(os.environ)
    plan = LabPlan(prefix=args.prefix, state_dir=state_dir, mgmt_subnet=args.mgmt_subnet,
                   nats_port=args.nats_port, objects_dir=getattr(args, "dir", None))
    if args.lab_command == "up":
        _log_as_told("lab", args)
        return lab_up(plan, follow_live=not args.no_follow)
    return lab_down(plan)


def _operator_bus(args: argparse.Namespace) -> str:
    """The bus ``status``, ``explain`` and ``history`` read: ``--nats``, else ``NATS_URL``, else the bus of the
    lab running here (as its operator user), else the default."""
    if args.nats:
        return str(args.nats)
    if os.environ.get("NATS_URL"):
        return os.environ["NATS_URL"]
    from services.lab.discovery import LabBusAnswer, find_lab_bus, lab_state_dir

    lab = find_lab_bus(lab_state_dir(os.environ))
    if lab.url is not None:
        return lab.url
    if lab.answer is not LabBusAnswer.NO_LAB:
        print(f"metalbus {args.command}: {lab.reason}; trying {DEFAULT_NATS_URL}", file=sys.stderr)
    return DEFAULT_NATS_URL


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "nats":
        return _run_nats(args)
    if args.command == "dev":
        from services.operator.dev import run_dev

        _log_as_told("dev", args)
        return run_dev(port=args.port, store=args.store, kubeconfig=args.kubeconfig, node=args.node)
    if args.command in ("status", "explain", "history"):
        return _run_operator_command(args)
    if args.command == "lab":
        return _run_lab(args)
    if args.command == "bus":
        return _run_bus(args)
    service = _service_main(args, parser)
    return asyncio.run(run_service(args.command, _runtime_options(args), service))


if __name__ == "__main__":
    sys.exit(main())
