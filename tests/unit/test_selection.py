"""Which checks -k / -m select, decided before the fleet is read (so only their sources are gathered)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsfleet.fixtures.selection import CheckDef, check_defs, select
from dsfleet.fixtures.session import FLEET_DIR

DEFS = [CheckDef("BLD-001", "test_dsva_agent_build_fixed", "test_builds", ("dsva", "policy")),
        CheckDef("PRT-002", "test_anti_malware_engine_online", "test_protection", ("protected_vm",)),
        CheckDef("DRV-001", "test_guest_drivers_running", "test_hosts", ("protected_windows_vm", "probe"))]
SEVERITY = {"BLD-001": "critical", "PRT-002": "critical", "DRV-001": "high"}


@pytest.mark.parametrize("keyword,markexpr,expected", [
    ("", "", ["BLD-001", "PRT-002", "DRV-001"]),
    ("BLD-001", "", ["BLD-001"]),
    ("BLD", "", ["BLD-001"]),
    ("not BLD-001", "", ["PRT-002", "DRV-001"]),
    ("BLD-001 or PRT-002", "", ["BLD-001", "PRT-002"]),
    ("test_hosts", "", ["DRV-001"]),
    ("esx-03", "", ["BLD-001", "PRT-002", "DRV-001"]),  # an object name: any check may have that object
    ("PRT-002 and esx-03", "", ["PRT-002"]),
    ("not esx-03", "", ["BLD-001", "PRT-002", "DRV-001"]),
    ("", "critical", ["BLD-001", "PRT-002"]),
    ("", "high or medium", ["DRV-001"]),
    ("BLD", "high", []),
    ("critical and not BLD", "", ["PRT-002"]),
])
def test_selection(keyword: str, markexpr: str, expected: list[str]) -> None:
    assert [d.check for d in select(DEFS, keyword, markexpr, SEVERITY)] == expected


def test_every_check_module_is_read() -> None:
    defs = check_defs(FLEET_DIR)
    assert len({d.check for d in defs}) == len(defs) >= 20
    assert CheckDef("BLD-001", "test_dsva_agent_build_fixed", "test_builds", ("dsva", "policy")) in defs


def test_a_bad_expression_is_left_to_pytest(tmp_path: Path) -> None:
    assert select(DEFS, "((", "", SEVERITY) == DEFS
