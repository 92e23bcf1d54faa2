"""Read-only client for the Deep Security Manager REST API (on-premises, Cloud One, Vision One).

Only GET and the search POST are ever sent. Every call has a timeout; 429/502/503/504, connection failures and
responses cut short are retried with exponential backoff that honours ``Retry-After``, within a total time budget;
401/403 become one :class:`AuthError`. A redirect is never followed: the API key would go to another host. TLS is
verified unless the inventory turned it off, always against the inventory's trust (never REQUESTS_CA_BUNDLE).

Paging does not trust the server: the id cursor must advance on every page, and only an empty page ends the list.
"""

from __future__ import annotations

import email.utils
import html
import http
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlsplit

import requests

from .errors import AuthError, GatherError
from .neterrors import plain_reason

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 30.0
# Transport failures worth another attempt: the request is read-only, so repeating it is harmless.
RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# A server that keeps inventing ever larger ids would otherwise page forever. Every page must bring at least one
# new computer, so this also bounds the number of pages; it is far above what one manager is sized for.
MAX_COMPUTERS = 200_000
SERVER_TEXT_CAP = 300  # characters of a server's error text kept in a reason (the rest is an error page's noise)


@dataclass
class DsmClient:
    base_url: str  # https://dsm:4119 (no /api)
    api_key: str
    auth_style: str  # "api-secret-key" (on-premises) or "apikey" (Cloud One / Vision One)
    verify: bool | str = True
    timeout_s: float = 30.0  # connect and read, per attempt
    retries: int = 4
    backoff_s: float = 0.5
    retry_budget_s: float = 120.0  # one call's attempts and waits together never take longer than this
    max_computers: int = MAX_COMPUTERS
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    session: requests.Session = field(default_factory=requests.Session)
    calls: int = 0

    def __post_init__(self) -> None:
        # The environment may not change what is sent or trusted: ~/.netrc would replace the Authorization
        # header and REQUESTS_CA_BUNDLE the inventory's trust. Its proxy settings still apply, taken explicitly.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self.session.headers["api-version"] = "v1"
        self.session.headers["Accept"] = "application/json"
        if self.auth_style == "api-secret-key":
            self.session.headers["api-secret-key"] = self.api_key
        else:
            self.session.headers["Authorization"] = f"ApiKey {self.api_key}"

    # -- transport -----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        assert method in ("GET", "POST"), "the suite is read-only"
        started, attempts = self.clock(), 0
        while True:
            attempts += 1
            self.calls += 1
            try:
                # verify per request: with it the inventory's trust holds whatever the session carries.
                response = self.session.request(method, self.base_url + path, timeout=self.timeout_s,
                                                verify=self.verify, allow_redirects=False, **kwargs)
            except requests.exceptions.SSLError as err:  # a certificate does not heal on retry
                raise GatherError(f"{method} {path}: {plain_reason(err)}") from None
            except RETRY_ERRORS as err:
                failure, wait = plain_reason(err), self._backoff(attempts, None)
            except requests.RequestException as err:
                raise GatherError(f"{method} {path}: {plain_reason(err)}") from None
            else:
                if not _retryable(method, path, response):
                    return response
                failure = http_error(response)
                wait = self._backoff(attempts, response.headers.get("Retry-After"))
            if attempts > self.retries or self.clock() - started + wait > self.retry_budget_s:
                raise GatherError(f"{method} {path}: {failure}; gave up after {attempts} attempt{'s' * (attempts > 1)}")
            self.sleep(wait)

    def _backoff(self, attempts: int, retry_after: str | None) -> float:
        wait = parse_retry_after(retry_after)
        if wait is None:
            wait = self.backoff_s * (2 ** (attempts - 1)) * (0.5 + random.random() / 2)
        return min(wait, MAX_BACKOFF_S)

    # -- API -----------------------------------------------------------------------------------------

    def search_computers(self, expand: list[str], page_size: int = 5000) -> Iterator[dict[str, Any]]:
        """Every computer, paged by ID (idValue greater-than, sortByObjectID) until an empty page.

        A short page is not the end (a manager or gateway may cap pages below ``maxItems``); reading the one
        extra empty page costs one call. A page whose ids do not all lie beyond the cursor is a server that
        ignores it (or repeats a page): that is an error, never an endless loop or a silently partial list.
        Records whose ``ID`` is not an integer are passed on (the caller names them) but cannot move the cursor.
        """
        cursor, read = 0, 0
        params = [("expand", e) for e in expand] or [("expand", "none")]
        while True:
            body = {"maxItems": page_size, "sortByObjectID": True,
                    "searchCriteria": [{"idValue": cursor, "idTest": "greater-than"}]}
            page = self._json(self._request("POST", "/api/computers/search", params=params, json=body))
            computers = page.get("computers")
            if not isinstance(computers, list):
                raise GatherError("POST /api/computers/search: the answer has no 'computers' list")
            if not computers:
                return
            cursor = _advance(cursor, computers)
            read += len(computers)
            if read > self.max_computers:
                raise GatherError(f"POST /api/computers/search: more than {self.max_computers} computers "
                                  f"(ids still rising at {cursor}): stopped, the list is not complete")
            yield from computers

    def system_setting(self, name: str) -> str | None:
        """``GET /api/systemsettings/{name}`` → its ``value`` (settings are always wrapped)."""
        data = self._json(self._request("GET", f"/api/systemsettings/{name}"))
        value = data.get("value")
        return None if value is None else str(value)

    def manager_version(self) -> str:
        """The Manager's build, from the legacy ``GET /rest/managerInfo/version`` (plain text)."""
        text = self._request("GET", "/rest/managerInfo/version", headers={"Accept": "text/plain"}).text.strip()
        if not text:
            raise GatherError("GET /rest/managerInfo/version returned an empty body")
        return text

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        where = f"{response.request.method} {urlsplit(response.url).path}"
        try:
            data = response.json()
        except ValueError as err:
            raise GatherError(f"{where}: {_not_json(response, err)}") from None
        if not isinstance(data, dict):
            raise GatherError(f"{where}: expected a JSON object, got {type(data).__name__}")
        return data


