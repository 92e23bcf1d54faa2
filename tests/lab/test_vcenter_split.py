"""The vCenter gatherer's split read (several processes, one bulk query each) equals the single read."""

from __future__ import annotations

import os
from typing import Any

import pytest

from dsfleet import inventory, vcenter


def test_split_read_matches_single_read(start_lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = start_lab("engine-offline")
    monkeypatch.setattr(os, "environ", dict(os.environ, **lab.env))
    inv = inventory.load(lab.inventory_path)
    endpoint = inv.vcenters[0]
    password = inv.secret(endpoint.password_env, "vcenters[0].password_env")
    single = vcenter.gather(endpoint, password)
    monkeypatch.setattr(vcenter, "VMS_PER_PROCESS", 5)  # a tuning threshold, not the client: force 2 workers
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    split = vcenter.gather(endpoint, password)
    assert split.error is None and single.error is None
    assert sorted(split.vms, key=lambda v: v.key) == sorted(single.vms, key=lambda v: v.key)
    assert split.hosts == single.hosts and len(split.vms) == len(lab.fleet.vms)
    assert single.api_calls == 5  # RetrieveContent, CreateContainerView, RetrievePropertiesEx x2, DestroyView
    assert split.api_calls == 8  # the VM read moves to 2 workers, each with its own RetrieveContent
