"""NSX policy as evidence: the endpoint protection (Guest Introspection) rules must reach every protected VM."""

import pytest

from dsfleet.fleet import Fleet, Target, Unavailable
from dsfleet.pytest_plugin import expect, no_evidence

REQUIRED = "a member of a group that an NSX endpoint protection rule applies to"


@pytest.mark.check("NSX-001", reads=("nsx",))
def test_in_endpoint_protection_group(protected_vm: Target, fleet: Fleet) -> None:
    vm = protected_vm.vm
    if vm is None:
        no_evidence("no vCenter VM matches this DSM computer (by BIOS UUID or name)", REQUIRED)
    try:
        membership = fleet.nsx_membership(vm)
    except Unavailable as err:  # the NSX Manager was not read (or not configured): no evidence, never a pass
        no_evidence(str(err), REQUIRED)
    if membership.covered is None:
        no_evidence(membership.observed, REQUIRED)
    expect(bool(membership.covered), observed=membership.observed, required=REQUIRED,
           remedy="" if membership.covered else f"In NSX: give {vm.name} the security tag (or membership) of one of "
           f"the endpoint protection groups listed.")
