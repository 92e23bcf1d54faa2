"""Events of the 2025 certificate incident (seed 001): system event 2205 "Pattern Update on Agents/Appliances
Failed", whose description embeds agent event 9017 with error -24 IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE.
A 9017 with error code 11 right after an install is transient (KA-0007611) and is not a finding.

Two sources: the DSM's legacy SOAP API (``systemEventRetrieve``) or syslog files in CEF or LEEF.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
import lzma
import os
import re
import stat
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

from . import cef
from .errors import AuthError, GatherError, InputError
from .snapshot import Event, EventFacts

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


MAX_WINDOW_DAYS = 3650
_UNITS = {"m": 1, "h": 60, "d": 24 * 60}  # minutes


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``--since``: a duration back from now (``90m``, ``24h``, ``7d``) or an ISO 8601 time in the past, at
    most MAX_WINDOW_DAYS back: an empty window (``0m``, a time in the future) would pass with no evidence."""
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if match:
        minutes = int(match.group(1)) * _UNITS[match.group(2)]  # bounded before timedelta can overflow
        if not 0 < minutes <= MAX_WINDOW_DAYS * _UNITS["d"]:
            raise InputError("--since", "(option)", f"a window from 1m up to {MAX_WINDOW_DAYS}d", text)
        return now - dt.timedelta(minutes=minutes)
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError("--since", "(option)", "a duration like 90m, 24h, 7d or an ISO 8601 time", text) from None
    value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if not now - dt.timedelta(days=MAX_WINDOW_DAYS) <= value < now:
        raise InputError("--since", "(option)", f"a time in the past, at most {MAX_WINDOW_DAYS} days before now "
                         f"({now.isoformat(timespec='seconds')})", text)
    return value


# -- CEF/LEEF syslog files -------------------------------------------------------------------------------

MAX_NAMED = 5  # unparsed lines named in the snapshot; the count is complete
# Compressed rotations (logrotate's compress/compresscmd), told by their magic bytes, not their names.
_DECOMPRESS: dict[bytes, Callable[[io.BufferedReader], io.BufferedIOBase]] = {
    b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f), b"BZh": bz2.BZ2File, b"\xfd7zXZ\x00": lzma.LZMAFile}
_UNSUPPORTED = {b"\x28\xb5\x2f\xfd": "zstd-compressed: decompress it first"}
_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


class _Unreadable(Exception):
    pass


def _plain(err: BaseException) -> str:
    if isinstance(err, EOFError):
        return "compressed data cut short"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror[0].lower() + err.strerror[1:]
    return str(err) or type(err).__name__


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _candidates(root: Path, facts: EventFacts) -> list[Path]:
    """The configured file, or every file under the configured folder (links to folders are not followed)."""
    if not root.is_dir():
        return [root]
    out: list[Path] = []
    for folder, subfolders, files in os.walk(root, onerror=lambda err: facts.unreadable.append(
            f"{err.filename}: {_plain(err)}")):
        subfolders.sort()
        out += [Path(folder, name) for name in sorted(files)]
    return out


def _open(path: Path, facts: EventFacts) -> io.BufferedReader | None:
    """The file opened for reading, or None (recorded) when it is not a regular file or cannot be opened."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # opening a named pipe would block until a writer comes: never open one
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            facts.skipped.append(f"{path}: {kind}, not read")
            return None
        # O_NONBLOCK: should the file turn into a pipe after stat, the open still returns at once.
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except OSError as err:
        facts.unreadable.append(f"{path}: {_plain(err)}")
        return None


def _lines(raw: io.BufferedReader) -> io.BufferedIOBase:
    magic = raw.peek(6)[:6]
    for prefix, reason in _UNSUPPORTED.items():
        if magic.startswith(prefix):
            raise _Unreadable(reason)
    opener = next((o for prefix, o in _DECOMPRESS.items() if magic.startswith(prefix)), None)
    return opener(raw) if opener else raw


def _decode(data: bytes, facts: EventFacts) -> str:
    """UTF-8 (what the DSM sends); a line that is not is read with U+FFFD in place of the bad bytes, and counted:
    the CEF/LEEF structure and the codes EVT-001 reads are ASCII and survive."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        facts.replaced += 1
        return data.decode("utf-8", errors="replace")


