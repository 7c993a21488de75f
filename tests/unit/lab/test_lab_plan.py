"""The lab's pure parts: the YAML it applies reads back as the watcher reads it; tool output parsing; the
refusal without root."""

from __future__ import annotations

import os

import pytest
from rich.console import Console

from services.lab import command
from services.lab.checks import Mode, Verdict, parse_arping, parse_bird_route, parse_ndisc6
from services.lab.plan import BGP_POOL, L2_POOL, NODES, SERVICES, LabPlan, bird_config, manifests
from services.watcher.files.documents import Resource, load_documents, parse_documents


def test_the_example_objects_read_back_as_the_watcher_reads_them() -> None:
    documents = []
    for name, text in manifests().items():
        found, skipped = parse_documents(text, origin=name)
        assert skipped == []
        documents += found
    loaded = load_documents(documents, config_namespace="metallb-system")
    names = {resource: sorted(o["metadata"]["name"] for o in items) for resource, items in loaded.objects.items()}
    assert names[Resource.NODES] == sorted(NODES)
    assert names[Resource.IP_ADDRESS_POOLS] == sorted([L2_POOL, BGP_POOL])
    assert names[Resource.SERVICES] == sorted(s.name for s in SERVICES)
    assert names[Resource.BGP_PEERS] == ["router"]
    assert names[Resource.KUBE_PROXY] == ["kube-proxy"]
    assert loaded.ignored_kinds == {}


def test_bird_has_one_passive_session_per_node() -> None:
    text = bird_config(log_file=LabPlan().state_dir / "bird.log")
    assert text.count("protocol bgp") == len(NODES) and text.count("passive on") == len(NODES)


def test_plans_name_their_pieces_and_refuse_too_long_prefixes() -> None:
    plan = LabPlan(prefix="mbuslab")
    assert (plan.ns("node1"), plan.uplink, plan.nats_url) == ("mbuslab-node1", "mbuslab-up", "nats://10.254.77.1:4322")
    with pytest.raises(ValueError, match="too long"):
        LabPlan(prefix="a-very-long-prefix")


def test_tool_output_is_read() -> None:
    assert parse_arping("Unicast reply from 172.30.0.200 [72:44:AE:C4:A7:2E]  1.801ms\n") == ["72:44:ae:c4:a7:2e"]
    assert parse_arping("Sent 1 probes (1 broadcast(s))\nReceived 0 response(s)\n") == []
    assert parse_ndisc6("Target link-layer address: 1E:2B:3C:4D:5E:6F\n") == "1e:2b:3c:4d:5e:6f"
    assert parse_ndisc6("Timed out.\nNo response.\n") is None
    bird = ("Table master4:\n203.0.113.0/32       unicast [node1 07:44:13.123] * (100) [AS64513i]\n"
            "\tvia 172.30.0.11 on eth0\n\tvia 172.30.0.12 on eth0\n")
    assert parse_bird_route(bird) == ["172.30.0.11", "172.30.0.12"]
    assert parse_bird_route("Network not found\n") == []


def test_verdicts_say_what_was_seen() -> None:
    assert Verdict("demo/api", "203.0.113.0", Mode.BGP, None, None).describe() == \
        "demo/api 203.0.113.0 (bgp): BGP: not announced yet; HTTP: no reply"
    seen = Verdict("demo/web", "172.30.0.200", Mode.L2, "node2", "hello from node2 via 172.30.0.200")
    assert seen.reachable and "ARP owner node2" in seen.describe()


def test_without_root_the_lab_says_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    console = Console(record=True, width=200)
    assert command.lab_up(LabPlan(), follow_live=False, console=console) == 2
    text = console.export_text()
    assert "metalbus lab cannot run here; it needs:" in text and "root" in text and "network namespaces" in text
