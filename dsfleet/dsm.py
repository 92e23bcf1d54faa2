"""Read-only client for the Deep Security Manager REST API (on-premises, Cloud One, Vision One).

Only GET and the search POST are ever sent. Every call has a timeout; 429/502/503/504 and connection
failures are retried with exponential backoff that honours ``Retry-After``; 401/403 become one
:class:`AuthError`. TLS is verified unless the inventory turned it off.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import requests

from .errors import AuthError, GatherError

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 30.0


@dataclass
class DsmClient:
    base_url: str  # https://dsm:4119 (no /api)
    api_key: str
    auth_style: str  # "api-secret-key" (on-premises) or "apikey" (Cloud One / Vision One)
    verify: bool | str = True
    timeout_s: float = 30.0
    retries: int = 4
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    calls: int = 0

    def __post_init__(self) -> None:
        self.session.headers["api-version"] = "v1"
        self.session.headers["Accept"] = "application/json"
        if self.auth_style == "api-secret-key":
            self.session.headers["api-secret-key"] = self.api_key
        else:
            self.session.headers["Authorization"] = f"ApiKey {self.api_key}"

    # -- transport -----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        assert method in ("GET", "POST"), "the suite is read-only"
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            self.calls += 1
            try:
                # verify per request: a Session-level value loses to REQUESTS_CA_BUNDLE in the environment.
                response = self.session.request(method, url, timeout=self.timeout_s, verify=self.verify, **kwargs)
            except requests.exceptions.SSLError as err:
                raise GatherError(f"TLS verification of {self.base_url} failed: {_short(err)}") from None
            except (requests.ConnectionError, requests.Timeout) as err:
                if attempt == self.retries:
                    raise GatherError(f"{method} {path}: no answer after {attempt + 1} attempts: {_short(err)}") from None
                self.sleep(self._backoff(attempt, None))
                continue
            if response.status_code in (401, 403):
                raise AuthError(f"authentication failed: the DSM answered {response.status_code} to {method} {path} "
                                f"(check the API key and its role)")
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                self.sleep(self._backoff(attempt, response.headers.get("Retry-After")))
                continue
            if response.status_code >= 400:
                raise GatherError(f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}")
            return response
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        wait = parse_retry_after(retry_after)
        if wait is None:
            wait = self.backoff_s * (2 ** attempt) * (0.5 + random.random() / 2)
        return min(wait, MAX_BACKOFF_S)

    # -- API -----------------------------------------------------------------------------------------

    def search_computers(self, expand: list[str], page_size: int = 5000) -> Iterator[dict[str, Any]]:
        """Every computer, paged by ID (idValue greater-than, sortByObjectID) until a short page."""
        last_id = 0
        params = [("expand", e) for e in expand] or [("expand", "none")]
        while True:
            body = {"maxItems": page_size, "sortByObjectID": True,
                    "searchCriteria": [{"idValue": last_id, "idTest": "greater-than"}]}
            page = self._json(self._request("POST", "/api/computers/search", params=params, json=body))
            computers = page.get("computers")
            if not isinstance(computers, list):
                raise GatherError("POST /api/computers/search: response has no 'computers' list")
            yield from computers
            if len(computers) < page_size:
                return
            last_id = max(int(c["ID"]) for c in computers)

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
        try:
            data = response.json()
        except ValueError:
            raise GatherError(f"{response.request.method} {response.url}: response is not JSON") from None
        if not isinstance(data, dict):
            raise GatherError(f"{response.request.method} {response.url}: expected a JSON object")
        return data


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


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) < 200 else text[:200] + "..."
