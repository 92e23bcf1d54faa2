"""UPD-005 and BLD-004 at unit level: the securityUpdates reduction, the update verdict, the inventory keys, and
the offline bundle chain resolved from relay names and relay groups."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsfleet import inventory, secupdates, snapshot
from dsfleet.errors import InputError
from dsfleet.fleet import Fleet
from dsfleet.gather import DSM_EXPAND, computer_from_api
from dsfleet.snapshot import (DsmComputer, DsmFacts, InventoryRef, JoinResult, OfflineSegmentRef, RelayGroupFacts,
                              Snapshot, UpdateComponent, VcenterFacts, VcHost)

AS_OF = dt.datetime(2025, 10, 1, 12, 0, tzinfo=dt.timezone.utc)
HOUR_MS = 3_600_000


def ms(hours_before: float) -> int:
    return int(AS_OF.timestamp() * 1000 - hours_before * HOUR_MS)


def raw(security_updates: Any) -> dict[str, Any]:
    return {"ID": 7, "hostName": "relay-02.corp.local", "displayName": "relay-02", "platform": "Windows",
            "agentVersion": "20.0.0.8438", "securityUpdates": security_updates}


GOOD = {"updateStatus": {"status": "active", "statusMessage": "Up-to-date"}, "lastChanged": ms(3),
        "antiMalware": [{"name": "Virus Pattern", "forUseBy": "Deep Security Agent 20.0.0.8438",
                         "platform": "Windows (64 bit)", "version": "19.583.00", "latest": True}],
        "rules": []}


# -- the reduction of the REST record ----------------------------------------------------------------------

def test_the_one_search_asks_for_security_updates() -> None:
    assert "securityUpdates" in DSM_EXPAND


def test_security_updates_are_reduced_field_by_field() -> None:
    c = computer_from_api(raw(GOOD), 1)
    assert (c.update_status, c.update_message, c.update_last_changed_ms) == ("active", "Up-to-date", ms(3))
    assert c.am_components == [UpdateComponent("Virus Pattern", "19.583.00", True, "Windows (64 bit)")]
    assert c.problems == []


def test_absent_security_updates_read_as_unknown() -> None:
    c = computer_from_api(raw(None), 1)
    assert (c.update_status, c.update_last_changed_ms, c.am_components, c.problems) == (None, None, [], [])


@pytest.mark.parametrize("edit,problem", [
    (lambda s: s.update(lastChanged="2025-10-01"),
     "securityUpdates.lastChanged: expected an integer, got '2025-10-01'"),
    (lambda s: s.update(updateStatus="error"), "securityUpdates.updateStatus: expected an object, got 'error'"),
    (lambda s: s["antiMalware"][0].update(latest="yes"),
     "securityUpdates.antiMalware[0].latest: expected true or false, got 'yes'"),
    (lambda s: s["antiMalware"][0].update(version=19.583), "securityUpdates.antiMalware[0].version: expected a string, "
                                                           "got 19.583"),
    (lambda s: s.update(antiMalware=["Virus Pattern"]), "securityUpdates.antiMalware: expected a list of objects, "
                                                        "got ['Virus Pattern']"),
])
def test_a_wrongly_typed_field_is_a_problem_line(edit: Any, problem: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))  # a deep copy
    edit(data)
    c = computer_from_api(raw(data), 1)
    assert c.problems == [f"DSM computer 7: {problem}"]
    assert c.host_name == "relay-02.corp.local"  # the other fields survive


# -- the verdict -----------------------------------------------------------------------------------------

def computer(**changes: Any) -> DsmComputer:
    base = DsmComputer(id=1, host_name="relay-01.corp.local", display_name="relay-01", platform="Red Hat Enterprise 9",
                       agent_version="20.0.0.8438", relay_list_id=1, is_relay=True, appliance_protected=False,
                       bios_uuid=None, agent_status="active", agent_messages=[], appliance_status=None,
                       appliance_messages=[], am_state="on", am_messages=[], vm_state=None,
                       update_status="active", update_message="Up-to-date", update_last_changed_ms=ms(3),
                       am_components=[UpdateComponent("Virus Pattern", "19.583.00", True),
                                      UpdateComponent("Advanced Threat Scan Engine", "23.600.1008", True)])
    return replace(base, **changes)


def test_a_recent_successful_update_passes() -> None:
    out = secupdates.assess(computer(), AS_OF, 48)
    assert not out.failures and not out.unknown and out.not_applicable is None
    assert out.observed == ("update status active: Up-to-date; 2 of 2 anti-malware components the latest; "
                            "last change 2025-10-01 09:00 UTC, 3.0 h before the snapshot")


def test_a_failure_shows_the_message_the_stale_components_and_the_age() -> None:
    out = secupdates.assess(computer(
        update_status="error", update_message="Anti-Malware Component Update Failed (Error Code: -24)",
        update_last_changed_ms=ms(200),
        am_components=[UpdateComponent("Virus Pattern", "19.571.00", False, "Linux (64 bit)"),
                       UpdateComponent("Advanced Threat Scan Engine", "23.600.1008", True)]), AS_OF, 48)
    assert out.failures == ("update status error: Anti-Malware Component Update Failed (Error Code: -24)",
                            "not the latest: Virus Pattern (Linux (64 bit)) 19.571.00",
                            "last change 2025-09-23 04:00 UTC, 200.0 h before the snapshot (more than 48 h)")
    assert out.observed.startswith("; ".join(out.failures))
    assert out.observed.endswith("1 of 2 anti-malware components the latest")


def test_the_age_limit_is_the_inventory_s() -> None:
    assert not secupdates.assess(computer(update_last_changed_ms=ms(47)), AS_OF, 48).failures
    assert secupdates.assess(computer(update_last_changed_ms=ms(47)), AS_OF, 24).failures
    assert secupdates.required(24) == ("update status not error, every anti-malware component the latest, "
                                       "last change within 24 h of the snapshot")


@pytest.mark.parametrize("changes,unknown", [
    ({"update_status": None, "update_message": None, "update_last_changed_ms": None, "am_components": []},
     ("the DSM reports no securityUpdates for this computer",)),
    ({"update_last_changed_ms": None}, ("no securityUpdates.lastChanged",)),
    ({"am_components": []}, ("the DSM lists no anti-malware components (securityUpdates.antiMalware)",)),
    ({"am_components": [UpdateComponent("Virus Pattern", "19.583.00", None)]},
     ("not said whether the latest: Virus Pattern 19.583.00",)),
])
def test_what_the_dsm_does_not_say_is_no_evidence(changes: dict[str, Any], unknown: tuple[str, ...]) -> None:
    out = secupdates.assess(computer(**changes), AS_OF, 48)
    assert out.unknown == unknown and not out.failures


def test_a_failure_is_reported_even_when_something_else_is_unknown() -> None:
    out = secupdates.assess(computer(update_status="error", update_message=None, update_last_changed_ms=None),
                            AS_OF, 48)
    assert out.failures == ("update status error",) and out.unknown == ("no securityUpdates.lastChanged",)


@pytest.mark.parametrize("changes,reason", [
    ({"update_status": "not-supported"}, "the DSM reports security updates as not supported on this computer"),
    ({"am_state": "off"}, "anti-malware is off: no pattern to update"),
])
def test_not_applicable(changes: dict[str, Any], reason: str) -> None:
    assert secupdates.assess(computer(**changes), AS_OF, 48).not_applicable == reason


# -- inventory keys ----------------------------------------------------------------------------------------

def minimal(**extra: Any) -> dict[str, Any]:
    return {"name": "site", "nsx": "nsx-t", "dsm": {"url": "https://dsm:4119", "api_key_env": "DSM_KEY"},
            "vcenters": [{"name": "vc", "url": "https://vc/sdk", "user": "u", "password_env": "VC_PW"}], **extra}


def load(tmp_path: Path, data: dict[str, Any]) -> inventory.Inventory:
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump(data))
    return inventory.load(path)


def test_inventory_defaults_and_values(tmp_path: Path) -> None:
    inv = load(tmp_path, minimal())
    assert inv.security_update_max_age_h == 48 and inv.offline_segments == ()
    inv = load(tmp_path, minimal(security_updates={"max_age_h": 24},
                                 offline_segments=[{"name": "plant", "bundle_relay": "relay-01",
                                                    "relays": ["relay-02"]}]))
    assert inv.security_update_max_age_h == 24
    assert inv.offline_segments == (inventory.OfflineSegment("plant", "relay-01", ("relay-02",)),)


@pytest.mark.parametrize("extra,field,expected", [
    ({"security_updates": {"max_age_h": 0}}, "security_updates.max_age_h", "a number of hours from 1 to 8760"),
    ({"security_updates": {"max_age": 4}}, "security_updates.max_age", "no such key"),
    ({"offline_segments": {"name": "x"}}, "offline_segments", "a list"),
    ({"offline_segments": [{"name": "x", "relays": ["r"]}]}, "offline_segments[0].bundle_relay",
     "the DSM hostName or displayName of the relay that builds the update bundle"),
    ({"offline_segments": [{"name": "x", "bundle_relay": "b", "relays": []}]}, "offline_segments[0].relays",
     "a non-empty list"),
    ({"offline_segments": [{"name": "x", "bundle_relay": "b", "relays": ["r"]},
                           {"name": "x", "bundle_relay": "b", "relays": ["s"]}]}, "offline_segments[1].name",
     "a name not used by another offline segment"),
])
def test_inventory_errors_are_one_line(tmp_path: Path, extra: dict[str, Any], field: str, expected: str) -> None:
    with pytest.raises(InputError) as err:
        load(tmp_path, minimal(**extra))
    assert str(err.value).startswith(f"{tmp_path / 'site.yml'}: {field}: expected ") and expected in str(err.value)
    assert "\n" not in str(err.value)


# -- the offline bundle chain --------------------------------------------------------------------------------

def agent(cid: int, name: str, group: int, relay: bool = False) -> DsmComputer:
    return computer(id=cid, host_name=f"{name}.corp.local", display_name=name, is_relay=relay, relay_list_id=group)


def fleet(segments: list[OfflineSegmentRef], dsm_error: str | None = None) -> Fleet:
    computers = [agent(1, "relay-01", 1, relay=True), agent(2, "relay-02", 2, relay=True),
                 agent(3, "plc-01", 2), agent(4, "ops-01", 1), agent(5, "not-a-relay", 2)]
    return Fleet(Snapshot(
        schema=snapshot.SCHEMA, version=snapshot.VERSION, created_utc=AS_OF.isoformat(), gather_seconds=1.0,
        inventory=InventoryRef(name="t", path="site.yml", sha256="0" * 64, nsx="nsx-t", scope_clusters=[],
                               scope_hosts=[], dsva_vm_pattern="^Trend Micro", include_unmatched_agents=True,
                               tls_exceptions=[], offline_segments=segments),
        dsm=DsmFacts(url="https://dsm", auth="api-secret-key", tls_verify=True, computers=computers,
                     error=dsm_error),
        vcenters=[VcenterFacts(name="vc", url="https://vc/sdk", tls_verify=True,
                               hosts=[VcHost("vc/host-1", "esx-01", "cl", "connected", False, "ESXi")])],
        join=JoinResult(),
        relay_groups=[RelayGroupFacts(1, "Relay Group Online", [1], "inventory"),
                      RelayGroupFacts(2, "Relay Group Plant", [2], "inventory")]))


PLANT = OfflineSegmentRef("plant", "relay-01", ["RELAY-02.corp.local"])


def test_the_chain_is_the_bundle_relay_the_offline_relays_and_their_agents() -> None:
    f = fleet([PLANT])
    assert f.offline_roles == {1: ["builds the update bundle of offline segment plant"],
                               2: ["relay of offline segment plant"],
                               3: ["downloads from Relay Group Plant in offline segment plant"],
                               5: ["downloads from Relay Group Plant in offline segment plant"]}
    assert [t.object_id for t in f.offline_chain()] == ["not-a-relay", "plc-01", "relay-01", "relay-02"]
    f.check_offline_segments()  # every name resolves


def test_a_name_that_is_no_relay_is_an_input_error() -> None:
    f = fleet([PLANT, OfflineSegmentRef("lab", "relay-01", ["relay-02", "not-a-relay"])])
    with pytest.raises(InputError) as err:
        f.check_offline_segments()
    assert str(err.value) == ("site.yml: offline_segments[1].relays[1]: expected a relay the DSM knows, "
                              "got 'not-a-relay'")
    # From a saved snapshot the name is not re-validated: it becomes a target that errors, never a pass.
    assert "not-a-relay (not a relay the DSM knows)" in [t.object_id for t in f.offline_chain()]


def test_names_are_not_judged_when_the_dsm_was_not_read_whole() -> None:
    fleet([OfflineSegmentRef("x", "nobody", ["relay-02"])], dsm_error="2 computer records could not be read").\
        check_offline_segments()


def test_without_offline_segments_one_target_is_judged_not_applicable() -> None:
    assert [t.object_id for t in fleet([]).offline_chain()] == [
        "offline bundle chain (no offline_segments in the inventory)"]


def test_the_snapshot_keeps_the_new_fields(tmp_path: Path) -> None:
    snap = fleet([PLANT]).snap
    snap.inventory.security_update_max_age_h = 24.0
    snap.dsm.computers[0].am_components.append(UpdateComponent("Virus Pattern", "1", False, None))
    snap.write(tmp_path / "s.json")
    assert snapshot.load(tmp_path / "s.json")[0] == snap
