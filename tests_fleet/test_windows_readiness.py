"""KB KA-0016311, Windows notes: a Windows agent or relay has the roots and updates the fixed build needs.

Before the upgrade the check predicts the failure (the upgrade fails, or ends in "Anti-Malware Engine
Offline"); after it, it explains that status and gives the KB's reinstall steps.
"""

import pytest

from dsfleet.buildpolicy import BuildPolicy
from dsfleet.fleet import Target, Unavailable, agent_build
from dsfleet.parsers import UnexpectedOutput
from dsfleet.pytest_plugin import expect
from dsfleet.snapshot import DsmComputer, HostProbe
from dsfleet.winready import (CERTUTIL_ROOT, HOTFIX, Readiness, ReadinessPolicy, parse_certutil_store,
                              parse_hotfixes, windows_build)

READINESS = ReadinessPolicy.load()
OFFLINE = "anti-malware engine offline"
# KA-0016311 FAQ: Anti-Malware Engine Offline after upgrading a Windows agent or relay.
REINSTALL = ("uninstall the agent (reboot if asked); check that the services, registry keys and files of the manual "
             "uninstall procedure are gone; delete the computer in the DSM's Computers page; reinstall the agent; "
             "register the computer with the DSM again;{relay} run a security update on it. If the engine is still "
             "offline after reinstalling, follow the Anti-Malware Engine Offline troubleshooting and contact support.")
RELAY_STEPS = (" designate it as a relay again (Administration > Updates > Relay Management) and apply the policies "
               "it needs;")


@pytest.fixture
def readiness(windows_agent_host: Target, probe: HostProbe) -> Readiness:
    """The host's roots and updates judged against the cited table; an unread host errors here with the reason."""
    c = windows_agent_host.computer
    assert c is not None
    if probe.status == "not probed":
        raise Unavailable(f"not contacted: {probe.reason}")
    build = windows_build(c.platform)
    if build is None:
        raise Unavailable(f"the DSM platform {c.platform!r} names no Windows build number")
    roots, hotfixes = probe.output(CERTUTIL_ROOT), probe.output(HOTFIX)
    if roots is None or hotfixes is None:
        raise Unavailable("certutil -store Root and Get-HotFix were not both run on this host")
    try:
        return READINESS.judge(build, parse_certutil_store(roots.stdout, roots.rc),
                               parse_hotfixes(hotfixes.stdout, hotfixes.rc))
    except UnexpectedOutput as err:
        raise Unavailable(f"unexpected output: {err}") from None


def _upgraded(computer: DsmComputer, policy: BuildPolicy) -> bool:
    build = agent_build(computer)
    return build is not None and policy.classify(build, "windows").status.compliant


@pytest.mark.check("WIN-001")
def test_windows_ready_for_fixed_build(windows_agent_host: Target, readiness: Readiness, policy: BuildPolicy) -> None:
    c = windows_agent_host.computer
    assert c is not None
    required = (f"{readiness.windows}: every required root in LocalMachine\\Root and every required Windows update "
                f"({'; '.join(readiness.citations)})")
    if not readiness.missing and readiness.review:
        pytest.skip(f"manual review: {'; '.join(readiness.review)}; {required}")
    offline = any(OFFLINE in m.lower() for m in [*c.agent_messages, *c.am_messages, *c.appliance_messages])
    observed = "; ".join(readiness.missing) or "every required root and update present"
    if readiness.review:
        observed += f"; for review: {'; '.join(readiness.review)}"
    if _upgraded(c, policy):
        why = ("Anti-Malware Engine Offline: explained by the missing items" if offline else
               "on a fixed build: Anti-Malware Engine Offline is to be expected")
        remedy = (f"On {c.name}: import the missing roots and install the missing updates, then reinstall the agent "
                  f"(KA-0016311 FAQ): " + REINSTALL.format(relay=RELAY_STEPS if c.is_relay else ""))
    else:
        why = "before the upgrade to a fixed build: the upgrade would fail or end in Anti-Malware Engine Offline"
        remedy = (f"On {c.name}, before upgrading: import the missing roots into Local Computer > Trusted Root "
                  f"Certification Authorities and install the missing updates; then upgrade (relays first).")
    expect(not readiness.missing, observed=f"{observed} ({why})" if readiness.missing else observed,
           required=required, remedy=remedy if readiness.missing else "")
