"""Events of the 2025 certificate incident (seed 001): system event 2205 "Pattern Update on Agents/Appliances
Failed", whose description embeds agent event 9017 with error -24 IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE.
A 9017 with error code 11 right after an install is transient (KA-0007611) and is not a finding.

Two sources: the DSM's legacy SOAP API (``systemEventRetrieve``) or syslog files in CEF.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Iterator

import requests

from . import cef
from .errors import AuthError, GatherError, InputError
from .snapshot import Event

EVENT_IDS = frozenset({2205, 9017})
CERT_EXPIRE = "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE"
_ERROR_CODE = re.compile(r"(?:error\s*code|エラーコード)\s*[:：=]\s*(-?\d+)", re.I)


def error_code(text: str) -> int | None:
    match = _ERROR_CODE.search(text)
    return int(match.group(1)) if match else None


def verdict(event: Event) -> str:
    """"cert-expire", "update-failed", "transient" or "other": what this event means for EVT-001."""
    text = f"{event.name} {event.description}"
    code = error_code(text)
    if CERT_EXPIRE in text or code == -24:
        return "cert-expire"
    if code == 11:
        return "transient"
    return "update-failed" if event.event_id == 2205 else "other"


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``--since``: a duration back from now (``90m``, ``24h``, ``7d``) or an ISO 8601 time."""
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - dt.timedelta(**{unit: int(match.group(1))})
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError("--since", "(option)", "a duration like 90m, 24h, 7d or an ISO 8601 time", text) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


# -- CEF files -------------------------------------------------------------------------------------------


def cef_files(paths: tuple[Path, ...]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        out += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return out


def read_cef(paths: tuple[Path, ...], since: dt.datetime, until: dt.datetime) -> tuple[list[Event], int, int]:
    """(events 2205/9017 in the window, lines read, lines that were not syslog+CEF)."""
    events, scanned, unparsed = [], 0, 0
    for file in cef_files(paths):
        with open(file, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                scanned += 1
                try:
                    record = cef.parse_line(line, until)
                except (cef.NotCef, ValueError):
                    unparsed += 1
                    continue
                if not record.signature_id.isdigit() or int(record.signature_id) not in EVENT_IDS:
                    continue
                if not since <= record.time <= until:
                    continue
                ext = record.extension
                target = ext.get("target") or ext.get("dvchost") or ext.get("dhost") or ext.get("dvc") or record.host
                events.append(Event(time=record.time.isoformat(), event_id=int(record.signature_id),
                                    name=record.name, target=target, description=ext.get("msg", ""),
                                    origin=f"{file}:{number}"))
    return events, scanned, unparsed


# -- DSM SOAP API ----------------------------------------------------------------------------------------


def read_soap(base_url: str, verify: bool | str, user: str, password: str, tenant: str | None,
              since: dt.datetime, until: dt.datetime, timeout: float) -> tuple[list[Event], int]:
    """systemEventRetrieve over the window, paged by systemEventID; the session is always ended."""
    import zeep
    from zeep.exceptions import Fault, TransportError
    from zeep.transports import Transport

    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace the inventory's trust
    session.verify = verify
    try:
        client = zeep.Client(f"{base_url}/webservice/Manager?WSDL",
                             transport=Transport(session=session, timeout=timeout, operation_timeout=timeout))
        # Bind to the inventory's address, whatever location the WSDL advertises.
        service = client.create_service("{urn:Manager}ManagerSoapBinding", f"{base_url}/webservice/Manager")
    except (requests.RequestException, TransportError, OSError) as err:
        raise GatherError(f"cannot load the DSM SOAP WSDL from {base_url}/webservice/Manager?WSDL: {err}") from None
    try:
        sid = (service.authenticateTenant(tenantName=tenant, username=user, password=password) if tenant
               else service.authenticate(username=user, password=password))
    except Fault as err:
        raise AuthError(f"authentication failed: the DSM SOAP API refused user {user}: {err.message}") from None
    except (requests.RequestException, TransportError) as err:
        raise GatherError(f"DSM SOAP authenticate failed: {err}") from None
    events: list[Event] = []
    scanned = 0
    try:
        for item in _retrieve(service, sid, since, until):
            scanned += 1
            if item.eventID not in EVENT_IDS:
                continue
            when = item.time if item.time.tzinfo else item.time.replace(tzinfo=dt.timezone.utc)
            events.append(Event(time=when.astimezone(dt.timezone.utc).isoformat(), event_id=int(item.eventID),
                                name=item.event or "", target=item.target or "", description=item.description or "",
                                origin=f"soap:{item.systemEventID}"))
    except (Fault, requests.RequestException, TransportError) as err:
        raise GatherError(f"DSM SOAP systemEventRetrieve failed: {err}") from None
    finally:
        try:
            service.endSession(sID=sid)
        except Exception:  # noqa: BLE001 - ending the session is best effort; the events are already read
            pass
    return events, scanned


def _retrieve(service: Any, sid: str, since: dt.datetime, until: dt.datetime) -> Iterator[Any]:
    last = 0
    while True:
        page = service.systemEventRetrieve(
            timeFilter={"rangeFrom": since, "rangeTo": until, "specificTime": None, "type": "CUSTOM_RANGE"},
            hostFilter={"hostGroupID": None, "hostID": None, "securityProfileID": None, "type": "ALL_HOSTS"},
            eventIdFilter={"id": last, "operator": "GREATER_THAN"}, includeNonHostEvents=True, sID=sid)
        items = list(page.systemEvents.item) if page.systemEvents is not None else []
        yield from items
        if not page.truncated or not items:
            return
        last = max(int(i.systemEventID) for i in items)
