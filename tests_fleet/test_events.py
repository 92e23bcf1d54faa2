"""Events of the 2025 certificate incident (seed 001): no 2205, no 9017 with -24, per computer."""

import pytest

from dsfleet.events import verdict
from dsfleet.fleet import Fleet, Target
from dsfleet.pytest_plugin import expect


@pytest.mark.check("EVT-001")
def test_no_certificate_update_failures(event_subject: Target, fleet: Fleet) -> None:
    judged = [(e, verdict(e)) for e in sorted(event_subject.events, key=lambda e: e.time)]
    bad = [(e, v) for e, v in judged if v in ("cert-expire", "update-failed")]
    transient = [e for e, v in judged if v == "transient"]
    window = f"{fleet.snap.events.since_utc} .. {fleet.snap.events.until_utc} ({fleet.snap.events.source})"
    shown = "; ".join(f"{e.time} {e.event_id} {e.name}: {' '.join(e.description.split())[:160]} [{e.origin}]"
                      for e, _ in bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
    note = f" ({len(transient)} transient 9017 with error code 11, not a finding)" if transient else ""
    expect(not bad, observed=(shown or f"no 2205 / 9017 -24 in {window}") + note,
           required="no 2205, and no 9017 with -24 IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE")
