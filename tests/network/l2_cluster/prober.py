"""A neighbor prober for the client namespace: who answers for an IP, and when, from a raw socket (ARP for
IPv4, neighbor solicitation for IPv6).

    ip netns exec CLIENT python -m tests.network.l2_cluster.prober --ifname eth0 --ip 10.0.0.100 --interval 0.01

`--interval S`: a request every S seconds (an ARP broadcast, or a solicitation to the solicited-node group)
until stdin closes; each reply is printed as a JSON line `{"t": monotonic, "mac": "..", "ip": ".."}` (a
`{"ready": true}` line comes first).
`--rtt N`: N request/reply round trips one after another; prints `{"rtt_ms": [...], "lost": n}` and exits.
Requests carry the client's own MAC and IP; replies are matched on the IP asked for. Unsolicited
announcements (gratuitous ARP, unsolicited advertisements) are not replies.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from services.announcer.l2 import arp, ndp
from services.announcer.l2.ethernet import ETH_P_ARP, ETH_P_IPV6, build_frame

BROADCAST = b"\xff" * 6


def request_frame(*, mac: bytes, ip: IPv4Address, target: IPv4Address) -> bytes:
    payload = (
        bytes.fromhex("0001080006040001") + mac + ip.packed + bytes(6) + target.packed
    )
    return build_frame(dst=BROADCAST, src=mac, ethertype=ETH_P_ARP, payload=payload)


def _own(ifname: str, family: int) -> tuple[bytes, IPv4Address | IPv6Address]:
    with open(f"/sys/class/net/{ifname}/address") as handle:
        mac = bytes.fromhex(handle.read().strip().replace(":", ""))
    word = "inet" if family == 4 else "inet6"
    out = os.popen(f"ip -{family} -o addr show dev {ifname} scope global").read().split()
    return mac, ip_address(out[out.index(word) + 1].split("/")[0])


def _answer(frame: bytes, target: IPv4Address | IPv6Address) -> bytes | None:
    """The MAC a frame says answers for `target`: an ARP reply or a solicited advertisement about it."""
    if isinstance(target, IPv4Address):
        packet = arp.parse_arp(frame)
        if (isinstance(packet, arp.ArpPacket) and packet.op is arp.ArpOp.REPLY and packet.sender_ip == target
                and not packet.is_gratuitous):  # fmt: skip
            return packet.sender_mac
        return None
    message = ndp.parse_ndp(frame)
    if isinstance(message, ndp.NeighborAdvertisement) and message.target == target and message.solicited:
        return message.target_lladdr or message.eth_src
    return None


def _replies(sock: socket.socket, target: IPv4Address | IPv6Address) -> list[bytes]:
    """Drain the socket: the MACs of the replies about `target`."""
    macs: list[bytes] = []
    while True:
        try:
            frame = sock.recv(2048)
        except BlockingIOError:
            return macs
        if (mac := _answer(frame, target)) is not None:
            macs.append(mac)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--ip", required=True)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--rtt", type=int, default=0)
    args = parser.parse_args(argv)
    target = ip_address(args.ip)
    mac, own_ip = _own(args.ifname, target.version)
    ethertype = ETH_P_ARP if target.version == 4 else ETH_P_IPV6
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    sock.bind((args.ifname, ethertype))
    sock.setblocking(False)
    if isinstance(target, IPv4Address) and isinstance(own_ip, IPv4Address):
        frame = request_frame(mac=mac, ip=own_ip, target=target)
    elif isinstance(target, IPv6Address) and isinstance(own_ip, IPv6Address):
        frame = ndp.build_solicitation(mac=mac, ip=own_ip, target=target)
    else:
        raise SystemExit(f"no address of the family of {target} on {args.ifname}")
    if args.rtt:
        return _rtt(sock, frame, target, args.rtt)
    print(json.dumps({"ready": True}), flush=True)
    stdin = sys.stdin.fileno()
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send:
            sock.send(frame)
            next_send += args.interval
            if next_send < now:
                next_send = now + args.interval
        ready, _, _ = select.select([sock, stdin], [], [], max(0.0, next_send - time.monotonic()))
        if stdin in ready and not os.read(stdin, 4096):
            return 0
        if sock in ready:
            stamp = time.monotonic()
            for sender in _replies(sock, target):
                print(json.dumps({"t": stamp, "mac": sender.hex(":"), "ip": str(target)}), flush=True)


def _rtt(sock: socket.socket, frame: bytes, target: IPv4Address | IPv6Address, count: int) -> int:
    rtts: list[float] = []
    lost = 0
    for _ in range(count):
        _replies(sock, target)  # stale replies out
        sent = time.perf_counter()
        sock.send(frame)
        deadline = sent + 0.5
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                lost += 1
                break
            ready, _, _ = select.select([sock], [], [], remaining)
            if ready and _replies(sock, target):
                rtts.append((time.perf_counter() - sent) * 1000)
                break
        time.sleep(0.002)  # pacing between round trips, not synchronisation
    print(json.dumps({"rtt_ms": rtts, "lost": lost}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
