"""Transport errors in plain words: what an operator needs to act on, not a library's wrapper chain.

``requests`` wraps urllib3, which wraps ``ssl`` and ``socket``: the message of the outermost exception is
"HTTPSConnectionPool(host=..., port=...): Max retries exceeded with url: ..." and the cause sits three levels
down. :func:`plain_reason` walks the chain and names the cause ("connection refused", "timed out during the TLS
handshake", "certificate is for another host name: ...") followed by the innermost detail, never cut off.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Iterator

import requests
import urllib3.exceptions

__all__ = ["plain_reason", "chain"]

# OpenSSL X509 verify codes (include/openssl/x509_vfy.h) that have a plainer name than their text.
_VERIFY_CODES = {
    10: "certificate expired",
    9: "certificate not yet valid",
    18: "certificate not trusted (self-signed)",
    19: "certificate not trusted (self-signed certificate in the chain)",
    20: "certificate not trusted (issuer unknown)",
    21: "certificate not trusted (issuer unknown)",
    62: "certificate is for another host name",
    64: "certificate is for another host name (IP address mismatch)",
}


def chain(err: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: causes, contexts, urllib3's ``reason``, exception arguments."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__,
                  *(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))]
        todo += [n for n in nested if isinstance(n, BaseException)]


def _detail(err: BaseException) -> str:
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        return str(err.verify_message)
    if isinstance(err, ssl.SSLError) and err.reason:
        return str(err.reason)
    if isinstance(err, OSError) and err.strerror:
        return str(err.strerror)
    return str(err) or type(err).__name__


def _tls_timeout(err: BaseException) -> bool:
    return "handshake operation timed out" in str(err) or "_ssl.c" in str(err) and "timed out" in str(err)


def plain_reason(err: BaseException) -> str:  # noqa: C901 - one flat table of cases, most specific first
    """A one-line reason for a transport failure: the cause first, then the innermost detail."""
    errors = list(chain(err))
    for e in errors:
        if isinstance(e, ssl.SSLCertVerificationError):
            name = _VERIFY_CODES.get(e.verify_code, "certificate not trusted")
            return f"{name}: {_detail(e)}"
    for e in errors:
        if _tls_timeout(e):
            return "timed out during the TLS handshake"
    for e in errors:
        if isinstance(e, ssl.SSLError):
            return f"TLS handshake failed: {_detail(e)}"
    for e in errors:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused (nothing listens on that address and port)"
        if isinstance(e, socket.gaierror):
            return f"name not resolved: {_detail(e)}"
        if isinstance(e, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(e, http.client.RemoteDisconnected):
            return "the server closed the connection without answering"
    for e in errors:
        # urllib3's NewConnectionError subclasses ConnectTimeoutError: only a timeout inside it is a timeout.
        if isinstance(e, (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
            return "timed out during connect"
    for e in errors:
        if isinstance(e, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
            return "timed out during read (no answer in time)"
    for e in errors:
        if isinstance(e, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                          urllib3.exceptions.ProtocolError, http.client.IncompleteRead)):
            inner = next((x for x in errors if isinstance(x, http.client.IncompleteRead)), None)
            return "response cut short" + (f" ({_incomplete(inner)})" if inner else f": {_detail(e)}")
    for e in errors:
        if isinstance(e, (socket.timeout, TimeoutError)):
            return "timed out"
    for e in errors:
        if isinstance(e, OSError) and e.strerror:
            return e.strerror[0].lower() + e.strerror[1:]
    return f"{type(err).__name__}: {err}"


def _incomplete(err: http.client.IncompleteRead) -> str:
    # http.client keeps the bytes read, urllib3's subclass only their count.
    got = err.partial if isinstance(err.partial, int) else len(err.partial)
    expected = f" of {got + err.expected}" if isinstance(err.expected, int) else ""
    return f"{got}{expected} bytes received"
