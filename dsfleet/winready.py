"""Windows readiness for a fixed agent build: trusted roots and Windows updates (KB KA-0016311, Windows notes).

Parses ``certutil -store Root`` and ``Get-HotFix`` on their real output formats, and judges them against the
cited table in ``data/windows_readiness.yml``. Both commands are localized (labels, dates, the closing
line): thumbprints and KB numbers are found by their shape, never by a label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from .parsers import UnexpectedOutput, _quote

CERTUTIL_ROOT = "certutil -store Root"
HOTFIX = "powershell -NoProfile -NonInteractive -Command Get-HotFix"

# "================ Certificate 0 ================" ("証明書 0", "Zertifikat 0"): one block per certificate.
_CERT_BLOCK = re.compile(r"^=+[ \t]+\S.*?[ \t]\d+[ \t]+=+[ \t]*\r?$", re.M)
# "Cert Hash(sha1): cdd4eeae...": 20 bytes of hex, contiguous or as space-separated pairs (older Windows).
# The serial number comes first in a block and may also be 20 bytes: the block's last such line is the hash.
_SHA1_LINE = re.compile(r"[:：][ \t]*((?:[0-9a-fA-F]{2} ?){19}[0-9a-fA-F]{2})[ \t]*\r?$", re.M)
_KB = re.compile(r"\bKB\d{6,8}\b", re.I)


def parse_certutil_store(stdout: str, rc: int | None) -> list[str]:
    """The SHA-1 thumbprints (upper case, no spaces) of every certificate ``certutil -store`` listed."""
    if rc != 0:
        raise UnexpectedOutput(f"certutil -store failed (exit {rc}): {_quote(stdout) or 'no output'}")
    blocks = _CERT_BLOCK.split(stdout)[1:]
    if not blocks:
        raise UnexpectedOutput(f"no certificate block in certutil's output: {_quote(stdout) or 'no output'}")
    out = []
    for n, block in enumerate(blocks):
        hashes = _SHA1_LINE.findall(block)
        if not hashes:
            raise UnexpectedOutput(f"certificate {n} of certutil's output has no SHA-1 hash line: {_quote(block)}")
        out.append(hashes[-1].replace(" ", "").upper())
    return out


def parse_hotfixes(stdout: str, rc: int | None) -> set[str]:
    """The KB numbers Get-HotFix listed (its table's header and dates are localized; KB numbers are not)."""
    if rc != 0:
        raise UnexpectedOutput(f"Get-HotFix failed (exit {rc}): {_quote(stdout) or 'no output'}")
    found = {kb.upper() for kb in _KB.findall(stdout)}
    if not found:
        raise UnexpectedOutput(f"no KB number in Get-HotFix's output: {_quote(stdout) or 'no output'}")
    return found


_BUILD = re.compile(r"\bBuild[ \t]+(\d+)", re.I)


def windows_build(platform: str) -> int | None:
    """The Windows build number of a DSM platform string ("Microsoft Windows Server 2022 (64 bit)  Build 20348")."""
    m = _BUILD.search(platform)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Root:
    name: str
    sha1: str
    required: bool  # False: the public sources leave open whether it is needed
    why: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Update:
    kbs: tuple[str, ...]  # any one satisfies
    purpose: str
    superseded: bool  # a later update replaces it, so Get-HotFix may no longer list it

    def label(self) -> str:
        return f"{' or '.join(self.kbs)} ({self.purpose})"


@dataclass(frozen=True)
class WindowsRow:
    name: str
    builds: tuple[int, ...]
    updates: tuple[Update, ...]
    sources: tuple[str, ...]
    open: str | None


@dataclass
class Readiness:
    """One host's judgement: what is missing for certain, and what only a person can decide."""

    windows: str
    missing: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    citations: list[str] = field(default_factory=list)


class ReadinessPolicy:
    def __init__(self, table: dict[str, Any]) -> None:
        self.retrieved = str(table["retrieved"])
        self.sources: dict[str, str] = dict(table["sources"])
        self.roots = [Root(r["name"], r["sha1"].upper(), r["requirement"] == "required", r["why"],
                           tuple(r["source"])) for r in table["roots"]]
        self.rows = [WindowsRow(w["name"], tuple(w["builds"]),
                                tuple(Update(tuple(u["kbs"]), u["purpose"], bool(u["superseded"]))
                                      for u in w["all_of"]), tuple(w["source"]), w.get("open"))
                     for w in table["windows"]]

    @classmethod
    def load(cls) -> "ReadinessPolicy":
        text = resources.files("dsfleet").joinpath("data/windows_readiness.yml").read_text(encoding="utf-8")
        return cls(yaml.safe_load(text))

    def row(self, build: int) -> WindowsRow | None:
        return next((r for r in self.rows if build in r.builds), None)

    def cite(self, keys: tuple[str, ...] | list[str]) -> list[str]:
        return [self.sources[k] for k in keys]

    def judge(self, build: int, roots: list[str], hotfixes: set[str]) -> Readiness:
        """Missing required roots and updates are findings; open ones and superseded updates are for review."""
        row = self.row(build)
        if row is None:
            return Readiness(f"Windows build {build}", review=[f"Windows build {build} is not in the table"],
                             citations=self.cite(["ka-0013628", "ms-kb4472027"]))
        result = Readiness(f"{row.name} (build {build})", citations=self.cite(row.sources))
        if row.open:
            result.review.append(row.open)
        present = set(roots)
        for root in self.roots:
            if root.sha1 in present:
                continue
            text = f"root {root.name} ({root.sha1}) not in LocalMachine\\Root"
            (result.missing if root.required else result.review).append(
                text if root.required else f"{text}: {root.why}")
            result.citations += [c for c in self.cite(root.sources) if c not in result.citations]
        for update in row.updates:
            if any(kb in hotfixes for kb in update.kbs):
                continue
            if update.superseded:
                result.review.append(f"{update.label()} not listed: a later update may replace it")
            else:
                result.missing.append(f"update {update.label()} not installed")
        return result