def _event(record: cef.CefRecord, origin: str) -> Event | None:
    if not record.signature_id.isdigit() or int(record.signature_id) not in EVENT_IDS:
        return None
    ext = record.extension
    target = ext.get("target") or ext.get("dvchost") or ext.get("dhost") or ext.get("dvc") or record.host
    return Event(time=record.time.isoformat(), event_id=int(record.signature_id), name=record.name, target=target,
                 description=ext.get("msg", ""), origin=origin)


def _read_file(file: Path, raw: io.BufferedReader, since: dt.datetime, until: dt.datetime, facts: EventFacts) -> int:
    """Read one file into facts; return how many CEF/LEEF lines it held. A read that breaks off is recorded."""
    payload_lines = number = 0
    try:
        with raw, _lines(raw) as stream:
            for number, data in enumerate(stream, 1):
                line = _decode(data, facts)
                if not line.strip():
                    continue
                try:
                    record = cef.parse_line(line, until)
                except cef.NotCef:
                    facts.other += 1
                    continue
                except ValueError as err:  # BadPayload, or anything else the parser could not take
                    payload_lines += 1
                    facts.unparsed += 1
                    if len(facts.unparsed_lines) < MAX_NAMED:
                        facts.unparsed_lines.append(f"{file}:{number}: {err}")
                    continue
                payload_lines += 1
                event = _event(record, f"{file}:{number}")
                if event is not None and since <= record.time <= until:
                    facts.events.append(event)
    except (_Unreadable, OSError, EOFError, zlib.error, lzma.LZMAError) as err:
        facts.unreadable.append(f"{file}: {_plain(err)}" + (f" (after line {number})" if number else ""))
    return payload_lines


def read_cef(paths: tuple[Path, ...], since: dt.datetime, until: dt.datetime, facts: EventFacts) -> None:
    """Read events 2205/9017 in the window from syslog files into facts (events, counts, what was not read) and
    set facts.error when the evidence is partial: a path with no readable regular file or no CEF/LEEF line, a
    file that could not be read, a CEF/LEEF line that could not be parsed."""
    problems = []
    for root in paths:
        opened = payload_lines = 0
        skipped_before, other_before = len(facts.skipped), facts.other
        for file in _candidates(root, facts):
            raw = _open(file, facts)
            if raw is not None:
                opened += 1
                facts.files.append(str(file))
                payload_lines += _read_file(file, raw, since, until, facts)
        if not opened:
            skipped = facts.skipped[skipped_before:]
            problems.append(f"no readable log file in {root}" + (f" ({'; '.join(skipped)})" if skipped else ""))
        elif not payload_lines:
            problems.append(f"no CEF or LEEF line in {root} ({_count(facts.other - other_before, 'other line')} "
                            f"in {_count(opened, 'file')})")
        facts.scanned += payload_lines
    if facts.unreadable:
        problems.append(f"{_count(len(facts.unreadable), 'file')} could not be read (first: {facts.unreadable[0]})")
    if facts.unparsed:
        problems.append(f"{_count(facts.unparsed, 'CEF/LEEF line')} could not be parsed "
                        f"(first: {facts.unparsed_lines[0]})")
    facts.error = "; ".join(problems) or None


# -- DSM SOAP API ----------------------------------------------------------------------------------------


