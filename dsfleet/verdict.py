"""The run's verdict, decided once and shown by every writer (results.json, summary.html, summary.md, the
terminal, pytest-html): EVIDENCE INCOMPLETE when any result errored (something could not be read), else NOT
COMPLIANT when any result failed, else COMPLIANT. A waived result is neither: it is reported, never passed.
The verdict agrees with the exit code (``dsfleet.fixtures.report.exit_code``: 6, 1, 0).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from .catalog import SEVERITIES

COMPLIANT, NOT_COMPLIANT, EVIDENCE_INCOMPLETE = "COMPLIANT", "NOT COMPLIANT", "EVIDENCE INCOMPLETE"
# The outcomes counted per severity in the banner, worst first.
COUNTED = ("error", "fail", "waived")


@dataclass(frozen=True)
class Verdict:
    status: str
    # severity → outcome → count, for the outcomes in COUNTED (only non-zero entries)
    by_severity: dict[str, dict[str, int]] = field(default_factory=dict)
    results: int = 0

    @property
    def key(self) -> str:
        """A stable token for CSS classes and label keys: compliant, not-compliant, evidence-incomplete."""
        return self.status.lower().replace(" ", "-")

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "by_severity": self.by_severity, "results": self.results}


def judge(results: Iterable[dict[str, Any]]) -> Verdict:
    """The verdict of a run's results. No result at all is not a compliant run: nothing was judged."""
    outcomes: Counter[str] = Counter()
    by_severity: dict[str, Counter[str]] = {s: Counter() for s in SEVERITIES}
    for r in results:
        outcomes[r["outcome"]] += 1
        if r["outcome"] in COUNTED:
            by_severity.setdefault(r["severity"], Counter())[r["outcome"]] += 1
    total = sum(outcomes.values())
    status = (EVIDENCE_INCOMPLETE if outcomes["error"] or not total else NOT_COMPLIANT if outcomes["fail"]
              else COMPLIANT)
    return Verdict(status, {s: {o: c[o] for o in COUNTED if c[o]} for s, c in by_severity.items() if c}, total)
