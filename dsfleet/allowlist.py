"""What dsfleet may ask of hosts, and of which: the read-only commands by role (the allowlist) and the probe
plan of one host. The views, checks and shards read this; only ``remote`` talks to hosts (and imports the SSH
and WinRM libraries), so nothing that judges the snapshot depends on a transport.
"""

from __future__ import annotations

from dataclasses import dataclass

from .winready import CERTUTIL_ROOT, HOTFIX

MUX = {"nsx-v": "vShield-Endpoint-Mux", "nsx-t": "nsx-context-mux"}
DRIVERS = ("vsepflt", "vmci")
# The allowlist: every command the suite may run, by role. All are read-only status queries.
COMMANDS: dict[str, tuple[str, ...]] = {
    "windows": ("chcp", *(f"sc query {d}" for d in DRIVERS)),  # chcp: the code page the others are written in
    "dsva": ("service ds_agent status", "/opt/ds_agent/dsa_query -c GetAgentStatus", "rpm -q ds_agent"),
    "esxi:nsx-v": (f"/etc/init.d/{MUX['nsx-v']} status",),
    "esxi:nsx-t": (f"/etc/init.d/{MUX['nsx-t']} status",),
    "relay": (),  # the relay's commands are the update-source probe, built per run (updatepath.relay_command)
    # Windows computers with an agent or relay (WIN-001): the trusted roots and installed updates, read only.
    "windows_agent": ("chcp", CERTUTIL_ROOT, HOTFIX),
}
ALLOWED = frozenset(c for commands in COMMANDS.values() for c in commands)


def is_allowed(command: str) -> bool:
    """A fixed status command, or the relay's curl probe built by updatepath.relay_command (GET only)."""
    from .updatepath import CURL_COMMAND

    return command in ALLOWED or bool(CURL_COMMAND.match(command))


def commands_for(role: str, nsx: str) -> tuple[str, ...]:
    return COMMANDS[f"esxi:{nsx}" if role == "esxi" else role]


@dataclass(frozen=True)
class ProbeTarget:
    """One host to probe: its role (which commands), its object key and name, and where to reach it."""

    role: str
    key: str
    name: str
    address: str | None
    skip_reason: str | None = None  # set: the host is not contacted, and this says why
    commands: tuple[str, ...] = ()  # instead of the role's fixed commands (the relay's curl probe)
