"""The KB's affected/fixed build table as a policy: classify a build for a platform column.

Comparisons are ``>=`` / ``<=`` on parsed builds, never string equality. The table lives in
``data/fixed_builds.yml`` with its source; this module only interprets it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from .versions import Build

COLUMNS = ("windows", "linux", "unix", "macos")


class Status(enum.Enum):
    FIXED = "fixed"
    AFFECTED = "affected"
    UNLISTED = "unlisted"  # between the affected and fixed bounds: not a build the KB names
    MANUAL = "manual review"
    NOT_AFFECTED = "not affected"
    UNKNOWN_LINE = "release line not in the KB table"
    OUT_OF_RANGE = "outside the DSVA range"

    @property
    def compliant(self) -> bool:
        return self in (Status.FIXED, Status.NOT_AFFECTED)


@dataclass(frozen=True)
class Verdict:
    build: Build
    column: str
    status: Status
    required: str  # what the KB asks for, phrased for the report's "required" column
    detail: str  # why, phrased for the report's "observed" column


@dataclass(frozen=True)
class _Row:
    kind: str
    affected_max: Build | None = None
    fixed_min: Build | None = None


def platform_column(platform: str) -> str | None:
    """Map a DSM ``platform`` string to the KB column, or None when it cannot be told.

    Examples: ``Microsoft Windows Server 2022 (64 bit)  Build 20348`` → windows;
    ``Red Hat Enterprise 9 (64 bit) (5.14...)`` → linux; ``Solaris 11 ...`` → unix.
    """
    text = platform.lower()
    if "windows" in text:
        return "windows"
    if re.search(r"\b(solaris|aix|hp-ux)\b", text):
        return "unix"
    if re.search(r"\b(mac ?os|os x|darwin)\b", text):
        return "macos"
    linux = ("linux", "red hat", "centos", "ubuntu", "debian", "suse", "oracle", "amazon", "rocky",
             "alma", "cloudlinux", "miracle")
    if any(word in text for word in linux):
        return "linux"
    return None


class BuildPolicy:
    def __init__(self, table: dict[str, Any]) -> None:
        self.source: dict[str, str] = dict(table["source"])
        self._lines: dict[str, dict[str, _Row]] = {}
        for line, columns in table["lines"].items():
            self._lines[str(line)] = {col: _row(spec) for col, spec in columns.items()}
        dsva = table["dsva"]
        self.dsva_column: str = dsva["column"]
        self.dsva_line: str = str(dsva["line"])
        self.dsva_min = Build.parse(dsva["min"])
        self.dsva_max = Build.parse(dsva["max"])

    @classmethod
    def load(cls) -> "BuildPolicy":
        text = resources.files("dsfleet").joinpath("data/fixed_builds.yml").read_text(encoding="utf-8")
        return cls(yaml.safe_load(text))

    @property
    def citation(self) -> str:
        s = self.source
        return f"{s['publisher']} {s['reference']} (updated {s['updated']}): {s['url']}"

    def lines(self) -> dict[str, dict[str, _Row]]:
        return self._lines

    def classify(self, build: Build, column: str) -> Verdict:
        """Classify an agent or relay build against the KB row for its release line and platform."""
        row = self._lines.get(build.line, {}).get(column)
        if row is None or row.kind == "none":
            known = ", ".join(self._lines)
            return Verdict(build, column, Status.UNKNOWN_LINE,
                           required=f"a fixed build of a release line in the KB ({known})",
                           detail=f"{build} ({column}): release line {build.line} has no {column} row in the KB")
        if row.kind == "not_affected":
            return Verdict(build, column, Status.NOT_AFFECTED, required="not affected per KB",
                           detail=f"{build} ({column}): release line {build.line} is not affected")
        if row.kind == "manual":
            return Verdict(build, column, Status.MANUAL,
                           required="contact Trend Micro support (KB: depends on configuration)",
                           detail=f"{build} ({column}): 10.0 is affected depending on configuration")
        assert row.affected_max is not None and row.fixed_min is not None
        required = f">= {row.fixed_min}"
        if build >= row.fixed_min:
            return Verdict(build, column, Status.FIXED, required, f"{build} ({column}) is a fixed build")
        if build <= row.affected_max:
            return Verdict(build, column, Status.AFFECTED, required,
                           f"{build} ({column}) is affected (<= {row.affected_max})")
        return Verdict(build, column, Status.UNLISTED, required,
                       f"{build} ({column}) lies between the last affected ({row.affected_max}) and the first "
                       f"fixed ({row.fixed_min}) build: not a build the KB lists as fixed")

    def classify_dsva(self, build: Build) -> Verdict:
        """A DSVA uses the Linux column and, on 20.0, only builds in [dsva_min, dsva_max] exist for it."""
        verdict = self.classify(build, self.dsva_column)
        if not verdict.status.compliant or build.line != self.dsva_line:
            return verdict
        required = f"{self.dsva_min} .. {self.dsva_max} (DSVA-supported range)"
        if self.dsva_min <= build <= self.dsva_max:
            return Verdict(build, self.dsva_column, Status.FIXED, required,
                           f"{build} is fixed and within the DSVA range")
        return Verdict(build, self.dsva_column, Status.OUT_OF_RANGE, required,
                       f"{build} is outside the agent builds a DSVA can take")


def _row(spec: dict[str, Any]) -> _Row:
    kind = spec["kind"]
    if kind == "range":
        return _Row(kind, Build.parse(spec["affected_max"]), Build.parse(spec["fixed_min"]))
    if kind not in ("manual", "not_affected", "none"):
        raise ValueError(f"fixed_builds.yml: unknown kind {kind!r}")
    return _Row(kind)
