"""The security update after the upgrade really succeeded (KA-0016311: run a security update on the relays, then
on the agents), as the DSM records it per computer in ``securityUpdates``."""

import datetime as dt

import pytest

from dsfleet import secupdates
from dsfleet.fleet import Fleet, Target
from dsfleet.pytest_plugin import expect, no_evidence, not_applicable


@pytest.mark.check("UPD-005")
def test_security_update_succeeded(update_taker: Target, fleet: Fleet) -> None:
    assert update_taker.computer is not None
    max_age_h = fleet.snap.inventory.security_update_max_age_h
    required = secupdates.required(max_age_h)
    try:
        as_of = dt.datetime.fromisoformat(fleet.snap.created_utc)
    except ValueError:
        no_evidence(f"the snapshot's created_utc {fleet.snap.created_utc!r} is not a time", required)
    outcome = secupdates.assess(update_taker.computer, as_of, max_age_h)
    if outcome.not_applicable:
        not_applicable(outcome.not_applicable)
    if outcome.unknown and not outcome.failures:
        no_evidence("; ".join(outcome.unknown), required)
    expect(not outcome.failures, observed=outcome.observed, required=required)
