"""ipam's decider at cluster scale, the pure cost (no bus): ``bench/scale.py``'s cluster, decided as it arrives.

The objects are ``bench/cluster_api.py``'s (a third of the Services ``externalTrafficPolicy: Local``, a quarter
dual-stack, two in three on the L2 pool and the rest on the BGP pool, each with a ready endpoint on two
nodes), turned into observations by the watcher's own translation (the
API server's defaults applied as the API stand-in applies them). A decider holding the configuration and
no Node yet takes over with every node's announcer live; then, as the active replica would:

- every Node is observed (the watcher's first list), in batches of 100 decided at each batch's end;
- each Service and its endpoints are observed one after the other (allocation, L2 placement, BGP decision):
  the CPU per Service over each fifth of them, so a cost that grows with the Services placed shows;
- one node's announcer dies: the CPU to re-place its IPs, and how many moved;
- the process's RSS at the end (the decider's state, and this process's imports).

Times are this process's CPU time (the machine may be shared). ``nice -n 10 python bench/decider_scale.py
[--quick] [--nodes N] [--services N]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))  # cluster_api, beside this file

from cluster_api import config_objects, endpoint_slice, node_name, node_object, service_object

from schemas.events import Event, L2PlacementDecided
from services.ipam.decider import Decider
from services.watcher.observe.translate import (
    config_observed,
    endpoints_observed,
    fold_endpoints,
    namespace_observed,
    node_observed,
    service_observed,
    slice_summary,
)
from tests.kubeapi import defaults

NODE_BATCH = 100


def _stamped(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` as the API server returns it: with a uid and a resourceVersion."""
    meta = raw["metadata"]
    meta.setdefault("uid", f"uid-{raw['kind']}-{meta.get('namespace', '')}-{meta['name']}")
    meta["resourceVersion"] = "1"
    return raw


def _defaulted(raw: dict[str, Any]) -> dict[str, Any]:
    """A Service with the API server's defaults (cluster IPs, IP families)."""
    defaults.service(raw)
    return raw


def service_events(index: int, nodes: int) -> list[Event]:
    """Observations of Service ``index``: its endpoints, then the Service."""
    raw_slice = _stamped(endpoint_slice(index, nodes))
    meta = raw_slice["metadata"]
    folded = fold_endpoints([slice_summary(raw_slice)])
    service = meta["labels"]["kubernetes.io/service-name"]
    return [endpoints_observed(meta["namespace"], service, folded, "1").event,
            service_observed(_stamped(_defaulted(service_object(index)))).event]


def measure(*, nodes: int, services: int) -> dict[str, Any]:
    decider = Decider()
    for raw in config_objects():
        translate = namespace_observed if raw["kind"] == "Namespace" else config_observed
        decider.load_observation(translate(_stamped(raw)).event)
    live = frozenset(node_name(index) for index in range(nodes))
    decider.set_live_nodes(live)
    decider.activate()
    figures: dict[str, Any] = {"nodes": nodes, "services": services}
    started = time.process_time()
    for first in range(0, nodes, NODE_BATCH):
        for index in range(first, min(first + NODE_BATCH, nodes)):
            decider.observe(node_observed(_stamped(node_object(index))).event, defer_to_batch=True)
        decider.report_usage()
    figures["nodes_listed_s"] = time.process_time() - started

    fifth = max(services // 5, 1)
    decided = 0
    for first in range(0, services, fifth):
        events = [e for index in range(first, min(first + fifth, services)) for e in service_events(index, nodes)]
        started = time.process_time()
        for event in events:
            decided += len(decider.observe(event, defer_to_batch=True))
        decided += len(decider.report_usage())
        spent = time.process_time() - started
        figures[f"ms_per_service_{first // fifth + 1}_of_5"] = 1000 * spent / (len(events) / 2)
    figures["decisions"] = decided
    figures["l2_placements"] = len(decider.ledger.placements)
    figures["bgp_decisions"] = len(decider.ledger.bgp)

    victim = max(live, key=lambda n: decider.layer2.placer.loads.get(n, 0))
    started = time.process_time()
    out = decider.set_live_nodes(live - {victim})
    figures["one_node_dies_ms"] = 1000 * (time.process_time() - started)
    figures["one_node_dies_ips_moved"] = sum(isinstance(o.event, L2PlacementDecided) for o in out)
    with open("/proc/self/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    figures["rss_mb"] = rss_kb / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 000 nodes, 10 000 Services")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--services", type=int)
    args = parser.parse_args()
    nodes = args.nodes or (1000 if args.quick else 5000)
    services = args.services or (10_000 if args.quick else 50_000)
    figures = measure(nodes=nodes, services=services)
    for name, value in figures.items():
        print(f"{name:>28}: {value:,.3f}" if isinstance(value, float) else f"{name:>28}: {value}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
