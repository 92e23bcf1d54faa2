"""The vCenter gatherer's split read (several processes, one bulk query each) equals the single read."""

from __future__ import annotations

import os
from typing import Any

import pytest

from dsfleet import inventory, vcenter


def _lab_vcenter(start_lab: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, str]:
    """The engine-offline lab's vCenter: the lab, its inventory endpoint and password."""
    lab = start_lab("engine-offline")
    monkeypatch.setattr(os, "environ", dict(os.environ, **lab.env))
    endpoint = inventory.load(lab.inventory_path).vcenters[0]
    return lab, endpoint, lab.env[endpoint.password_env]


def test_split_read_matches_single_read(start_lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lab, endpoint, password = _lab_vcenter(start_lab, monkeypatch)
    single = vcenter.gather(endpoint, password)
    monkeypatch.setattr(vcenter, "VMS_PER_PROCESS", 5)  # a tuning threshold, not the client: force 2 workers
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    split = vcenter.gather(endpoint, password)
    assert split.error is None and single.error is None
    assert sorted(split.vms, key=lambda v: v.key) == sorted(single.vms, key=lambda v: v.key)
    assert split.hosts == single.hosts and len(split.vms) == len(lab.fleet.vms)
    assert single.api_calls == 5  # RetrieveContent, CreateContainerView, RetrievePropertiesEx x2, DestroyView
    assert split.api_calls == 8  # the VM read moves to 2 workers, each with its own RetrieveContent


def test_fast_read_matches_pyvmomis_deserializer(start_lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyvmomi's own deserializer is the reference the streaming parse is checked against, on the same vCenter."""
    lab, endpoint, password = _lab_vcenter(start_lab, monkeypatch)
    chosen: list[str] = []
    choose = vcenter.collector_for

    def recorded(stub: Any, collector: Any, counter: Any) -> vcenter.Collector:
        made = choose(stub, collector, counter)
        chosen.append(type(made).__name__)
        return made

    monkeypatch.setattr(vcenter, "collector_for", recorded)
    fast = vcenter.gather(endpoint, password)
    # A dispatch choice, not a client patch: the same session and calls, answered by pyvmomi's deserializer.
    monkeypatch.setattr(vcenter, "collector_for", lambda stub, collector, counter: vcenter.PyvmomiCollector(collector))
    reference = vcenter.gather(endpoint, password)
    assert chosen == ["RawCollector"]
    assert fast.error is None and reference.error is None
    assert fast.hosts == reference.hosts and fast.vms == reference.vms
    assert len(fast.vms) == len(lab.fleet.vms) and any(h.cluster for h in fast.hosts)
    assert {v.power_state for v in fast.vms} > {"poweredOn"} and any(v.host_key for v in fast.vms)
    assert fast.api_calls == reference.api_calls == 5  # pyvmomi's calls are counted once, by the stub's wrapper
