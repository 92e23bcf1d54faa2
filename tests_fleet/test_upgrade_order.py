"""Upgrade order: Manager → relays → agents and DSVAs (seed 001; DS help on updates)."""

import pytest

from dsfleet.buildpolicy import BuildPolicy, Verdict
from dsfleet.fleet import Fleet, Target
from dsfleet.pytest_plugin import (agent_build_of, classify_agent, classify_computer, expect, no_evidence,
                                   not_applicable)
from dsfleet.versions import parse_release


def _verdict(fleet: Fleet, policy: BuildPolicy, target: Target) -> Verdict:
    assert target.computer is not None
    return classify_agent(policy, target.computer, target.vm is not None and fleet.is_dsva_vm(target.vm))


@pytest.mark.check("ORD-001")
def test_relays_upgraded_before_agents(update_client: Target, fleet: Fleet, policy: BuildPolicy) -> None:
    own = _verdict(fleet, policy, update_client)
    if not own.status.compliant:
        not_applicable(f"{own.build} is not a fixed build yet (BLD-001/BLD-003 report it); "
                       f"the order matters once it is upgraded")
    computer = update_client.computer
    assert computer is not None
    if computer.relay_list_id is None:
        no_evidence("the DSM reports no relayListID for this computer", "a known relay group")
    group = fleet.relay_group(computer.relay_list_id)
    required = f"every relay of relay group {computer.relay_list_id} on a fixed build before this {own.build}"
    if group is None or not group.relay_ids:
        where = f" (membership {group.source})" if group else ""
        no_evidence(f"relay group {computer.relay_list_id}{where} has no relay the DSM reports; list its "
                    f"members under relay_groups in the inventory", required)
    unfixed = []
    for rid in group.relay_ids:
        relay = fleet.computers[rid]
        verdict = classify_computer(policy, relay, "relay")
        if not verdict.status.compliant:
            unfixed.append(f"{relay.name} {verdict.build} ({verdict.status.value})")
    expect(not unfixed,
           observed=(f"{own.build} is fixed, served by {group.name} (membership {group.source})"
                     + (f" whose relays are not fixed: {', '.join(unfixed)}" if unfixed else ", all relays fixed")),
           required=required)


@pytest.mark.check("ORD-002")
def test_manager_not_older_than_relays(relay: Target, fleet: Fleet) -> None:
    dsm = fleet.snap.dsm
    if dsm.manager_version is None:
        reason = dsm.manager_version_error or "the Manager's version was not read"
        if reason.startswith("not applicable"):
            not_applicable(reason.removeprefix("not applicable: "))
        no_evidence(reason, "the Manager's version")
    assert relay.computer is not None
    build = agent_build_of(relay.computer, "relay")
    try:
        manager = parse_release(dsm.manager_version)
    except ValueError:
        no_evidence(f"Manager version {dsm.manager_version!r} is unreadable", "the Manager's version")
    # Manager and agent build numbers are separate sequences: compare release lines (major.minor).
    expect(manager >= (build.major, build.minor),
           observed=f"Manager {dsm.manager_version} (release {manager[0]}.{manager[1]}), relay {build}",
           required=f"Manager release >= {build.line}")
