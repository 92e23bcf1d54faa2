"""Syslog lines carrying CEF, as the DSM forwards events: headers RFC 5424, RFC 3164 and the DSM's own form
(``<134>2022-02-14T03:17:30-08:00 host CEF:0|...``), the CEF header with ``\\|`` and ``\\\\`` escapes, and the
extension's ``key=value`` pairs (values may hold spaces; ``\\=``, ``\\\\``, ``\\n``, ``\\r`` are escapes).
LEEF lines are counted as not parsed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_PRI = r"(?:<(?P<pri>\d{1,3})>)?"
_RFC5424 = re.compile(_PRI + r"\d{1,2} (?P<ts>\S+) (?P<host>\S+) \S+ \S+ \S+ (?:-|(?:\[.*?\])+) ?(?P<msg>.*)$")
_ISO = re.compile(_PRI + r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})) "
                  r"(?P<host>\S+) (?P<msg>.*)$")
_RFC3164 = re.compile(_PRI + r"(?P<ts>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) (?P<host>\S+) (?P<msg>.*)$")
_KEY = re.compile(r"(?:^|(?<= ))([A-Za-z0-9_.\[\]-]+)=")
_VALUE_ESCAPES = {"\\=": "=", "\\\\": "\\", "\\n": "\n", "\\r": "\r"}


@dataclass(frozen=True)
class CefRecord:
    time: dt.datetime  # UTC
    host: str  # the syslog header's host
    vendor: str
    product: str
    version: str
    signature_id: str
    name: str
    severity: str
    extension: dict[str, str]


class NotCef(ValueError):
    pass


def _header_fields(text: str) -> list[str]:
    """Split the CEF header on unescaped pipes: 7 fields, then the extension (which may contain pipes)."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text) and len(fields) < 7:
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
    if len(fields) < 7:
        raise NotCef("CEF header needs 7 pipe-separated fields")
    fields.append(text[i:])
    return fields


def parse_extension(text: str) -> dict[str, str]:
    keys = list(_KEY.finditer(text))
    out = {}
    for n, match in enumerate(keys):
        end = keys[n + 1].start() - 1 if n + 1 < len(keys) else len(text)
        raw = text[match.end():end]
        out[match.group(1)] = re.sub(r"\\[=\\nr]", lambda m: _VALUE_ESCAPES[m.group(0)], raw).strip()
    return out


def _timestamp(text: str, now: dt.datetime) -> dt.datetime:
    if text[0].isdigit():
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    # RFC 3164 has no year and no zone: take UTC, and the year that does not put the line in the future.
    value = dt.datetime.strptime(f"{now.year} {' '.join(text.split())}", "%Y %b %d %H:%M:%S").replace(
        tzinfo=dt.timezone.utc)
    return value.replace(year=now.year - 1) if value > now + dt.timedelta(days=1) else value


def parse_line(line: str, now: dt.datetime | None = None) -> CefRecord:
    """One syslog line with a CEF payload; raises NotCef for anything else (LEEF included)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    line = line.rstrip("\r\n")
    for pattern in (_RFC5424, _ISO, _RFC3164):
        match = pattern.match(line)
        if match and "CEF:" in match.group("msg"):
            break
    else:
        raise NotCef("not a syslog line with a CEF payload")
    msg = match.group("msg")
    fields = _header_fields(msg[msg.index("CEF:") + 4:])
    extension = parse_extension(fields[7])
    when = _timestamp(match.group("ts"), now)
    if "rt" in extension and extension["rt"].isdigit():  # receipt time, ms since the epoch, when present
        when = dt.datetime.fromtimestamp(int(extension["rt"]) / 1000, dt.timezone.utc)
    return CefRecord(time=when, host=match.group("host"), vendor=fields[1], product=fields[2], version=fields[3],
                     signature_id=fields[4], name=fields[5], severity=fields[6], extension=extension)
