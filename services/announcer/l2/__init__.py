"""L2 mode data plane: ARP and NDP codecs, interface eligibility and the raw-socket responder.

Pure (bytes and values in, values out, no sockets, no clock): `ethernet`, `arp`, `ndp`, `interfaces`, and
the parser in `links`. I/O: `links` (rtnetlink dump and link events), `rawsock` (AF_PACKET sockets with a
BPF filter), `responder` (the asyncio shell, `L2Responder`), `standalone` (run it alone for a fixed set).
"""