def _retryable(method: str, path: str, response: requests.Response) -> bool:
    """False for a usable answer; True for one worth retrying; anything else raises the reason."""
    refuse_redirect(response)
    status = response.status_code
    if status in (401, 403):
        said = server_text(response)
        raise AuthError(f"authentication failed: the DSM answered {status} to {method} {path}"
                        f"{f': {said}' if said else ''} (check the API key and its role)")
    if status in RETRY_STATUSES:
        return True
    if status >= 400:
        raise GatherError(f"{method} {path}: {http_error(response)}")
    return False


def _advance(cursor: int, computers: list[Any]) -> int:
    """The next cursor: the page's largest integer ID, which must lie beyond ``cursor`` like every other ID."""
    ids = [c.get("ID") if isinstance(c, dict) else None for c in computers]
    numbers = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    stale = [i for i in numbers if i <= cursor]
    if stale:
        raise GatherError(f"POST /api/computers/search: asked for ids after {cursor}, the DSM returned computer "
                          f"{stale[0]} again (it repeats a page or ignores the id cursor): stopped, the list is "
                          f"not complete")
    if len(set(numbers)) < len(numbers):
        raise GatherError(f"POST /api/computers/search: a page after id {cursor} lists the same computer twice")
    if not numbers:
        raise GatherError(f"POST /api/computers/search: the page after id {cursor} has no computer with an "
                          f"integer ID (first record's ID: {ids[0]!r}): cannot page on")
    return max(numbers)


def refuse_redirect(response: requests.Response) -> None:
    """A 3xx is an error naming where it pointed: following it would send the credentials there."""
    if 300 <= response.status_code < 400:
        target = urlsplit(urljoin(response.url, response.headers.get("Location", "")))
        host = f"{target.hostname}:{target.port}" if target.port else str(target.hostname)
        raise GatherError(f"the DSM answered {response.status_code} redirecting to {host}: not followed "
                          f"(credentials are never sent to another host)")


def http_error(response: requests.Response) -> str:
    """``HTTP 502 Bad Gateway from dsm:4119 (a gateway error page: …)`` or ``HTTP 400 … from …: <message>``."""
    status = response.status_code
    try:
        phrase = response.reason or http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    head = f"HTTP {status} {phrase}".rstrip() + f" from {urlsplit(response.url).netloc.rpartition('@')[2]}"
    said = server_text(response)
    if not said:
        return head
    return f"{head} (a gateway error page: {said})" if _is_html(response) else f"{head}: {said}"


def server_text(response: requests.Response) -> str:
    """What the server said, readable: an HTML page's title, a JSON ``message``, or the first line of text."""
    text = response.text
    if _is_html(response):
        match = (re.search(r"<title[^>]*>(.*?)</title>", text, re.S | re.I)
                 or re.search(r"<h1[^>]*>(.*?)</h1>", text, re.S | re.I))
        page = match.group(1) if match else re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S | re.I)
        return _cap(" ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split()))
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    if isinstance(message, str) and message.strip():
        return _cap(" ".join(message.split()))
    return _cap(next((line.strip() for line in text.splitlines() if line.strip()), ""))


def _is_html(response: requests.Response) -> bool:
    start = response.text.lstrip()[:15].lower()
    return "html" in response.headers.get("Content-Type", "").lower() or start.startswith(("<!doctype html", "<html"))


def _not_json(response: requests.Response, err: ValueError) -> str:
    """Why a body is not JSON: cut short (JSON that stops mid-way) or another kind of answer."""
    text = response.text.rstrip()
    # The decoder reached the end of the text mid-value: a body that stopped early, not another kind of answer.
    ended = getattr(err, "pos", -1) >= len(text) or getattr(err, "msg", "").startswith("Unterminated string")
    if text[:1] in ("{", "[") and ended:
        return f"response cut short: the JSON ends after {len(response.content)} bytes"
    kind = response.headers.get("Content-Type") or "no Content-Type"
    said = server_text(response)
    return f"the answer is not JSON ({kind}){f': {said}' if said else ''}"


def _cap(text: str) -> str:
    if len(text) <= SERVER_TEXT_CAP:
        return text
    return text[:SERVER_TEXT_CAP].rsplit(" ", 1)[0] + "…"


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
