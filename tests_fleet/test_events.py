"""Events of the 2025 certificate incident (seed 001): no 2205, no 9017 with -24, per computer."""

import re

import pytest

from dsfleet.events import error_code, verdict
from dsfleet.fleet import Fleet, Target
from dsfleet.pytest_plugin import expect
from dsfleet.snapshot import Event

# The agent event a 2205 embeds ("... Anti-Malware Component Update Failed (9017)", "イベントID: 9017") and the
# message key ("Error Message: IAURELAY_...", "エラーメッセージ: ..."): what decides the finding, read out of the text.
_EMBEDDED_ID = re.compile(r"\((\d{4})\)|イベントID\s*[:：]\s*(\d{4})")
_MESSAGE_KEY = re.compile(r"(?:error\s*message|エラーメッセージ)\s*[:：]\s*([A-Z0-9]+_[A-Z0-9_]+|[^.;]+)", re.I)


def decisive(event: Event) -> str:
    """Event id (and the embedded agent event), error code and message key first; then when, what and where."""
    text = " ".join(f"{event.name} {event.description}".split())
    embedded = next((a or b for a, b in _EMBEDDED_ID.findall(text) if (a or b) != str(event.event_id)), None)
    code = error_code(text)
    key = _MESSAGE_KEY.search(text)
    head = " ".join(part for part in (
        f"event {event.event_id}" + (f" (agent event {embedded})" if embedded else ""),
        f"error code {code}" if code is not None else "", key.group(1) if key else "") if part)
    return f"{head} at {event.time}: {event.name} [{event.origin}]"


@pytest.mark.check("EVT-001")
def test_no_certificate_update_failures(event_subject: Target, fleet: Fleet) -> None:
    judged = [(e, verdict(e)) for e in sorted(event_subject.events, key=lambda e: e.time)]
    bad = [e for e, v in judged if v in ("cert-expire", "update-failed")]
    transient = [e for e, v in judged if v == "transient"]
    window = f"{fleet.snap.events.since_utc} .. {fleet.snap.events.until_utc} ({fleet.snap.events.source})"
    shown = "; ".join(decisive(e) for e in bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
    note = f" ({len(transient)} transient 9017 with error code 11, not a finding)" if transient else ""
    expect(not bad, observed=(shown or f"no 2205 / 9017 -24 in {window}") + note,
           required="no 2205, and no 9017 with -24 IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE")
