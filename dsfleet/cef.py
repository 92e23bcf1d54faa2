"""Syslog lines carrying a CEF or LEEF payload, as the DSM forwards events and collectors write them to files.

A line is ``[octet count] [<PRI>] [header] CEF:...`` (or ``LEEF:...``). The header is whatever precedes the
payload marker; the forms read are those the RFCs and common collectors emit:

- RFC 5424: ``<134>1 2025-02-14T03:17:30.123Z host app procid msgid [sd...] CEF:...`` (``-`` for nil values);
- an ISO 8601 time then the host, the DSM's own form and rsyslog's RFC 3339 file format:
  ``<134>2022-02-14T03:17:30-08:00 host CEF:...``;
- RFC 3164: ``<134>Feb 14 03:17:30 host CEF:...``, with or without PRI (rsyslog's default file format), with
  or without a host (``<134>Feb 14 03:17:30 CEF:...``), with a year before or after the time
  (``Feb 14 2025 03:17:30``, ``Feb 14 03:17:30 2025``) and with fractions of a second (``03:17:30.123``);
- no header at all, when the extension carries the receipt time ``rt``.

The host is everything between the time and the payload, taken whole: a DSM log source identifier such as
``DeepSec Logs`` is one host. CEF headers split on unescaped pipes (``\\|``, ``\\\\``), the extension's
``key=value`` values may hold spaces (``\\=``, ``\\\\``, ``\\n``, ``\\r`` are escapes). LEEF 1.0 attributes are
tab-separated; LEEF 2.0 names its delimiter in a sixth header field (``^``, ``x09``, ``0x5E``), which Deep
Security leaves out (then tab).

:func:`parse_line` raises :class:`NotCef` for a line without a payload (another program's line) and
:class:`BadPayload` for a line that carries ``CEF:`` or ``LEEF:`` but cannot be read: the caller must count the
latter as missing evidence, never skip it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_MARKER = re.compile(r"(?<![A-Za-z0-9_])(CEF|LEEF):")
# RFC 6587 octet counting left in front of the PRI by a TCP receiver, the PRI, and the space some senders put
# after it (syslog-ng and Splunk Connect for Syslog test both).
_FRAME = re.compile(r"^(?:\d+ (?=<))?(?:<\d{1,3}>)? ?")
_SD = r'(?:-|(?:\[[^\]"]*(?:"(?:[^"\\]|\\.)*"[^\]"]*)*\])+)'
_RFC5424 = re.compile(r"1 (?P<iso>-|\S+) (?P<host>\S+) \S+ \S+ \S+ " + _SD)
_ISO = re.compile(r"(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)(?: (?P<host>.*))?")
# A year 2000-2099 right after the time is taken as a year, as rsyslog's detect.YearAfterTimestamp does: a host
# named like a year is less likely than a device that writes one.
_BSD = re.compile(r"(?P<month>[A-Za-z]{3}) {1,2}(?P<day>\d{1,2})(?: (?P<year>\d{4}))? "
                  r"(?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{0,9}))?(?: (?P<year2>20\d\d)(?= |$))?:?"
                  r"(?: (?P<host>.*))?")
_MONTHS = {m: n for n, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                       "dec"), 1)}
_KEY = re.compile(r"(?:^|(?<= ))([A-Za-z0-9_.\[\]-]+)=")
_VALUE_ESCAPES = {"\\=": "=", "\\\\": "\\", "\\n": "\n", "\\r": "\r"}
_LEEF_DELIMITER = re.compile(r"(?:0?x(?P<hex>[0-9A-Fa-f]{1,4})|(?P<char>[^|=]?))\|")


@dataclass(frozen=True)
class CefRecord:
    """One CEF or LEEF event (LEEF's ``name`` and ``sev`` attributes fill ``name`` and ``severity``)."""

    time: dt.datetime  # UTC
    host: str  # the syslog header's host ("" when the header has none)
    vendor: str
    product: str
    version: str
    signature_id: str  # CEF Signature ID, LEEF EventID
    name: str
    severity: str
    extension: dict[str, str]


class NotCef(ValueError):
    """The line carries no CEF or LEEF payload."""


class BadPayload(ValueError):
    """The line carries CEF or LEEF that cannot be read; the message says why."""


def _header_fields(text: str, count: int, form: str) -> tuple[list[str], str]:
    """Split ``count`` fields on unescaped pipes (``\\|``, ``\\\\`` are escapes); return them and the rest."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text) and len(fields) < count:
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "|\\":
            current.append(text[i + 1])
            i += 2
            continue
        if ch == "|":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if len(fields) < count:
        raise BadPayload(f"the {form} header has {len(fields)} of {count} pipe-separated fields")
    return fields, text[i:]


def parse_extension(text: str) -> dict[str, str]:
    keys = list(_KEY.finditer(text))
    out = {}
    for n, match in enumerate(keys):
        end = keys[n + 1].start() - 1 if n + 1 < len(keys) else len(text)
        raw = text[match.end():end]
        out[match.group(1)] = re.sub(r"\\[=\\nr]", lambda m: _VALUE_ESCAPES[m.group(0)], raw).strip()
    return out


def _leef_attributes(text: str, delimiter: str) -> dict[str, str]:
    """``key=value`` pairs between delimiters; a piece without ``=`` belongs to the value before it."""
    out: dict[str, str] = {}
    last = None
    for piece in text.split(delimiter):
        key, sep, value = piece.partition("=")
        if sep and key.strip():
            last = key.strip()
            out[last] = value.rstrip()
        elif last is not None and piece:
            out[last] += delimiter + piece.rstrip()
    return out


def _cef(payload: str) -> tuple[list[str], dict[str, str]]:
    fields, rest = _header_fields(payload, 7, "CEF")
    if not fields[0].isdigit():
        raise BadPayload(f"CEF version {fields[0]!r} is not a number")
    return fields[1:], parse_extension(rest)


def _leef(payload: str) -> tuple[list[str], dict[str, str]]:
    fields, rest = _header_fields(payload, 5, "LEEF")
    version = fields[0].strip()
    if version not in ("1.0", "2.0", "1", "2"):
        raise BadPayload(f"LEEF version {version!r} is not 1.0 or 2.0")
    delimiter = "\t"
    named = _LEEF_DELIMITER.match(rest) if version.startswith("2") else None
    if named:  # LEEF 2.0's delimiter field; Deep Security omits it and uses tab
        delimiter = chr(int(named["hex"], 16)) if named["hex"] else named["char"] or "\t"
        rest = rest[named.end():]
    attributes = _leef_attributes(rest, delimiter)
    header = fields[1:5] + [attributes.get("name", ""), attributes.get("sev", "")]
    return header, attributes


def _bsd_time(match: re.Match[str], now: dt.datetime) -> dt.datetime:
    """RFC 3164 time: no zone (taken as UTC); without a year, the year that does not put it in the future."""
    month = _MONTHS.get(match["month"].lower())
    if month is None:
        raise BadPayload(f"{match['month']!r} is not a month")
    hour, minute, second = (int(x) for x in match["time"].split(":"))
    micro = int((match["fraction"] or "0").ljust(6, "0")[:6])
    year = match["year"] or match["year2"]
    try:
        value = dt.datetime(int(year or now.year), month, int(match["day"]), hour, minute, second, micro,
                            tzinfo=dt.timezone.utc)
        if year is None and value > now + dt.timedelta(days=1):
            value = value.replace(year=now.year - 1)
    except ValueError as err:
        raise BadPayload(f"time {match.group(0)!r} is not valid: {err}") from None
    return value


def _iso_time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadPayload(f"time {text!r} is not valid") from None
    return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _header(text: str, now: dt.datetime) -> tuple[dt.datetime | None, str]:
    """(time, host) of the syslog header before the payload; time is None when the header has none."""
    rest = _FRAME.sub("", text, count=1).rstrip().removesuffix("\ufeff").rstrip()
    if not rest:
        return None, ""
    match = _RFC5424.fullmatch(rest)
    if match:  # "-" is RFC 5424's nil value
        return (None if match["iso"] == "-" else _iso_time(match["iso"])), ("" if match["host"] == "-" else
                                                                             match["host"])
    match = _ISO.fullmatch(rest)
    if match:
        return _iso_time(match["iso"]), (match["host"] or "").strip()
    match = _BSD.fullmatch(rest)
    if match:
        return _bsd_time(match, now), (match["host"] or "").strip()
    raise BadPayload(f"syslog header {rest!r} is not RFC 5424, RFC 3164 or an ISO 8601 time and host")


def _receipt_time(extension: dict[str, str]) -> dt.datetime | None:
    """``rt`` in milliseconds since the epoch, when present (it wins over the syslog header's time)."""
    raw = extension.get("rt", "")
    if not raw.isdigit():
        return None
    try:
        return dt.datetime.fromtimestamp(int(raw) / 1000, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise BadPayload(f"rt={raw} is not a time") from None


def parse_line(line: str, now: dt.datetime | None = None) -> CefRecord:
    """One syslog line with a CEF or LEEF payload. Raises NotCef (no payload) or BadPayload (unreadable one)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    line = line.rstrip("\r\n").lstrip("\ufeff")
    marker = _MARKER.search(line)
    if marker is None:
        raise NotCef("no CEF or LEEF payload")
    payload = line[marker.end():]
    header, extension = _cef(payload) if marker.group(1) == "CEF" else _leef(payload)
    when, host = _header(line[:marker.start()], now)
    when = _receipt_time(extension) or when
    if when is None:
        raise BadPayload("no time: no syslog header time and no rt")
    return CefRecord(time=when, host=host, vendor=header[0], product=header[1], version=header[2],
                     signature_id=header[3], name=header[4], severity=header[5], extension=extension)
