"""Transport failures become plain reasons, whatever requests/urllib3 wrap them in (real sockets, no mocks)."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from pathlib import Path
from typing import Iterator

import pytest
import requests
import trustme

from dsfleet.neterrors import plain_reason


def _reason(url: str, **kwargs: object) -> str:
    with pytest.raises(requests.RequestException) as info:
        requests.get(url, timeout=1, **kwargs)  # type: ignore[arg-type]
    return plain_reason(info.value)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def tls_port(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server whose certificate names another host; yields its port and the CA that issued it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                context.wrap_socket(conn, server_side=True).close()
            except (OSError, ssl.SSLError):
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], tmp_path / "ca.pem"
    server.close()


def test_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert _reason(f"http://127.0.0.1:{port}/").startswith("connection refused")


def test_silent_server_is_a_read_timeout_in_http_and_a_handshake_timeout_in_tls(silent_port: int) -> None:
    assert _reason(f"http://127.0.0.1:{silent_port}/").startswith("timed out during read")
    assert _reason(f"https://127.0.0.1:{silent_port}/") == "timed out during the TLS handshake"


def test_certificate_for_another_name_and_untrusted_issuer(tls_port: tuple[int, Path]) -> None:
    port, ca = tls_port
    assert _reason(f"https://127.0.0.1:{port}/", verify=str(ca)).startswith("certificate is for another host name")
    assert _reason(f"https://127.0.0.1:{port}/").startswith("certificate not trusted (issuer unknown)")


def test_unresolvable_name() -> None:
    assert _reason("http://dsfleet-no-such-host.invalid/").startswith("name not resolved")


def test_body_cut_short() -> None:
    err = requests.exceptions.ChunkedEncodingError(http.client.IncompleteRead(b"x" * 10, 90))
    assert plain_reason(err) == "response cut short (10 of 100 bytes received)"


def test_unknown_error_keeps_its_type_and_text() -> None:
    assert plain_reason(ValueError("odd")) == "ValueError: odd"
