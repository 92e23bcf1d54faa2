"""Offline environments (KA-0016311 FAQ): the relay that builds the update bundle (dsupdate_*.zip), the relays
in the offline environment and every agent under them must all be on unaffected builds."""

import dataclasses

import pytest

from dsfleet.buildpolicy import BuildPolicy, Verdict
from dsfleet.fleet import Fleet, Target
from dsfleet.pytest_plugin import classify_agent, judge_build, no_evidence, not_applicable


def _verdict(fleet: Fleet, policy: BuildPolicy, target: Target) -> Verdict:
    assert target.computer is not None
    return classify_agent(policy, target.computer, target.vm is not None and fleet.is_dsva_vm(target.vm))


@pytest.mark.check("BLD-004")
def test_offline_bundle_chain_fixed(offline_chain_member: Target, fleet: Fleet, policy: BuildPolicy) -> None:
    target = offline_chain_member
    if not fleet.snap.inventory.offline_segments:
        not_applicable("the inventory declares no offline_segments (environments fed by an update bundle)")
    if target.computer is None:
        no_evidence(f"offline_segments names {target.object_id}", "a relay the DSM knows")
    verdict = _verdict(fleet, policy, target)
    roles = "; ".join(fleet.offline_roles[target.computer.id])
    judge_build(dataclasses.replace(verdict, detail=f"offline bundle chain ({roles}): {verdict.detail}"))
