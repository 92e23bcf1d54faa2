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
    "windows2012r2": "Microsoft Windows Server 2012 R2 (64 bit)  Build 9600",
}
# Windows agents and relays answer certutil and Get-HotFix (WIN-001): by default every root, and the updates of
# their Windows build; a scenario's windows_agents changes that per computer (lab/ssh_server.py ROOT_SETS).
DEFAULT_HOTFIXES = {"windows": ["KB5005619", "KB5034129"], "windows2012r2": ["KB5006714", "KB2919355"]}
GUEST = {"windows": ("windows2019srv_64Guest", "windowsGuest"), "linux": ("rhel9_64Guest", "linuxGuest"),
         "dsva": ("rhel7_64Guest", "linuxGuest")}


# securityUpdates.antiMalware of an agent: (component, version now, version before the last update), per platform.
AM_COMPONENTS = (("Virus Pattern", "19.583.00", "19.571.00"), ("Spyware/Grayware Pattern", "2.999.00", "2.987.00"),
                 ("Advanced Threat Scan Engine", "23.600.1008", "23.580.1006"))
# The KB's failure, as the DSM records it in the computer's update status (events 2205 / 9017, error -24).
UPDATE_FAILED = ("Anti-Malware Component Update Failed (Error Code: -24, "
                 "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE)")
UPDATED_HOURS_AGO = 3  # a healthy computer's last security update


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
    nsx_tag: bool = True  # a Windows guest carries the security tag its cluster's endpoint protection group matches
    instance_uuid: str = ""  # config.instanceUuid (NSX-T reports it as the VM's external id)


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
    windows_agents: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → {roots, hotfixes} (WIN-001)

    def relay_addresses(self) -> dict[str, str]:
        """Each relay's DSM host name → its own loopback address (its SSH endpoint)."""
        relays = [c["hostName"] for c in self.computers
                  if c.get("computerSettings", {}).get("platformSettingRelayState", {}).get("value") == "true"]
        return {name: _address(21, i) for i, name in enumerate(relays)}

    def windows_agent_state(self) -> dict[str, dict[str, Any]]:
        """Each Windows agent's and relay's DSM host name → its roots preset and hotfix list."""
        out = {}
        for c in self.computers:
            kind = next((k for k, v in PLATFORMS.items() if v == c["platform"] and k.startswith("windows")), None)
            if kind is None or c.get("applianceFingerPrint") or c["agentVersion"] == "0.0.0.0":
                continue
            state = {"roots": "all-present", "hotfixes": DEFAULT_HOTFIXES[kind]}
            out[c["hostName"]] = {**state, **self.windows_agents.get(c["displayName"], {})}
        return out

    def windows_agent_addresses(self) -> dict[str, str]:
        """Each Windows agent's (not relay's: those have theirs) DSM host name → its own loopback address."""
        names = [n for n in self.windows_agent_state() if n not in self.relay_addresses()]
        return {name: _address(22, i) for i, name in enumerate(names)}

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
        agents = self.windows_agent_state()
        for name, addr in self.relay_addresses().items():
            out.append({"address": addr, "role": "relay", "name": name, "update": self.proxy,
                        **({"windows_agent": agents[name]} if name in agents else {})})
        for name, addr in self.windows_agent_addresses().items():
            out.append({"address": addr, "role": "windows_agent", "name": name, "windows_agent": agents[name]})
        for vm in self.vms:
            if vm.kind == "dsva":
                out.append({"address": vm.ip, "role": "dsva", "name": vm.name, "agent": vm.agent,
                            "build": vm.installed_build or vm.build, "ssh": vm.ssh})
            elif vm.kind == "windows":
                out.append({"address": vm.ip, "role": "windows", "name": vm.name, "vsepflt": vm.vsepflt,
                            "vmci": vm.vmci, "ssh": vm.ssh})
        return out

    def nsx_policy(self) -> dict[str, Any]:
        """The NSX-T endpoint protection policy (lab/nsx_server.py's config): one rule per cluster applying the
        Deep Security service profile to the cluster's group, whose members are its Windows guests with the tag."""
        profile = "/infra/service-references/Trend-Micro-Deep-Security/service-profiles/Default-EBT"
        groups = {cl: f"/infra/domains/default/groups/DS-{cl}" for cl in self.clusters}
        cluster_of = {h: cl for cl, hosts in self.clusters.items() for h in hosts}
        members: dict[str, list[dict[str, Any]]] = {path: [] for path in groups.values()}
        for n, vm in enumerate(self.vms, 1):
            if vm.kind == "windows" and vm.nsx_tag:
                members[groups[cluster_of[vm.host]]].append({
                    "name": vm.name, "host": vm.host, "instance_uuid": vm.instance_uuid, "bios_uuid": vm.uuid,
                    "moref_on_host": str(n), "power_state": {"poweredOn": "VM_RUNNING", "suspended": "VM_SUSPENDED"}
                    .get(vm.power, "VM_STOPPED")})
        rules = [{"id": f"protect-{cl}", "display_name": f"Deep Security {cl}", "sequence": i, "groups": [path],
                  "service_profiles": [profile]} for i, (cl, path) in enumerate(groups.items(), 1)]
        return {"policies": [{"id": "deep-security", "domain": "default", "display_name": "Deep Security agentless",
                              "sequence": 1, "rules": rules}], "members": members}

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
            "guest_hostname": vm.name.lower(), "ip": vm.ip, "instance_uuid": vm.instance_uuid}


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
    for extra in spec.get("extra_vms") or []:  # one more guest on a host, leaving every other VM as it was
        if extra["host"] not in host_address:
            raise SystemExit(f"scenario {spec['name']}: extra_vms: {extra['name']}: expected a host of the scenario")
        vms.append(LabVm(extra["name"], extra["host"], "windows", _uuid(extra["host"], extra["name"]),
                         ip=_address(50, guests)))
        guests += 1
    for vm in vms:
        vm.instance_uuid = _uuid(vm.host, f"{vm.name}/instance")
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
    fleet.windows_agents = dict(spec.get("windows_agents") or {})
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
    _security_updates(fleet, spec.get("security_updates") or {})
    return fleet


