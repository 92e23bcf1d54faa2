"""Builds against the 2025 ActiveUpdate code-signing certificate KB (seed 001, KA-0016311)."""

import pytest

from dsfleet.buildpolicy import BuildPolicy
from dsfleet.fleet import Target
from dsfleet.pytest_plugin import agent_build_of, classify_computer, judge_build, no_evidence


@pytest.mark.check("BLD-001")
def test_dsva_agent_build_fixed(dsva: Target, policy: BuildPolicy) -> None:
    if dsva.computer is None:
        no_evidence("no DSM computer matches this DSVA VM (by BIOS UUID or name)", "the DSVA's DSM record")
    judge_build(policy.classify_dsva(agent_build_of(dsva.computer, "DSVA")))


@pytest.mark.check("BLD-002")
def test_relay_build_fixed(relay: Target, policy: BuildPolicy) -> None:
    assert relay.computer is not None
    judge_build(classify_computer(policy, relay.computer, "relay"))


@pytest.mark.check("BLD-003")
def test_agent_build_fixed(agent: Target, policy: BuildPolicy) -> None:
    assert agent.computer is not None
    judge_build(classify_computer(policy, agent.computer, "agent"))
