"""The lab's SOAP endpoint answers Trend Micro's real DSM interface: zeep loads the published WSDL from
../shared/reference and calls the lab through it (skipped with a reason when ../shared is absent)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import requests

WSDL = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ds-manager-soap.wsdl"


@pytest.fixture
def manager(start_lab: Any) -> Any:
    if not WSDL.is_file():
        pytest.skip(f"the DSM WSDL is not available at {WSDL} (../shared is absent)")
    import zeep
    from zeep.transports import Transport

    lab = start_lab("cert-expiry-2025")
    session = requests.Session()
    session.trust_env = False
    session.verify = str(lab.dir / "ca.pem")
    client = zeep.Client(str(WSDL), transport=Transport(session=session))
    base = (lab.dir / "dsm.ready").read_text().strip()
    return lab, client.create_service("{urn:Manager}ManagerSoapBinding", f"{base}/webservice/Manager")


def test_real_wsdl_against_the_lab(manager: Any) -> None:
    lab, service = manager
    sid = service.authenticate(username="dsfleet-audit", password=lab.env["DSFLEET_LAB_SOAP_PASSWORD"])
    now = dt.datetime.now(dt.timezone.utc)
    seen, last = [], 0
    while True:
        page = service.systemEventRetrieve(
            timeFilter={"rangeFrom": now - dt.timedelta(hours=24), "rangeTo": now, "specificTime": None,
                        "type": "CUSTOM_RANGE"},
            hostFilter={"hostGroupID": None, "hostID": None, "securityProfileID": None, "type": "ALL_HOSTS"},
            eventIdFilter={"id": last, "operator": "GREATER_THAN"}, includeNonHostEvents=True, sID=sid)
        items = list(page.systemEvents.item) if page.systemEvents is not None else []
        seen += items
        if not page.truncated:
            break
        last = max(i.systemEventID for i in items)
    assert len(seen) == 10 and {i.eventID for i in seen} == {2205, 9017}
    assert all(i.time.tzinfo is not None and i.eventOrigin in ("MANAGER", "AGENT") for i in seen)
    assert any("IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE" in i.description for i in seen)
    service.endSession(sID=sid)


def test_tenant_login_and_faults(manager: Any) -> None:
    import zeep.exceptions

    lab, service = manager
    sid = service.authenticateTenant(tenantName="Primary", username="dsfleet-audit",
                                     password=lab.env["DSFLEET_LAB_SOAP_PASSWORD"])
    assert sid
    service.endSession(sID=sid)
    with pytest.raises(zeep.exceptions.Fault, match="Authentication failed"):
        service.authenticate(username="dsfleet-audit", password="wrong")
    with pytest.raises(zeep.exceptions.Fault, match="Invalid session"):
        service.systemEventRetrieve(timeFilter={"rangeFrom": None, "rangeTo": None, "specificTime": None,
                                                "type": "LAST_24_HOURS"},
                                    hostFilter={"hostGroupID": None, "hostID": None, "securityProfileID": None,
                                                "type": "ALL_HOSTS"},
                                    eventIdFilter={"id": 0, "operator": "GREATER_THAN"}, includeNonHostEvents=True,
                                    sID=sid)


# -- runtime faults (faults.json "dsm" → "soap") through dsfleet's own client -----------------------------


def read_lab_events(lab: Any) -> Any:
    from dsfleet.events import read_soap

    now = dt.datetime.now(dt.timezone.utc)
    return read_soap((lab.dir / "dsm.ready").read_text().strip(), str(lab.dir / "ca.pem"), "dsfleet-audit",
                     lab.env["DSFLEET_LAB_SOAP_PASSWORD"], None, now - dt.timedelta(hours=24), now, 10)


def soap_log(lab: Any) -> list[str]:
    return [line for line in (lab.dir / "requests-dsm.log").read_text().splitlines() if "/webservice/" in line]


@pytest.mark.parametrize("fault, reason", [
    ("truncated-empty", "the DSM said the event list is truncated but returned no events after id 0"),
    ("repeat", "asked for events after id 2, the DSM returned event 1 again"),
])
def test_soap_paging_faults_fail_closed(start_lab: Any, fault: str, reason: str) -> None:
    from dsfleet.errors import GatherError

    lab = start_lab("cert-expiry-2025")
    lab.set_faults({"dsm": {"soap": fault}})
    with pytest.raises(GatherError, match=f"^DSM SOAP systemEventRetrieve failed: {reason}"):
        read_lab_events(lab)
    assert soap_log(lab)[-1] == "POST /webservice/Manager endSession"  # the session is ended all the same
    lab.set_faults({})
    events, scanned = read_lab_events(lab)
    assert len(events) == scanned == 10
    log = soap_log(lab)
    assert log[:2] == ["GET /webservice/Manager", "POST /webservice/Manager authenticate"]
    assert log.count("POST /webservice/Manager systemEventRetrieve") >= 6 and log[-1].endswith(" endSession")
