"""results.json (its writer and its reader), and the comparison of a run with an earlier one: what the change
fixed, what it broke, what appeared or went away.

Results are keyed by (check id, object). A result that does not pass (fail or error; waived counts as not
passing) is "failing". Categories: new failure, still failing, fixed, new pass, still passing; objects only in
one run are listed as appeared or disappeared.

On disk (version 3) each check's catalog text is written once, under ``checks``; a result carries only what is
its own. In memory every result has its check's text too (the same string objects, not copies): a reader gets
them back from :func:`load_doc` / :func:`load_results`, for version 3 and for the versions before it alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

FAILING = ("fail", "error", "waived")
OUTCOMES = ("pass", "fail", "error", "skip", "waived")
RESULTS_VERSION = 3  # the results.json version this dsfleet writes; it reads every version from 1
# A check's catalog text as results.json's "checks" holds it (the catalog's own names), and the names a result
# has it under in memory and in version 2: "guidance" is the check's remediation text; a result's "remediation"
# is its own remedy followed by that text when it does not pass, else empty.
CATALOG = ("title", "severity", "source", "remediation")
PER_RESULT = {"title": "title", "severity": "severity", "source": "source", "guidance": "remediation"}
SHARED = frozenset(PER_RESULT) | {"remediation"}  # left out of each result on disk


@dataclass
class Diff:
    baseline: str
    new_failures: list[dict[str, Any]] = field(default_factory=list)
    still_failing: list[dict[str, Any]] = field(default_factory=list)
    fixed: list[dict[str, Any]] = field(default_factory=list)
    new_passes: list[dict[str, Any]] = field(default_factory=list)
    appeared: list[tuple[str, str]] = field(default_factory=list)
    disappeared: list[tuple[str, str]] = field(default_factory=list)

    def regressions(self) -> list[dict[str, Any]]:
        """New failures that are not waived: what --fail-on new gates on."""
        return [r for r in self.new_failures if r["outcome"] != "waived"]

    def newly_waived(self) -> list[dict[str, Any]]:
        return [r for r in self.new_failures if r["outcome"] == "waived"]

    def as_doc(self) -> dict[str, Any]:
        """The diff as results.json writes it ("baseline"): each result as check, object and outcome."""
        def key(r: dict[str, Any]) -> dict[str, Any]:
            return {"check": r["check"], "object": r["object"], "outcome": r["outcome"]}

        new, newly_waived = self.regressions(), self.newly_waived()
        counts = dict(self.counts(), **{"new failures": len(new), "newly waived": len(newly_waived)})
        return {"baseline": self.baseline, "counts": counts, "new_failures": [key(r) for r in new],
                "newly_waived": [key(r) for r in newly_waived], "still_failing": [key(r) for r in self.still_failing],
                "fixed": [key(r) for r in self.fixed], "new_passes": [key(r) for r in self.new_passes],
                "appeared": [list(k) for k in self.appeared], "disappeared": [list(k) for k in self.disappeared]}

    def counts(self) -> dict[str, int]:
        return {"new failures": len(self.new_failures), "still failing": len(self.still_failing),
                "fixed": len(self.fixed), "new passes": len(self.new_passes), "appeared": len(self.appeared),
                "disappeared": len(self.disappeared)}


def load_results(path: Path) -> tuple[list[dict[str, Any]], Path]:
    """An earlier run's results: its folder (with results.json) or the results.json itself."""
    doc, file = load_doc(path)
    return doc["results"], file


def load_doc(path: Path) -> tuple[dict[str, Any], Path]:
    """An earlier run's whole results.json (its folder or the file), checked; each result carries its check's
    catalog text again (version 3 writes that once per check)."""
    file = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(str(file), "(file)", "the results.json of an earlier run (or its folder)", err.strerror) \
            from None
    except ValueError as err:
        raise InputError(str(file), "(file)", "results JSON written by dsfleet", str(err)) from None
    if not isinstance(data, dict) or data.get("schema") != "dsfleet-results":
        raise InputError(str(file), "schema", "'dsfleet-results'", data.get("schema") if isinstance(data, dict) else None)
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= RESULTS_VERSION:
        raise InputError(str(file), "version", f"a results version from 1 to {RESULTS_VERSION} (this dsfleet reads "
                         f"up to {RESULTS_VERSION}; a newer one needs a newer dsfleet)", version)
    results = data.get("results")
    if not isinstance(results, list):
        raise InputError(str(file), "results", "a list of results", type(results).__name__)
    checks = _checks(data.get("checks", {}), str(file))
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise InputError(str(file), f"results[{i}]", "an object with check, object and outcome", r)
        for key in ("check", "object", "outcome"):
            if not isinstance(r.get(key), str):
                raise InputError(str(file), f"results[{i}].{key}", "text", r.get(key))
        if r["outcome"] not in OUTCOMES:
            raise InputError(str(file), f"results[{i}].outcome", "one of " + ", ".join(OUTCOMES), r["outcome"])
        info = checks.get(r["check"])
        if info is not None and version >= 3:
            _expand(r, info)
    return data, file


