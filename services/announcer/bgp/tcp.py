"""Socket plumbing for BGP over TCP on Linux: TCP MD5 signatures (RFC 2385), source and device binding
(a VRF, or the interface of a link-local peer), TTL."""

from __future__ import annotations

import ipaddress
import socket
import struct

from services.announcer.bgp.nlri import IPAddress

TCP_MD5SIG = 14  # linux/tcp.h; not exported by Python's socket module
TCP_MD5SIG_MAXKEYLEN = 80
_SOCKADDR_STORAGE = 128
_IFNAMSIZ = 16


def tcp_md5sig(peer: IPAddress, key: bytes) -> bytes:
    """The 216-octet ``struct tcp_md5sig`` for ``peer``; an empty key removes the signature."""
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"TCP MD5 key longer than {TCP_MD5SIG_MAXKEYLEN} octets")
    if peer.version == 4:
        sockaddr = struct.pack("=H", socket.AF_INET) + b"\x00\x00" + peer.packed
    else:
        sockaddr = struct.pack("=H", socket.AF_INET6) + b"\x00\x00" + b"\x00" * 4 + peer.packed + b"\x00" * 4
    head = sockaddr.ljust(_SOCKADDR_STORAGE, b"\x00")
    # tcpm_flags, tcpm_prefixlen, tcpm_keylen, tcpm_ifindex, then the key
    return head + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\x00")


def set_md5(sock: socket.socket, peer: IPAddress, password: str | None) -> None:
    """Sign (or, with ``None``, stop signing) segments to and from ``peer`` on ``sock``."""
    key = password.encode() if password else b""
    peer = _socket_view(sock, peer)
    sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, tcp_md5sig(peer, key))


def _socket_view(sock: socket.socket, peer: IPAddress) -> IPAddress:
    """An IPv4 peer reaches an IPv6 socket as an IPv4-mapped address."""
    if sock.family == socket.AF_INET6 and peer.version == 4:
        return ipaddress.IPv6Address(f"::ffff:{peer}")
    return peer


def family_of(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def client_socket(
    *,
    peer: IPAddress,
    source: IPAddress | None = None,
    password: str | None = None,
    ttl: int | None = None,
    device: str | None = None,
) -> socket.socket:
    """A non-blocking TCP socket ready to connect to ``peer``; with ``device`` it is bound to that device
    (SO_BINDTODEVICE): a VRF's master device makes the kernel route it and pick its source in the VRF."""
    sock = socket.socket(family_of(peer), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if device is not None:
            bind_to_device(sock, device)
        if password:
            set_md5(sock, peer, password)
        if ttl is not None:
            set_ttl(sock, ttl)
        if source is not None:
            sock.bind((str(source), 0))
    except BaseException:
        sock.close()
        raise
    return sock


def bind_to_device(sock: socket.socket, device: str) -> None:
    """SO_BINDTODEVICE: ``sock`` sends and hears through ``device`` alone (a VRF's master: through its table)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())


def peer_sockaddr(
    peer: IPAddress, port: int, *, device: str | None = None
) -> tuple[str, int] | tuple[str, int, int, int]:
    """Where to connect: a link-local peer is scoped to ``device``, the interface it was found on."""
    scope = scope_id(peer, device)
    return (str(peer), port, 0, scope) if scope else (str(peer), port)


def scope_id(peer: IPAddress, device: str | None) -> int:
    """The interface index a link-local ``peer`` on ``device`` is scoped to; 0 for any other address (or a
    device that is not there)."""
    if not (isinstance(peer, ipaddress.IPv6Address) and peer.is_link_local and device is not None):
        return 0
    try:
        return socket.if_nametoindex(device)
    except OSError:
        return 0


def scope_of(sockaddr: object) -> int:
    """The interface index of a link-local address in a socket address tuple; 0 for any other address."""
    address = address_of(sockaddr)
    if not (isinstance(address, ipaddress.IPv6Address) and address.is_link_local):
        return 0
    assert isinstance(sockaddr, tuple)
    return sockaddr[3] if len(sockaddr) >= 4 and isinstance(sockaddr[3], int) else 0


def bound_device(sock: socket.socket | None) -> str:
    """The device ``sock`` is bound to, '' for none. A connection accepted by a socket bound to no device
    that arrived through a VRF (``net.ipv4.tcp_l3mdev_accept=1``) is bound to the VRF's device."""
    if sock is None:
        return ""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, _IFNAMSIZ)
    except OSError:
        return ""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def server_socket(*, address: IPAddress, port: int, backlog: int = 16) -> socket.socket:
    sock = socket.socket(family_of(address), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((str(address), port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def reset_on_close(sock: socket.socket | None) -> None:
    """Make closing ``sock`` send an RST at once (SO_LINGER with a zero timeout): nothing is flushed and no
    TIME_WAIT is left behind, whatever the peer sent meanwhile."""
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def set_ttl(sock: socket.socket, ttl: int) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


def address_of(sockaddr: object) -> IPAddress | None:
    """The IP address in a socket address tuple (scope id and IPv4-mapping removed)."""
    if not isinstance(sockaddr, tuple) or not sockaddr:
        return None
    try:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