def _security_updates(fleet: LabFleet, spec: dict[str, Any]) -> None:
    """Every agent's last security update: successful, current and recent, unless the scenario says otherwise
    (``failed``: update status error with the KB's message; ``stale``: anti-malware components not the latest;
    ``hours_ago``: name → hours since the last change)."""
    now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    by_name = {c["displayName"]: c for c in fleet.computers if "agentFingerPrint" in c and c["agentFingerPrint"]}
    named = [*spec.get("failed", []), *spec.get("stale", []), *(spec.get("hours_ago") or {})]
    for name in named:
        if name not in by_name:
            raise SystemExit(f"scenario {fleet.name}: security_updates: {name}: expected a computer with an agent")
    hours_ago = spec.get("hours_ago") or {}
    for name, record in by_name.items():
        failed, stale = name in spec.get("failed", []), name in spec.get("stale", [])
        platform = next((f"{os} (64 bit)" for os in ("Windows", "Solaris") if os in record["platform"]),
                        "Linux (64 bit)")
        record["securityUpdates"] = {
            "updateStatus": {"status": "error", "statusMessage": UPDATE_FAILED} if failed else
            {"status": "active", "statusMessage": "Up-to-date"},
            "lastChanged": now_ms - int(hours_ago.get(name, UPDATED_HOURS_AGO) * 3_600_000),
            "antiMalware": [{"name": comp, "forUseBy": f"Deep Security Agent {record['agentVersion']}",
                             "platform": platform, "version": old if stale and i == 0 else new,
                             "latest": not (stale and i == 0)}
                            for i, (comp, new, old) in enumerate(AM_COMPONENTS)],
        }


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
