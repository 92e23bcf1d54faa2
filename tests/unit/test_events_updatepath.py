"""The update-path helpers (CEF/LEEF parsing, event verdicts and --since are in test_cef.py)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from dsfleet.updatepath import ACTIVEUPDATE_URL, parse_curl, probe, probe_url, source_url, tls_bypassed


def test_source_url_and_bypass() -> None:
    assert source_url("Trend Micro ActiveUpdate Server", "https://other/iau_server.dll") == ACTIVEUPDATE_URL
    assert source_url("Other Update Source", "https://relay.corp:4122/iau_server.dll") == \
        "https://relay.corp:4122/iau_server.dll"
    assert source_url(None, None) == ACTIVEUPDATE_URL
    assert tls_bypassed("https://ipv6-iaus.trendmicro.com/iau_server.dll//")
    assert not tls_bypassed("https://ipv6-iaus.trendmicro.com/iau_server.dll") and not tls_bypassed(None)
    assert probe_url("https://ipv6-iaus.trendmicro.com/iau_server.dll//") == \
        "https://ipv6-iaus.trendmicro.com/iau_server.dll"


@pytest.mark.parametrize("stdout,stderr,rc,status,trusted", [
    ("200 0.05", "", 0, "ok", None),
    ("503 0.05", "", 0, "http error", None),
    ("", "curl: (7) Failed to connect to proxy port 3128: Connection refused", 7, "connect error", None),
    ("", "curl: (56) CONNECT tunnel failed, response 407", 56, "proxy error", None),
    ("", "curl: (60) SSL certificate problem: unable to get local issuer certificate\nMore details here: x", 60,
     "tls error", False),
    ("", "curl: (28) Operation timed out after 20001 milliseconds", 28, "timeout", None),
])
def test_parse_curl(stdout: str, stderr: str, rc: int, status: str, trusted: bool | None) -> None:
    p = parse_curl("relay-01", "https://x/iau_server.dll", None, stdout, stderr, rc)
    assert p.status == status and p.trusted is trusted
    if rc:
        assert (p.reason or "").startswith("curl: (")


@pytest.mark.parametrize("stdout,stderr,rc,status,words", [
    ("302 0.01", "", 0, "http error", "HTTP 302, a redirect (not followed)"),
    ("", "curl: (56) CONNECT tunnel failed, response 407", 56, "proxy error", "requires authentication (HTTP 407)"),
    ("", "curl: (56) CONNECT tunnel failed, response 302", 56, "proxy error", "redirect (HTTP 302); not followed"),
    ("", "curl: (7) Failed to connect to 127.0.20.9 port 1 after 0 ms: Couldn't connect to server", 7,
     "connect error", "could not connect"),
    ("", "curl: (28) Connection timed out after 2001 milliseconds", 28, "timeout", "(timed out)"),
])
def test_parse_curl_plain_words(stdout: str, stderr: str, rc: int, status: str, words: str) -> None:
    p = parse_curl("relay-01", "https://x/iau_server.dll", "http://proxy:3128", stdout, stderr, rc)
    assert p.status == status and words in (p.reason or "")


class FakeProxy:
    """A one-address proxy that answers every connection with ``answer`` (or nothing), recording requests."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests.append(conn.recv(65536))
            if self.answer is not None:
                conn.sendall(self.answer)
                conn.close()  # a hanging proxy keeps the connection open without answering


@pytest.mark.parametrize("answer,words", [
    (b"HTTP/1.1 302 Found\r\nLocation: https://catcher.example/x\r\n\r\n",
     "answered CONNECT ias.example:443 with a redirect (HTTP 302) to catcher.example; not followed"),
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
     "the proxy requires authentication for CONNECT ias.example:443 (HTTP 407)"),
])
def test_probe_reports_a_proxy_redirect_or_407_and_sends_nothing_more(answer: bytes, words: str) -> None:
    proxy = FakeProxy(answer)
    p = probe("https://ias.example/iau_server.dll", proxy.url, ("user", "s3cret"), None, 2)
    assert p.status == "proxy error" and words in (p.reason or "")
    assert len(proxy.requests) == 1 and proxy.requests[0].startswith(b"CONNECT ias.example:443 ")


def test_probe_is_bounded_by_its_timeout_when_the_proxy_never_answers() -> None:
    proxy = FakeProxy(None)
    started = time.monotonic()
    p = probe("https://ias.example/iau_server.dll", proxy.url, None, None, 0.5)
    assert time.monotonic() - started < 3
    assert p.status == "timeout" and "timed out" in (p.reason or "")


def test_probe_names_a_refused_proxy() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        p = probe("https://ias.example/iau_server.dll", f"http://127.0.0.1:{closed.getsockname()[1]}", None, None, 2)
    finally:
        closed.close()
    assert p.status == "proxy error" and "connection refused" in (p.reason or "")
