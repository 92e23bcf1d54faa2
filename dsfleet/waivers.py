"""Waivers: documented, approved, expiring exceptions. A waived failure is reported as waived with its
justification — never as a pass. An expired waiver no longer applies and is itself reported; a waiver that
matches nothing is reported; a malformed file stops the run naming the file, the entry and the field.

File format (YAML)::

    waivers:
      - check: PRT-003                # a catalog id
        object: "WIN-APP-*@esx-0?"    # shell-style pattern on the result's object
        justification: decommissioned in change CHG-1234, powered off until removal
        approver: j.tanaka
        ticket: CHG-1234
        expires: 2026-12-31           # UTC date (or date-time); from then on the waiver no longer applies
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import yamlio
from .errors import InputError

FIELDS = ("check", "object", "justification", "approver", "ticket", "expires")


@dataclass(frozen=True)
class Waiver:
    index: int
    check: str
    object: str
    justification: str
    approver: str
    ticket: str
    expires: dt.datetime  # UTC

    def matches(self, check: str, obj: str) -> bool:
        return self.check == check and fnmatch.fnmatchcase(obj, self.object)

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expires

    def describe(self) -> str:
        return (f"waived until {self.expires.date().isoformat()} by {self.approver} ({self.ticket}): "
                f"{self.justification}")

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "object": self.object, "justification": self.justification,
                "approver": self.approver, "ticket": self.ticket, "expires": self.expires.isoformat()}


def _expiry(value: Any, file: str, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(file, where, "a UTC date (YYYY-MM-DD) or date-time", value) from None
    else:
        raise InputError(file, where, "a UTC date (YYYY-MM-DD) or date-time", value)
    return when.astimezone(dt.timezone.utc) if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def load(path: Path, known_checks: set[str]) -> list[Waiver]:
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(file, "(file)", "a readable waivers file", err.strerror) from None
    data = yamlio.load(raw, file)
    if not isinstance(data, dict) or not isinstance(data.get("waivers"), list):
        raise InputError(file, "waivers", "a list of waivers")
    out = []
    for i, entry in enumerate(data["waivers"]):
        where = f"waivers[{i}]"
        if not isinstance(entry, dict):
            raise InputError(file, where, "a mapping with " + ", ".join(FIELDS), entry)
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise InputError(file, f"{where}.{unknown[0]}", "no such field (known: " + ", ".join(FIELDS) + ")")
        for name in FIELDS:
            value = entry.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise InputError(file, f"{where}.{name}", "a value (required)")
            if name != "expires" and not isinstance(value, str):
                raise InputError(file, f"{where}.{name}", "text", value)
        if entry["check"] not in known_checks:
            raise InputError(file, f"{where}.check", "a check id from the catalog", entry["check"])
        out.append(Waiver(index=i, check=entry["check"], object=entry["object"],
                          justification=entry["justification"].strip(), approver=entry["approver"],
                          ticket=entry["ticket"], expires=_expiry(entry["expires"], file, f"{where}.expires")))
    return out


def find(waivers: list[Waiver], check: str, obj: str) -> Waiver | None:
    return next((w for w in waivers if w.matches(check, obj)), None)
