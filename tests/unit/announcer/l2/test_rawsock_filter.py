"""The classic BPF program of the raw sockets, run by a small interpreter: it passes exactly ARP and
ICMPv6 NS/NA (without extension headers) and nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.announcer.l2.rawsock import FILTER_ARP_NDP
from tests.unit.announcer.l2.test_arp import VIP_REQUEST
from tests.unit.announcer.l2.test_ndp import NS, SOLICITED_NA


def run_bpf(program: tuple[tuple[int, int, int, int], ...], packet: bytes) -> int:
    """Classic BPF for the opcodes the program uses; an out-of-bounds load rejects, as in the kernel."""
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code in (0x28, 0x30):  # ld h/b [k]
            size = 2 if code == 0x28 else 1
            if k + size > len(packet):
                return 0
            acc = int.from_bytes(packet[k : k + size], "big")
        elif code == 0x15:  # jeq #k
            pc += jt if acc == k else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"opcode {code:#x} not modelled")
        pc += 1


def wanted(packet: bytes) -> bool:
    if len(packet) >= 14 and packet[12:14] == b"\x08\x06":
        return True
    return len(packet) >= 55 and packet[12:14] == b"\x86\xdd" and packet[20] == 58 and packet[54] in (135, 136)


def test_known_frames() -> None:
    assert run_bpf(FILTER_ARP_NDP, VIP_REQUEST) > 0
    assert run_bpf(FILTER_ARP_NDP, NS) > 0
    assert run_bpf(FILTER_ARP_NDP, SOLICITED_NA) > 0
    assert run_bpf(FILTER_ARP_NDP, NS[:54] + b"\x80" + NS[55:]) == 0  # echo request
    assert run_bpf(FILTER_ARP_NDP, VIP_REQUEST[:12] + b"\x08\x00" + VIP_REQUEST[14:]) == 0  # IPv4


@given(
    st.sampled_from([b"\x08\x06", b"\x86\xdd", b"\x08\x00", b"\x81\x00"]),
    st.binary(min_size=0, max_size=120),
    st.sampled_from([None, 58, 6, 0]),
    st.sampled_from([None, 135, 136, 128, 134]),
)
def test_filter_matches_its_specification(ethertype: bytes, body: bytes, nh: int | None, icmp: int | None) -> None:
    packet = bytearray(bytes(12) + ethertype + body)
    if nh is not None and len(packet) > 20:
        packet[20] = nh
    if icmp is not None and len(packet) > 54:
        packet[54] = icmp
    assert (run_bpf(FILTER_ARP_NDP, bytes(packet)) > 0) == wanted(bytes(packet))
