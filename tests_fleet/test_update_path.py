"""The security-update path (seed 000, error ②): the source answers through the proxy, no TLS-inspecting
proxy re-signs it, the `//` bypass is not in use, and every relay reaches it."""

import pytest

from dsfleet.fleet import Fleet, Target
from dsfleet.pytest_plugin import expect, no_evidence
from dsfleet.updatepath import tls_bypassed


def _via(probe_target: Target) -> str:
    p = probe_target.source_probe
    assert p is not None
    return f"via proxy {p.proxy}" if p.proxy else "direct"


@pytest.mark.check("UPD-001")
def test_update_source_answers(source_probe: Target) -> None:
    p = source_probe.source_probe
    assert p is not None
    answer = f"HTTP {p.http_status} in {p.seconds} s" if p.http_status else f"{p.status}: {p.reason}"
    expect(p.status == "ok", observed=f"{p.url} {_via(source_probe)}: {answer}",
           required="an HTTP answer from the update source through the proxy")


@pytest.mark.check("UPD-002")
def test_no_tls_inspection(source_probe: Target) -> None:
    p = source_probe.source_probe
    assert p is not None
    if not p.chain or p.trusted is None:
        no_evidence(f"no certificate was presented ({p.status}: {p.reason})", "a chain to the expected trust anchors")
    leaf = p.chain[0]
    expect(bool(p.trusted),
           observed=(f"the tunnel presented {leaf.subject} issued by {leaf.issuer}"
                     + ("" if p.trusted else f": {p.trust_error} — SSL inspection re-signs the update source")),
           required="a chain that verifies against the expected trust anchors (update_source.trust_ca)")


@pytest.mark.check("UPD-003")
def test_update_url_keeps_tls_verification(source_probe: Target, fleet: Fleet) -> None:
    url = fleet.snap.update_path.source_url
    expect(not tls_bypassed(url), observed=f"platformSettingUpdateSecurityPrimarySourceUrl = {url!r}",
           required="no trailing // (TLS verification of updates stays on)")


@pytest.mark.check("UPD-004")
def test_relay_reaches_update_source(relay_probe: Target) -> None:
    p = relay_probe.source_probe
    assert p is not None
    if p.status == "not probed":
        no_evidence(f"relay {p.origin} was not probed: {p.reason}", "the relay's answer")
    answer = f"HTTP {p.http_status}" if p.http_status else f"{p.status}: {p.reason}"
    expect(p.status == "ok", observed=f"from relay {p.origin}, {_via(relay_probe)}: {answer}",
           required="an HTTP answer from the update source, from the relay")