def _checks(block: Any, file: str) -> dict[str, dict[str, str]]:
    """results.json's "checks": per check id, its catalog text (every field text)."""
    if not isinstance(block, dict):
        raise InputError(file, "checks", "an object: per check id, its title, severity, source and remediation",
                         type(block).__name__)
    for cid, info in block.items():
        if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in CATALOG):
            raise InputError(file, f"checks.{cid}", "an object with text " + ", ".join(CATALOG), info)
    return block


def _expand(r: dict[str, Any], info: dict[str, str]) -> None:
    """A result as version 2 wrote it and as a run holds it: with its check's text (references, not copies),
    unless it carries its own (see write_results)."""
    if "remediation" in r:
        return  # written whole
    for key, name in PER_RESULT.items():
        r[key] = info[name]
    r["remediation"] = remediation(r.get("remedy") or "", info["remediation"], r["outcome"])


def remediation(remedy: str, guidance: str, outcome: str) -> str:
    """A result's remediation: its object's own fix, then the check's general guidance; none for a result that
    needs no fix."""
    return " ".join(x for x in (remedy, guidance) if x) if outcome in FAILING else ""


def write_results(path: Path, doc: dict[str, Any]) -> None:
    """results.json as it is encoded: the run's facts, each check's catalog text once ("checks", the checks the
    results name), then one result per line with only what is its own.

    Never one string of the whole file; each line is encoded by json's C encoder (an indented ``json.dump``
    takes its pure-Python one). ``doc["results"]`` are results as a run holds them (with their check's text);
    ``doc["version"]`` is the caller's (:data:`RESULTS_VERSION` for this shape).
    """
    rows: list[dict[str, Any]] = doc["results"]
    checks: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["check"] not in checks and all(key in r for key in PER_RESULT):
            checks[r["check"]] = {name: r[key] for key, name in PER_RESULT.items()}
    encode = json.JSONEncoder(ensure_ascii=False).encode
    with path.open("w", encoding="utf-8") as out:
        out.write("{\n")
        for key, value in doc.items():
            if key not in ("results", "checks"):
                out.write(f" {encode(key)}: {encode(value)},\n")
        if checks:
            out.write(f' "checks": {encode(dict(sorted(checks.items())))},\n')
        out.write(' "results": [')
        for i, r in enumerate(rows):
            # A result whose text differs from its check's first (a merge of shards run by other versions or in
            # other languages) is written whole, so that reading it back gives each its own.
            shared = checks.get(r["check"])
            same = shared is not None and all(r.get(key) == shared[name] for key, name in PER_RESULT.items())
            own = {k: v for k, v in r.items() if k not in SHARED} if same else r
            out.write(("\n  " if i == 0 else ",\n  ") + encode(own))
        out.write("\n ]\n}\n")


def compare(current: list[dict[str, Any]], earlier: list[dict[str, Any]], baseline: str) -> Diff:
    diff = Diff(baseline=baseline)
    before = {(r["check"], r["object"]): r for r in earlier}
    now = {(r["check"], r["object"]): r for r in current}
    for key, r in sorted(now.items()):
        old = before.get(key)
        failing = r["outcome"] in FAILING
        if old is None:
            diff.appeared.append(key)
            if failing:
                diff.new_failures.append(r)
            continue
        was_failing = old["outcome"] in FAILING
        if failing and not was_failing:
            diff.new_failures.append(r)
        elif failing:
            diff.still_failing.append(r)
        elif was_failing and r["outcome"] == "pass":
            diff.fixed.append(r)
        elif r["outcome"] == "pass" and old["outcome"] != "pass":
            diff.new_passes.append(r)
    diff.disappeared = sorted(k for k in before if k not in now)
    return diff
