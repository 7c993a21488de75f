"""Run the L2 responder on its own for a fixed desired set: lab tests, benchmarks, debugging.

    ip netns exec NODE python -m services.announcer.l2.standalone --ip 192.0.2.10 --ip 2001:db8::10@eth0

Events go to stdout as JSON lines (`ready`, `conflict`, `stats`, `announced`). With `--control-stdin`,
each stdin line is a JSON command: `{"desired": {"192.0.2.10": ["eth0"], "2001:db8::10": []}}` replaces the
desired set, `{"stats": true}` and `{"announced": true}` print the current view; end of input stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from ipaddress import ip_address

from services.announcer.l2.interfaces import (
    DEFAULT_EXCLUDED_KINDS,
    DEFAULT_EXCLUDED_NAMES,
    ExclusionPolicy,
    IPAddress,
)
from services.announcer.l2.responder import (
    AllowedInterfaces,
    L2Responder,
    L2Stats,
    ResponderConfig,
)
from services.common.logs import add_logging_arguments, setup_logging

Emit = Callable[[dict[str, object]], None]


def _print_json(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
    sys.stdout.flush()


def parse_desired(raw: Mapping[str, Sequence[str]]) -> dict[IPAddress, AllowedInterfaces]:
    """`{"192.0.2.10": ["eth0"], ...}` to the responder's desired set (ValueError on a bad address)."""
    return {ip_address(ip): AllowedInterfaces(frozenset(names)) for ip, names in raw.items()}


def _announced(responder: L2Responder) -> dict[str, object]:
    view = {str(ip): list(names) for ip, names in responder.announced().items()}
    return {"event": "announced", "announced": view}


async def serve(
    desired: Mapping[IPAddress, AllowedInterfaces],
    *,
    stop: asyncio.Event,
    config: ResponderConfig | None = None,
    emit: Emit = _print_json,
    control_fd: int | None = None,
) -> L2Stats:
    """Answer for `desired` in this process's network namespace until `stop` is set (or the control
    stream ends); returns the final counters."""
    loop = asyncio.get_running_loop()

    def conflict(ip: IPAddress, other_mac: bytes, interface: str) -> None:
        emit({"event": "conflict", "ip": str(ip), "other_mac": other_mac.hex(":"), "interface": interface})

    async with L2Responder(config=config, on_conflict=conflict) as responder:
        responder.set_desired(desired)
        emit({**_announced(responder), "event": "ready", "pid": os.getpid()})
        if control_fd is not None:
            buffer = bytearray()

            def readable() -> None:
                chunk = os.read(control_fd, 65536)
                if not chunk:
                    stop.set()
                    return
                buffer.extend(chunk)
                while b"\n" in buffer:
                    line, _, rest = bytes(buffer).partition(b"\n")
                    buffer[:] = rest
                    _command(responder, line, emit)

            os.set_blocking(control_fd, False)
            loop.add_reader(control_fd, readable)
        try:
            await stop.wait()
        finally:
            if control_fd is not None:
                loop.remove_reader(control_fd)
        return responder.stats


def _command(responder: L2Responder, line: bytes, emit: Emit) -> None:
    if not line.strip():
        return
    try:
        command = json.loads(line)
        if "desired" in command:
            responder.set_desired(parse_desired(command["desired"]))
            emit(_announced(responder))
        if command.get("stats"):
            emit({"event": "stats", "stats": responder.stats.as_dict()})
        if command.get("announced"):
            emit(_announced(responder))
    except (ValueError, TypeError, AttributeError) as exc:
        emit({"event": "bad_command", "error": str(exc)})


def _parse_ip_arg(text: str) -> tuple[IPAddress, AllowedInterfaces]:
    ip, _, names = text.partition("@")
    return ip_address(ip), AllowedInterfaces(frozenset(n for n in names.split(",") if n))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.announcer.l2.standalone", description=__doc__)
    parser.add_argument("--ip", action="append", default=[], help="IP[@if1,if2] to answer for (repeatable)")
    parser.add_argument("--exclude", action="append", default=None, help="interface name pattern to skip")
    parser.add_argument("--schedule", default=None, help="gratuitous delays in seconds, e.g. 0,0.25,1,3")
    parser.add_argument("--control-stdin", action="store_true", help="read JSON commands from stdin")
    add_logging_arguments(parser, default_level="WARNING")
    args = parser.parse_args(argv)
    setup_logging("l2-responder", level=args.log_level, log_format=args.log_format)
    desired = dict(_parse_ip_arg(text) for text in args.ip)
    config = ResponderConfig(
        policy=ExclusionPolicy(
            names=tuple(args.exclude) if args.exclude is not None else DEFAULT_EXCLUDED_NAMES,
            kinds=DEFAULT_EXCLUDED_KINDS,
        ),
        **({"gratuitous_schedule": tuple(float(x) for x in args.schedule.split(","))} if args.schedule else {}),
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        control = sys.stdin.fileno() if args.control_stdin else None
        stats = await serve(desired, stop=stop, config=config, control_fd=control)
        _print_json({"event": "stopped", "stats": stats.as_dict()})

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
