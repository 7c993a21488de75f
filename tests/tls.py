"""Certificates for tests that run NATS with TLS: a throwaway CA and a server certificate, made with the
``openssl`` command (Debian's, installed with the network tests' packages)."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path


def write_test_certificates(directory: Path, *, hosts: list[str]) -> Path:
    """``directory`` with ``ca.crt``, ``tls.crt`` and ``tls.key`` (as a kubernetes.io/tls Secret holds them)
    for a server known by ``hosts`` (names and IP addresses). Valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for host in hosts:
        try:
            names.append(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            names.append(f"DNS:{host}")
    extensions = directory / "server.ext"
    extensions.write_text(f"subjectAltName={','.join(names)}\nextendedKeyUsage=serverAuth,clientAuth\n")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["openssl", "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=metalbus test CA"],
        ["openssl", "req", *key, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=metalbus-nats"],
        ["openssl", "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "tls.crt", "-days", "2", "-extfile", str(extensions)],
    ):
        subprocess.run(command, cwd=directory, check=True, capture_output=True, timeout=30)
    return directory
