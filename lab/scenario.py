"""Scenario YAML → a concrete lab fleet: vCenter hosts/VMs and the DSM computer records that match them.

A scenario states a healthy baseline (clusters, builds, relay groups) plus named faults, so each file
reads as the incident it reproduces.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
NAMESPACE = uuid.UUID("6f1c2d0e-5b8a-4c57-9a51-0d5e6b1f7a10")
PLATFORMS = {
    "windows": "Microsoft Windows Server 2022 (64 bit)  Build 20348",
    "linux": "Red Hat Enterprise 9 (64 bit) (5.14.0-284.30.1.el9_2.x86_64)",
    "dsva": "Red Hat Enterprise 7 (64 bit) (3.10.0-1160.105.1.el7.x86_64)",
    "unix": "Solaris 11 (64 bit) (SPARC)",
}
GUEST = {"windows": ("windows2019srv_64Guest", "windowsGuest"), "linux": ("rhel9_64Guest", "linuxGuest"),
         "dsva": ("rhel7_64Guest", "linuxGuest")}


def dotted(build: str) -> str:
    """The DSM reports builds dotted: 20.0.0-8438 → 20.0.0.8438."""
    return build.replace("-", ".")


@dataclass
class LabVm:
    name: str
    host: str
    kind: str  # windows | linux | dsva
    uuid: str
    power: str = "poweredOn"
    tools_running: str = "guestToolsRunning"
    tools_version: str = "guestToolsCurrent"
    dsm: str = "protected"  # protected | unprotected | absent
    engine_offline: bool = False
    build: str | None = None  # agent build (linux agents, DSVAs)
    ip: str = ""  # the guest's own loopback address (its SSH endpoint)
    vsepflt: str = "running"  # running | stopped | missing (Windows guests)
    vmci: str = "running"
    ssh: str = "up"  # up | down (unreachable) | stall (answers nothing)
    agent: str = "running"  # ds_agent on a DSVA: running | stopped
    installed_build: str | None = None  # the DSVA's rpm, when it differs from what the DSM reports


@dataclass
class LabFleet:
    name: str
    manager_version: str
    dsm_auth: str
    nsx: str
    clusters: dict[str, list[str]]  # cluster → host names
    vms: list[LabVm]
    computers: list[dict[str, Any]] = field(default_factory=list)
    relay_groups: list[dict[str, Any]] = field(default_factory=list)
    host_address: dict[str, str] = field(default_factory=dict)
    mux_stopped: set[str] = field(default_factory=set)
    proxy: str = "plain"  # the security-update proxy: plain (tinyproxy) | inspecting (mitmproxy) | down
    url_suffix: str = ""  # "//": seed 000's TLS-bypass workaround on the update URL
    cert_expire: list[str] = field(default_factory=list)  # computers with 2205 / 9017 -24 events
    transient: list[str] = field(default_factory=list)  # computers with a 9017 error code 11 after install

    def relay_addresses(self) -> dict[str, str]:
        """Each relay's DSM host name → its own loopback address (its SSH endpoint)."""
        relays = [c["hostName"] for c in self.computers
                  if c.get("computerSettings", {}).get("platformSettingRelayState", {}).get("value") == "true"]
        return {name: _address(21, i) for i, name in enumerate(relays)}

    def events(self, now: dt.datetime) -> list[dict[str, Any]]:
        """System events in the DSM's shape: a 2205 (embedding 9017, -24) per affected computer, spread over the
        last hours, and a 9017 with error code 11 right after install for the transient ones."""
        by_name = {c["displayName"]: c for c in self.computers}
        out: list[dict[str, Any]] = []
        for n, name in enumerate(self.cert_expire):
            c = by_name[name]
            out.append(_event(len(out) + 1, now - dt.timedelta(hours=2, minutes=7 * n), 2205,
                              "Security Update: Pattern Update on Agents/Appliances Failed", c,
                              "Pattern update on Agents/Appliances failed. Agent/Appliance Event: Anti-Malware "
                              "Component Update Failed (9017). Description: An error occurred while updating an "
                              "anti-malware component. Error Code: -24. Error Message: "
                              "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE"))
        for name in self.transient:
            out.append(_event(len(out) + 1, now - dt.timedelta(hours=5), 9017,
                              "Anti-Malware Component Update Failed", by_name[name],
                              "An error occurred while updating an anti-malware component. Error Code: 11. "
                              "(right after installation)"))
        # An old incident, outside a 24-hour window: it must not count.
        if self.cert_expire:
            out.append(_event(len(out) + 1, now - dt.timedelta(days=9), 2205,
                              "Security Update: Pattern Update on Agents/Appliances Failed",
                              by_name[self.cert_expire[0]], "Error Code: -24. IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE"))
        return out

    def ssh_endpoints(self) -> list[dict[str, Any]]:
        """Every host the lab answers SSH for: ESXi hosts, DSVAs and Windows guests."""
        out: list[dict[str, Any]] = [{"address": addr, "role": "esxi", "name": host,
                                      "mux": "stopped" if host in self.mux_stopped else "running"}
                                     for host, addr in self.host_address.items()]
        for name, addr in self.relay_addresses().items():
            out.append({"address": addr, "role": "relay", "name": name, "update": self.proxy})
        for vm in self.vms:
            if vm.kind == "dsva":
                out.append({"address": vm.ip, "role": "dsva", "name": vm.name, "agent": vm.agent,
                            "build": vm.installed_build or vm.build, "ssh": vm.ssh})
            elif vm.kind == "windows":
                out.append({"address": vm.ip, "role": "windows", "name": vm.name, "vsepflt": vm.vsepflt,
                            "vmci": vm.vmci, "ssh": vm.ssh})
        return out

    def vcsim_clusters(self) -> list[dict[str, Any]]:
        by_host: dict[str, list[LabVm]] = {}
        for vm in self.vms:
            by_host.setdefault(vm.host, []).append(vm)
        return [{"name": cl, "hosts": [{"name": h, "vms": [_vcsim_vm(v) for v in by_host.get(h, [])]}
                                      for h in hosts]} for cl, hosts in self.clusters.items()]


