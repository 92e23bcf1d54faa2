"""The security-update path: which source the DSM sends agents to, and whether it answers through the proxy
without anyone re-signing Trend Micro's certificate (seed 000: SSL inspection breaks updates).

The probe opens a CONNECT tunnel through the proxy, records the certificate chain the tunnel presents,
verifies that chain against the expected trust anchors in a second, verifying handshake (what a Deep
Security agent does), and reads the HTTP answer. Only GET is sent; proxy credentials go to the proxy alone
and are never stored.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
import time
from typing import Any
from pathlib import Path
from urllib.parse import urlsplit

import _ssl
from cryptography import x509

from .neterrors import plain_reason
from .snapshot import CertInfo, SourceProbe

ACTIVEUPDATE_MODE = "Trend Micro ActiveUpdate Server"
ACTIVEUPDATE_URL = "https://iaus.activeupdate.trendmicro.com/iau_server.dll"
SETTINGS = {
    "mode": "platformSettingUpdateSecurityPrimarySourceMode",
    "url": "platformSettingUpdateSecurityPrimarySourceUrl",
    "proxy": "platformSettingProxyAgentUpdateProxyId",
}


def source_url(mode: str | None, url: str | None) -> str:
    """The URL agents download from: the "other update source" when one is configured, else ActiveUpdate."""
    if url and (mode is None or mode.strip() != ACTIVEUPDATE_MODE):
        return url.strip()
    return ACTIVEUPDATE_URL


def tls_bypassed(url: str | None) -> bool:
    """Seed 000's workaround: a trailing ``//`` turns off strict TLS verification of the update source."""
    return url is not None and urlsplit(url.strip()).path.endswith("//")


def probe_url(url: str) -> str:
    """The URL to probe: without the ``//`` flag (it is an instruction to the agent, not part of the path)."""
    parts = urlsplit(url)
    path = re.sub(r"/{2,}$", "", parts.path) or "/"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _cert_info(der: bytes) -> CertInfo:
    cert = x509.load_der_x509_certificate(der)
    return CertInfo(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                    sha256=hashlib.sha256(der).hexdigest(), not_after=cert.not_valid_after_utc.isoformat())


def _presented_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """Every certificate the server sent, leaf first (DER). Python 3.13 makes this public; 3.11/3.12 have it on
    the internal SSL object. Without it, only the leaf is available."""
    sslobj: Any = getattr(tls, "_sslobj", None)
    getter = getattr(sslobj, "get_unverified_chain", None)
    if getter is not None:
        return [cert.public_bytes(_ssl.ENCODING_DER) for cert in getter() or []]
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


