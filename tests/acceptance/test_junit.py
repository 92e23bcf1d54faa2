"""junit.xml as CI systems read it: one test case per check and object, with the promised properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..conftest import run_suite

PROPERTIES = {"check", "severity", "object", "identity", "observed", "required", "source", "outcome"}


def test_every_test_case_names_check_and_object_and_carries_the_properties(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    root = ET.parse(run.run_dir / "junit.xml").getroot()
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(run.results)
    by_name = {}
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.findall("./properties/property")}
        assert set(props) == PROPERTIES, (case.get("name"), props)
        # Jenkins and GitLab show classname and name: the name holds the check id and the object.
        assert f"[{props['check']}:" in case.get("name", "") and case.get("classname")
        by_name[(props["check"], props["object"])] = (case, props)
    case, props = by_name[("DRV-001", "WIN-01-01@esx-01")]
    assert props["outcome"] == "fail" and "vsepflt" in props["observed"] and case.find("failure") is not None
    case, props = by_name[("DRV-001", "WIN-01-05@esx-01")]  # the unreachable guest: an error, in set-up
    assert props["outcome"] == "error" and case.find("error") is not None
    assert by_name[("PRT-005", "esx-01")][1]["outcome"] == "pass"
