"""An ARP prober for the client namespace: who answers for an IPv4 address, and when, from a raw socket.

    ip netns exec CLIENT python -m tests.network.l2_cluster.prober --ifname eth0 --ip 10.0.0.100 --interval 0.01

`--interval S`: a broadcast request every S seconds until stdin closes; each reply is printed as a JSON
line `{"t": monotonic, "mac": "..", "ip": ".."}` (a `{"ready": true}` line comes first).
`--rtt N`: N request/reply round trips one after another; prints `{"rtt_ms": [...], "lost": n}` and exits.
Requests carry the client's own MAC and IP; replies are matched on the sender IP.
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
from ipaddress import IPv4Address

from services.announcer.l2 import arp
from services.announcer.l2.ethernet import ETH_P_ARP, build_frame

BROADCAST = b"\xff" * 6


def request_frame(*, mac: bytes, ip: IPv4Address, target: IPv4Address) -> bytes:
    payload = (
        bytes.fromhex("0001080006040001") + mac + ip.packed + bytes(6) + target.packed
    )
    return build_frame(dst=BROADCAST, src=mac, ethertype=ETH_P_ARP, payload=payload)


def _own(ifname: str) -> tuple[bytes, IPv4Address]:
    with open(f"/sys/class/net/{ifname}/address") as handle:
        mac = bytes.fromhex(handle.read().strip().replace(":", ""))
    out = os.popen(f"ip -4 -o addr show dev {ifname}").read().split()
    ip = IPv4Address(out[out.index("inet") + 1].split("/")[0])
    return mac, ip


def _replies(sock: socket.socket, target: IPv4Address) -> list[bytes]:
    """Drain the socket: the sender MACs of ARP replies about `target`."""
    macs: list[bytes] = []
    while True:
        try:
            frame = sock.recv(2048)
        except BlockingIOError:
            return macs
        packet = arp.parse_arp(frame)
        if (
            isinstance(packet, arp.ArpPacket)
            and packet.op is arp.ArpOp.REPLY
            and packet.sender_ip == target
            and not packet.is_gratuitous
        ):
            macs.append(packet.sender_mac)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--ip", required=True)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--rtt", type=int, default=0)
    args = parser.parse_args(argv)
    target = IPv4Address(args.ip)
    mac, own_ip = _own(args.ifname)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((args.ifname, ETH_P_ARP))
    sock.setblocking(False)
    frame = request_frame(mac=mac, ip=own_ip, target=target)
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


def _rtt(sock: socket.socket, frame: bytes, target: IPv4Address, count: int) -> int:
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