class ProbeError(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


MAX_HEAD = 65536  # a proxy's CONNECT answer head; more is not a proxy speaking HTTP


def _connect_answer(status_line: str, head: bytes, target: str) -> ProbeError | None:
    """None when the proxy opened the tunnel; else why not. A redirect or a demand for credentials is reported,
    never followed: following would send the request (and any proxy credentials) somewhere else."""
    match = re.match(r"HTTP/\d\.\d (\d{3})", status_line)
    code = int(match.group(1)) if match else None
    if code == 200:
        return None
    if code == 407:
        return ProbeError("proxy error", f"the proxy requires authentication for CONNECT {target} (HTTP 407)")
    if code is not None and 300 <= code < 400:
        location = re.search(rb"(?im)^location:[ \t]*(\S+)", head)
        where = urlsplit(location.group(1).decode("latin-1")).hostname if location else None
        return ProbeError("proxy error", f"the proxy answered CONNECT {target} with a redirect (HTTP {code}) to "
                                         f"{where or 'no Location'}; not followed")
    return ProbeError("proxy error", f"the proxy refused CONNECT {target}: {status_line or 'no answer'}")


def _read_head(sock: socket.socket, deadline: float) -> bytes:
    """The proxy's answer head, within the deadline and MAX_HEAD bytes (a drip-feeding proxy cannot stall us)."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
        if time.monotonic() > deadline:
            raise socket.timeout("timed out")
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def _tunnel(host: str, port: int, proxy: str | None, proxy_auth: tuple[str, str] | None,
            timeout: float) -> socket.socket:
    """A TCP stream to host:port, through an HTTP CONNECT proxy when one is given. Every step is bounded by
    ``timeout`` (the socket's timeout covers connect and each read; the deadline covers the whole answer)."""
    if proxy is None:
        try:
            return socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            raise ProbeError("connect error", f"cannot connect to {host}:{port}: {plain_reason(err)}") from None
    p = urlsplit(proxy)
    try:
        sock = socket.create_connection((p.hostname, p.port or 8080), timeout=timeout)
    except OSError as err:
        raise ProbeError("proxy error",
                         f"cannot connect to the proxy {p.hostname}:{p.port}: {plain_reason(err)}") from None
    request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if proxy_auth:
        token = base64.b64encode(f"{proxy_auth[0]}:{proxy_auth[1]}".encode()).decode()
        request += f"Proxy-Authorization: Basic {token}\r\n"
    try:
        sock.sendall((request + "\r\n").encode())
        head = _read_head(sock, time.monotonic() + timeout)
    except OSError as err:
        sock.close()
        raise ProbeError("timeout" if isinstance(err, socket.timeout) else "proxy error",
                         f"the proxy did not answer CONNECT {host}:{port}: {plain_reason(err)}") from None
    refused = _connect_answer(head.split(b"\r\n", 1)[0].decode("latin-1"), head, f"{host}:{port}")
    if refused is not None:
        sock.close()
        raise refused
    return sock


def _http_answer(status_line: str, host: str) -> tuple[int, str | None, str | None]:
    """(HTTP status, probe status when not ok, reason). A redirect from the source is not followed."""
    match = re.match(r"HTTP/\d(?:\.\d)? (\d{3})", status_line)
    if not match:
        raise ProbeError("http error", f"no HTTP answer from {host}: {status_line[:80]!r}")
    code = int(match.group(1))
    if 300 <= code < 400:
        return code, "http error", f"{host} answered HTTP {code}, a redirect (not followed)"
    if code >= 400:
        return code, "http error", f"{host} answered HTTP {code}"
    return code, None, None


def probe(url: str, proxy: str | None, proxy_auth: tuple[str, str] | None, trust_ca: Path | None,
          timeout: float) -> SourceProbe:
    """Probe the update source once from here; never raises. Every network step is bounded by ``timeout``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    result = SourceProbe(origin="dsfleet", url=url, proxy=proxy, status="ok")
    started = time.monotonic()
    try:
        # 1) What does the tunnel present? Read the chain without judging it, then ask for the file.
        raw = _tunnel(host, port, proxy, proxy_auth, timeout)
        look = ssl.create_default_context()
        look.check_hostname, look.verify_mode = False, ssl.CERT_NONE
        try:
            with look.wrap_socket(raw, server_hostname=host) as tls:
                result.chain = [_cert_info(d) for d in _presented_chain(tls) if d]
                tls.sendall(f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
                            f"User-Agent: dsfleet-update-probe\r\n\r\n".encode())
                line = tls.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
        except OSError as err:  # ssl.SSLError and socket.timeout included
            stage = "the answer" if result.chain else "the TLS handshake"
            raise ProbeError("timeout" if isinstance(err, socket.timeout) else "tls error",
                             f"{host}:{port}, waiting for {stage}: {plain_reason(err)}") from None
        result.http_status, bad, reason = _http_answer(line, host)
        if bad:
            result.status, result.reason = bad, reason
        result.seconds = round(time.monotonic() - started, 3)
        # 2) Would an agent trust it? A verifying handshake against the expected anchors, in a new tunnel.
        verify = ssl.create_default_context(cafile=str(trust_ca) if trust_ca else None)
        try:
            with verify.wrap_socket(_tunnel(host, port, proxy, proxy_auth, timeout), server_hostname=host):
                result.trusted = True
        except ssl.SSLCertVerificationError as err:
            result.trusted, result.trust_error = False, err.verify_message or str(err)
        except ssl.SSLError as err:
            result.trusted, result.trust_error = False, str(err.reason or err)
    except ProbeError as err:
        result.status, result.reason = err.status, str(err)
    except OSError as err:
        result.status = "timeout" if isinstance(err, socket.timeout) else "error"
        result.reason = plain_reason(err)
    if result.seconds is None:
        result.seconds = round(time.monotonic() - started, 3)
    return result


# -- from a relay, over SSH: curl, with the URL and proxy validated before they reach a command line ------

_SAFE_URL = re.compile(r"^https://[A-Za-z0-9.-]+(?::\d{1,5})?/[A-Za-z0-9._/-]*$")
_SAFE_PROXY = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?/?$")
CURL_TEMPLATE = ("curl --silent --show-error --output /dev/null --max-time {timeout} "
                 "--write-out '%{{http_code}} %{{time_total}}' {proxy}'{url}'")
CURL_COMMAND = re.compile(r"^curl --silent --show-error --output /dev/null --max-time \d+ "
                          r"--write-out '%\{http_code\} %\{time_total\}' (?:--proxy '[^']+' )?'[^']+'$")


def relay_command(url: str, proxy: str | None, timeout: float) -> str:
    if not _SAFE_URL.match(url) or (proxy is not None and not _SAFE_PROXY.match(proxy)):
        raise ValueError(f"refusing to put {url!r} / {proxy!r} on a command line")
    return CURL_TEMPLATE.format(timeout=int(timeout), proxy=f"--proxy '{proxy}' " if proxy else "", url=url)


# curl's exit codes (curl(1), EXIT CODES): the probe status and the cause in plain words.
CURL_EXITS: dict[int, tuple[str, str]] = {
    5: ("proxy error", "the proxy's name was not resolved"), 6: ("connect error", "name not resolved"),
    7: ("connect error", "could not connect (refused or unreachable)"), 22: ("http error", "HTTP error"),
    28: ("timeout", "timed out"), 35: ("tls error", "TLS handshake failed"),
    51: ("tls error", "certificate is for another host name"), 52: ("http error", "empty answer"),
    56: ("proxy error", "the connection failed while receiving"), 58: ("tls error", "client certificate problem"),
    60: ("tls error", "certificate not trusted"), 97: ("proxy error", "proxy handshake failed"),
}


def _curl_cause(rc: int | None, message: str) -> tuple[str, str | None]:
    """(status, plain cause) for a failed curl; a CONNECT answered with a redirect or 407 is named as such."""
    status, cause = CURL_EXITS.get(rc if rc is not None else -1, ("error", None))
    connect = re.search(r"CONNECT tunnel failed, response (\d{3})", message)
    if connect and connect.group(1) == "407":
        cause = "the proxy requires authentication (HTTP 407)"
    elif connect and connect.group(1).startswith("3"):
        cause = f"the proxy answered CONNECT with a redirect (HTTP {connect.group(1)}); not followed"
    return status, cause


def parse_curl(origin: str, url: str, proxy: str | None, stdout: str, stderr: str, rc: int | None) -> SourceProbe:
    """Turn curl's exit code and ``%{http_code} %{time_total}`` into a SourceProbe. The reason is curl's own
    message, then the cause in plain words. curl is not told to follow redirects, so a 3xx is reported."""
    result = SourceProbe(origin=origin, url=url, proxy=proxy, status="ok")
    lines = stderr.strip().splitlines()
    message = next((line for line in lines if line.startswith("curl: (")), lines[0] if lines else f"curl exited {rc}")
    if rc == 0:
        code, _, total = stdout.strip().partition(" ")
        result.http_status = int(code) if code.isdigit() else None
        result.seconds = float(total) if re.match(r"^\d+(\.\d+)?$", total) else None
        if result.http_status is None or result.http_status >= 400:
            result.status, result.reason = "http error", f"HTTP {code}"
        elif result.http_status >= 300:
            result.status, result.reason = "http error", f"HTTP {code}, a redirect (not followed)"
        return result
    result.status, cause = _curl_cause(rc, message)
    result.reason = f"{message} ({cause})" if cause else message
    if rc == 60:
        result.trusted, result.trust_error = False, message
    return result
