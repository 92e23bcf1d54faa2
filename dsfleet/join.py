"""Join DSM computers to vCenter VMs: BIOS UUID first, then name; record what is left on both sides."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from .snapshot import DsmComputer, JoinResult, Match, VcVm


def names_of(*values: str | None) -> set[str]:
    """Lower-case names and short names (FQDN → host) to match on; IP addresses stay whole."""
    out: set[str] = set()
    for value in values:
        if not value:
            continue
        text = value.strip().lower()
        out.add(text)
        if not _maybe_ip(text):
            out.add(text.split(".", 1)[0])  # FQDN → short name; an IP address stays whole
    return out


_IP_CHARS = frozenset("0123456789abcdef.:%")


def _maybe_ip(text: str) -> bool:
    """An IP address literal? Names are the common case: a character no address has answers it at once (the
    parse and its exception cost more than the rest of the join, at 20,000 names)."""
    if not _IP_CHARS.issuperset(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def join(computers: list[DsmComputer], vms: list[VcVm]) -> JoinResult:
    result = JoinResult()
    by_uuid: dict[str, list[VcVm]] = defaultdict(list)
    by_name: dict[str, list[VcVm]] = defaultdict(list)
    for vm in vms:
        if vm.template:
            continue
        if vm.uuid:
            by_uuid[vm.uuid.lower()].append(vm)
        for name in names_of(vm.name, vm.guest_hostname):
            by_name[name].append(vm)

    taken: set[str] = set()
    by_name_pending: list[DsmComputer] = []
    for c in computers:  # UUIDs are unambiguous: match them all before any name is considered
        candidates = by_uuid.get(c.bios_uuid.lower(), []) if c.bios_uuid else []
        if len(candidates) == 1 and candidates[0].key not in taken:
            result.matches.append(Match(c.id, candidates[0].key, "uuid"))
            taken.add(candidates[0].key)
        else:
            if len(candidates) > 1:
                result.ambiguous.append(f"computer {c.name} (ID {c.id}): BIOS UUID {c.bios_uuid} is shared by "
                                        f"{len(candidates)} VMs")
            by_name_pending.append(c)
    for c in by_name_pending:
        found = {vm.key: vm for n in names_of(c.host_name, c.display_name) for vm in by_name.get(n, [])}
        free = [key for key in found if key not in taken]
        if len(free) == 1:
            result.matches.append(Match(c.id, free[0], "name"))
            taken.add(free[0])
        else:
            if len(free) > 1:
                result.ambiguous.append(f"computer {c.name} (ID {c.id}): name matches {len(free)} VMs")
            result.unmatched_computers.append(c.id)
    result.unmatched_vms = sorted(vm.key for vm in vms if not vm.template and vm.key not in taken)
    return result