def _vcsim_vm(vm: LabVm) -> dict[str, Any]:
    guest_id, family = GUEST[vm.kind]
    return {"name": vm.name, "uuid": vm.uuid, "guest_id": guest_id, "guest_family": family, "power": vm.power,
            "tools_running": vm.tools_running, "tools_version": vm.tools_version,
            "guest_hostname": vm.name.lower(), "ip": vm.ip}


def _event(sid: int, when: dt.datetime, event_id: int, name: str, computer: dict[str, Any],
           description: str) -> dict[str, Any]:
    return {"actionPerformedBy": "System", "description": description, "event": name, "eventID": event_id,
            "eventOrigin": "MANAGER" if event_id == 2205 else "AGENT", "managerHostname": "dsm-lab",
            "systemEventID": sid, "tags": "", "target": computer["hostName"], "targetID": computer["ID"],
            "targetType": "Host", "time": when.isoformat(), "type": "Error"}


def _address(base: int, index: int) -> str:
    """The index-th address of a block of 127.0.0.0/8 (250 per third octet). Blocks: 127.0.20.x services,
    .21.x relays, .30-39.x ESXi hosts, .40-49.x DSVAs, .50 and up guests (50,000 before 127.0.250)."""
    return f"127.0.{base + index // 250}.{index % 250 + 1}"


