"""The announcer's agents: they act on ipam's decisions, each under one rule.

    read the decisions ──► the desired set ──► converge the wire ──► report

``layer2`` (L2 placements → the ARP/NDP responder's IPs) and ``bgp`` (BGP decisions → each peer's routes),
each with its folds and plans beside it (pure) and its metrics. The wire itself (codecs, state machines,
sockets) is ``services/announcer/l2`` and ``services/announcer/bgp``, which know nothing of the bus.
"""
