"""Compare a run with an earlier one: what the change fixed, what it broke, what appeared or went away.

Results are keyed by (check id, object). A result that does not pass (fail or error; waived counts as not
passing) is "failing". Categories: new failure, still failing, fixed, new pass, still passing; objects only in
one run are listed as appeared or disappeared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

FAILING = ("fail", "error", "waived")
OUTCOMES = ("pass", "fail", "error", "skip", "waived")
RESULTS_VERSION = 2  # the results.json version this dsfleet writes and reads


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
    """An earlier run: its folder (with results.json) or the results.json itself."""
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
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise InputError(str(file), f"results[{i}]", "an object with check, object and outcome", r)
        for key in ("check", "object", "outcome"):
            if not isinstance(r.get(key), str):
                raise InputError(str(file), f"results[{i}].{key}", "text", r.get(key))
        if r["outcome"] not in OUTCOMES:
            raise InputError(str(file), f"results[{i}].outcome", "one of " + ", ".join(OUTCOMES), r["outcome"])
    return results, file


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