def load(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yml")))
        raise SystemExit(f"{path}: (file): expected a scenario file or one of: {known}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "name" not in data:
        raise SystemExit(f"{path}: name: expected a scenario mapping with a name")
    return data


def build(spec: dict[str, Any], hosts: int | None = None, vms_per_host: int | None = None) -> LabFleet:
    """Expand a scenario into hosts, VMs and DSM computer records.

    ``hosts``/``vms_per_host`` scale it for benchmarks: the first cluster gets ``hosts`` hosts of
    ``vms_per_host`` Windows VMs each (plus one DSVA per host) and the other clusters are left out.
    """
    builds = spec["builds"]
    faults = spec.get("faults") or {}
    clusters: dict[str, list[str]] = {}
    vms: list[LabVm] = []
    host_address: dict[str, str] = {}
    n = guests = 0
    scaled = hosts is not None or vms_per_host is not None
    for cl in spec["clusters"][:1] if scaled else spec["clusters"]:
        count = hosts if hosts is not None else cl["hosts"]
        clusters[cl["name"]] = []
        for _ in range(count):
            n += 1
            host = f"esx-{n:02d}"
            clusters[cl["name"]].append(host)
            host_address[host] = _address(30, n - 1)
            dsva_build = (faults.get("dsva_builds") or {}).get(host, builds["dsva"])
            if host not in (faults.get("hosts_without_dsva") or []):
                agent = "stopped" if host in (faults.get("dsva_agent_stopped") or []) else "running"
                vms.append(LabVm(f"Trend Micro Deep Security ({host})", host, "dsva", _uuid(host, "dsva"),
                                 build=dsva_build, ip=_address(40, n - 1), agent=agent,
                                 installed_build=(faults.get("dsva_installed_builds") or {}).get(host)))
            win = vms_per_host if vms_per_host is not None else cl.get("windows_per_host", 0)
            lnx = 0 if vms_per_host is not None else cl.get("linux_per_host", 0)
            for i in range(1, win + 1):
                vms.append(LabVm(f"WIN-{n:02d}-{i:02d}", host, "windows", _uuid(host, f"win{i}"),
                                 ip=_address(50, guests)))
                guests += 1
            for i in range(1, lnx + 1):
                vms.append(LabVm(f"LNX-{n:02d}-{i:02d}", host, "linux", _uuid(host, f"lnx{i}"),
                                 build=builds["linux_agent"], ip=_address(50, guests)))
                guests += 1
    by_name = {vm.name: vm for vm in vms}
    for host in faults.get("hosts_engine_offline") or []:
        for vm in vms:
            if vm.host == host and vm.kind == "windows":
                vm.engine_offline = True
    for name, changes in (faults.get("vms") or {}).items():
        if name not in by_name:
            raise SystemExit(f"scenario {spec['name']}: faults.vms.{name}: expected a VM of the scenario")
        for key, value in changes.items():
            setattr(by_name[name], key, value)

    fleet = LabFleet(name=spec["name"], manager_version=str(spec["manager_version"]),
                     dsm_auth=spec.get("dsm_auth", "api-secret-key"), nsx=spec.get("nsx", "nsx-t"),
                     clusters=clusters, vms=vms, host_address=host_address,
                     mux_stopped=set(faults.get("hosts_mux_stopped") or []))
    update = spec.get("update_path") or {}
    fleet.proxy, fleet.url_suffix = update.get("proxy", "plain"), update.get("url_suffix", "")
    events = spec.get("events") or {}
    fleet.cert_expire, fleet.transient = list(events.get("cert_expire", [])), list(events.get("transient", []))
    group_of_vms = spec.get("vm_relay_group", 0)
    next_id = 1
    for group in spec.get("relay_groups") or []:
        fleet.relay_groups.append({"id": group["id"], "name": group["name"],
                                   "relays": [r["name"] for r in group["relays"]]})
        for relay in group["relays"]:
            fleet.computers.append(_agent_record(next_id, relay["name"], relay["platform"], relay["build"],
                                                 group["id"], relay=True))
            next_id += 1
    for agent in spec.get("agents") or []:
        fleet.computers.append(_agent_record(next_id, agent["name"], agent["platform"], agent["build"],
                                             agent.get("relay_group", group_of_vms)))
        next_id += 1
    for vm in vms:
        if vm.dsm == "absent":
            continue
        fleet.computers.append(_vm_record(next_id, vm, group_of_vms))
        next_id += 1
    return fleet


def _uuid(host: str, what: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{host}/{what}"))


def _base(cid: int, host_name: str, display: str, platform: str, version: str, relay_list: int) -> dict[str, Any]:
    return {"ID": cid, "hostName": host_name, "displayName": display, "description": "", "platform": platform,
            "agentVersion": version, "relayListID": relay_list, "groupID": 0, "policyID": 1,
            "lastIPUsed": f"10.20.{cid // 250}.{cid % 250 + 1}", "applianceFingerPrint": None,
            "agentFingerPrint": None, "lastAgentCommunication": 1763700000000}


def _settings(relay: bool) -> dict[str, Any]:
    return {"platformSettingRelayState": {"value": "true" if relay else "false"},
            "platformSettingAgentCommunicationsDirection": {"value": "Bidirectional"}}


def _agent_record(cid: int, name: str, platform: str, build: str, relay_list: int, relay: bool = False,
                  bios_uuid: str | None = None) -> dict[str, Any]:
    record = _base(cid, f"{name.lower()}.lab.local", name, PLATFORMS[platform], dotted(build), relay_list)
    record.update({
        "agentFingerPrint": "AA:BB:" + f"{cid:04X}",
        "biosUUID": bios_uuid,
        "computerStatus": {"agentStatus": "active", "agentStatusMessages": ["Managed (Online)"],
                           "applianceStatus": "inactive", "applianceStatusMessages": []},
        "antiMalware": {"state": "on", "moduleStatus": {"agentStatus": "active", "agentStatusMessage": "On, Real Time",
                                                        "applianceStatus": "inactive", "applianceStatusMessage": ""}},
        "computerSettings": _settings(relay),
    })
    return record


def _vm_record(cid: int, vm: LabVm, relay_list: int) -> dict[str, Any]:
    summary = {"operatingSystem": PLATFORMS[vm.kind], "vmwareTools": "OK" if vm.tools_running ==
               "guestToolsRunning" else "Not Running", "biosUUID": vm.uuid,
               "state": {"poweredOn": "Powered On", "suspended": "Suspended"}.get(vm.power, "Powered Off"),
               "vCenterUUID": "lab-vcenter", "NSXSecurityGroups": ["DS-Protected"], "DNSName": vm.name.lower()}
    if vm.kind in ("linux", "dsva"):
        assert vm.build is not None
        record = _agent_record(cid, vm.name, "dsva" if vm.kind == "dsva" else "linux", vm.build, relay_list,
                               bios_uuid=vm.uuid)
        record["vmwareVMVirtualMachineSummary"] = summary
        return record
    record = _base(cid, f"{vm.name.lower()}.lab.local", vm.name, PLATFORMS["windows"], "0.0.0.0", relay_list)
    protected = vm.dsm == "protected"
    offline = vm.engine_offline
    record.update({
        "biosUUID": vm.uuid,
        "applianceFingerPrint": f"DD:EE:{cid:04X}" if protected else None,
        "lastApplianceCommunication": 1763700000000 if protected else None,
        "computerStatus": {
            "agentStatus": "inactive", "agentStatusMessages": ["Unmanaged (Unknown)"] if not protected else [],
            "applianceStatus": ("error" if offline else "active") if protected else "inactive",
            "applianceStatusMessages": (["Anti-Malware Engine Offline"] if offline else ["Managed (Online)"])
            if protected else []},
        "antiMalware": {"state": "on" if protected else "off", "moduleStatus": {
            "agentStatus": "inactive", "agentStatusMessage": "",
            "applianceStatus": ("error" if offline else "active") if protected else "inactive",
            "applianceStatusMessage": ("On, Real Time" if protected else "Not Activated")}},
        "computerSettings": _settings(False),
        "vmwareVMVirtualMachineSummary": summary,
    })
    return record