def read_soap(base_url: str, verify: bool | str, user: str, password: str, tenant: str | None,
              since: dt.datetime, until: dt.datetime, timeout: float) -> tuple[list[Event], int]:
    """systemEventRetrieve over the window, paged by systemEventID; the session is always ended.

    ``timeout`` bounds connect and read of every request, the WSDL load included. The password travels in the
    SOAP body, so a redirect is refused before anything is sent on, naming where it pointed; an HTTP error page
    (a gateway's 502) is reported as such rather than as zeep's "Unknown fault occured".
    """
    import zeep
    from zeep.exceptions import Error as ZeepError, Fault
    from zeep.transports import Transport

    from .dsm import http_error, refuse_redirect
    from .neterrors import plain_reason

    def refuse(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # A response hook runs before requests follows a redirect and before zeep parses the body.
        refuse_redirect(response)
        soap_fault = response.status_code == 500 and "xml" in response.headers.get("Content-Type", "")
        if response.status_code in (401, 403):  # e.g. a gateway in front of the DSM that wants credentials
            raise AuthError(f"authentication failed: {http_error(response)}")
        if response.status_code >= 400 and not soap_fault:
            raise GatherError(http_error(response))

    def why(err: BaseException) -> str:
        if isinstance(err, Fault):
            return str(err.message)
        if isinstance(err, (ZeepError, GatherError)):
            return str(err).splitlines()[0]  # zeep appends the whole body on the following lines
        return plain_reason(err)

    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace the inventory's trust
    session.verify = verify
    session.hooks["response"].append(refuse)
    wsdl = f"{base_url}/webservice/Manager?WSDL"
    try:
        client = zeep.Client(wsdl, transport=Transport(session=session, timeout=timeout, operation_timeout=timeout))
        # Bind to the inventory's address, whatever location the WSDL advertises.
        service = client.create_service("{urn:Manager}ManagerSoapBinding", f"{base_url}/webservice/Manager")
    except (requests.RequestException, ZeepError, GatherError) as err:
        raise GatherError(f"cannot load the DSM SOAP WSDL from {wsdl}: {why(err)}") from None
    try:
        sid = (service.authenticateTenant(tenantName=tenant, username=user, password=password) if tenant
               else service.authenticate(username=user, password=password))
    except Fault as err:
        raise AuthError(f"authentication failed: the DSM SOAP API refused user {user}: {why(err)}") from None
    except (requests.RequestException, ZeepError, GatherError) as err:
        raise GatherError(f"DSM SOAP authenticate failed: {why(err)}") from None
    events: list[Event] = []
    scanned = 0
    try:
        for item in _retrieve(service, sid, since, until):
            scanned += 1
            if item.eventID not in EVENT_IDS:
                continue
            if not isinstance(item.time, dt.datetime):
                raise GatherError(f"system event {item.systemEventID}: time: expected a date and time, "
                                  f"got {item.time!r}")
            when = item.time if item.time.tzinfo else item.time.replace(tzinfo=dt.timezone.utc)
            events.append(Event(time=when.astimezone(dt.timezone.utc).isoformat(), event_id=int(item.eventID),
                                name=item.event or "", target=item.target or "", description=item.description or "",
                                origin=f"soap:{item.systemEventID}"))
    except (requests.RequestException, ZeepError, GatherError) as err:
        raise GatherError(f"DSM SOAP systemEventRetrieve failed: {why(err)}") from None
    finally:
        try:
            service.endSession(sID=sid)
        except Exception:  # noqa: BLE001 - ending the session is best effort; the events are already read
            pass
    return events, scanned


def _retrieve(service: Any, sid: str, since: dt.datetime, until: dt.datetime,
              max_pages: int = 10_000) -> Iterator[Any]:
    """Every system event in the window, paged by systemEventID, without trusting the server to page well.

    Each page must hold only events after the cursor (else it repeats a page or ignores the cursor); a page that
    says ``truncated`` must hold events (else the rest could never be asked for); ``max_pages`` bounds a server
    that never stops saying ``truncated``. Each is an error: a partial event list must not pass as complete.
    """
    last = 0
    for _ in range(max_pages):
        page = service.systemEventRetrieve(
            timeFilter={"rangeFrom": since, "rangeTo": until, "specificTime": None, "type": "CUSTOM_RANGE"},
            hostFilter={"hostGroupID": None, "hostID": None, "securityProfileID": None, "type": "ALL_HOSTS"},
            eventIdFilter={"id": last, "operator": "GREATER_THAN"}, includeNonHostEvents=True, sID=sid)
        items = list(getattr(page.systemEvents, "item", None) or [])
        if not items:
            if page.truncated:
                raise GatherError(f"the DSM said the event list is truncated but returned no events after id {last}")
            return
        ids = [i.systemEventID for i in items]
        odd = [i for i in ids if not isinstance(i, int)]
        if odd:
            raise GatherError(f"an event after id {last} has no integer systemEventID (got {odd[0]!r})")
        stale = [i for i in ids if i <= last]
        if stale:
            raise GatherError(f"asked for events after id {last}, the DSM returned event {stale[0]} again (it repeats "
                              f"a page or ignores the id cursor): stopped, the event list is not complete")
        yield from items
        if not page.truncated:
            return
        last = max(ids)
    raise GatherError(f"the DSM still said the event list is truncated after {max_pages} pages "
                      f"(events after id {last} not read)")
