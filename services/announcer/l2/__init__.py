"""L2 mode data plane: ARP and NDP codecs, interface eligibility and the raw-socket responder.

The codecs (`arp`, `ndp`, `ethernet`) and `interfaces` are pure: bytes and values in, values out, no
sockets and no clock. `links` reads interface facts from rtnetlink; `responder` is the asyncio shell.
"""
