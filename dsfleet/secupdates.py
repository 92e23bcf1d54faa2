"""Did the last security update on a computer succeed? Judged from the DSM's ``securityUpdates`` (UPD-005).

The KB asks for a security update on the relays, then on the agents, after the upgrade. The DSM records its
outcome per computer (SDK models ``SecurityUpdates``, ``UpdateStatus``, ``Component``): the update status and
its message, whether each anti-malware component is the latest, and when the components last changed. The age
is measured against the snapshot's own time, so a re-run of a saved snapshot gives the same verdict.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .snapshot import DsmComputer, UpdateComponent


@dataclass(frozen=True)
class UpdateOutcome:
    observed: str  # every fact read, for the report
    failures: tuple[str, ...] = ()  # what is out of compliance
    unknown: tuple[str, ...] = ()  # what the DSM did not say: no evidence, unless something failed anyway
    not_applicable: str | None = None


def required(max_age_h: float) -> str:
    return (f"update status not error, every anti-malware component the latest, last change within "
            f"{max_age_h:g} h of the snapshot")


def _component(c: UpdateComponent) -> str:
    where = f" ({c.platform})" if c.platform else ""
    return f"{c.name or '(unnamed component)'}{where} {c.version or '(no version)'}"


def _when(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


def assess(computer: DsmComputer, as_of: dt.datetime, max_age_h: float) -> UpdateOutcome:
    """The computer's last security update against the KB's "run a security update after upgrading"."""
    reported = (computer.update_status, computer.update_message, computer.update_last_changed_ms)
    if all(v is None for v in reported) and not computer.am_components:
        return UpdateOutcome("no securityUpdates", unknown=("the DSM reports no securityUpdates for this computer",))
    if computer.update_status == "not-supported":
        return UpdateOutcome("update status not-supported",
                             not_applicable="the DSM reports security updates as not supported on this computer")
    if computer.am_state == "off":
        return UpdateOutcome("anti-malware off", not_applicable="anti-malware is off: no pattern to update")
    facts: list[str] = []
    failures: list[str] = []
    unknown: list[str] = []

    status = computer.update_status
    message = f": {computer.update_message}" if computer.update_message else ""
    if status is None:
        unknown.append("no securityUpdates.updateStatus.status")
    elif status == "error":
        failures.append(f"update status error{message}")
    else:
        facts.append(f"update status {status}{message}")

    stale = [_component(c) for c in computer.am_components if c.latest is False]
    undecided = [_component(c) for c in computer.am_components if c.latest is None]
    if not computer.am_components:
        unknown.append("the DSM lists no anti-malware components (securityUpdates.antiMalware)")
    if stale:
        failures.append("not the latest: " + ", ".join(stale))
    if undecided:
        unknown.append("not said whether the latest: " + ", ".join(undecided))
    fresh = len(computer.am_components) - len(stale) - len(undecided)
    if fresh:
        facts.append(f"{fresh} of {len(computer.am_components)} anti-malware components the latest")

    changed = computer.update_last_changed_ms
    if changed is None:
        unknown.append("no securityUpdates.lastChanged")
    else:
        age_h = (as_of - _when(changed)).total_seconds() / 3600
        text = f"last change {_when(changed):%Y-%m-%d %H:%M} UTC, {age_h:.1f} h before the snapshot"
        if age_h > max_age_h:
            failures.append(f"{text} (more than {max_age_h:g} h)")
        else:
            facts.append(text)
    observed = "; ".join(failures + facts + [f"unknown: {u}" for u in unknown])
    return UpdateOutcome(observed, tuple(failures), tuple(unknown))
