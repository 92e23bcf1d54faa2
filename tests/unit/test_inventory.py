"""Inventory validation: every error names the file, the key path and what is expected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsfleet import inventory
from dsfleet.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[2] / "inventories" / "example.yml"


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def minimal() -> dict[str, Any]:
    return {"name": "site", "nsx": "nsx-t",
            "dsm": {"url": "https://dsm:4119", "api_key_env": "DSM_KEY"},
            "vcenters": [{"name": "vc", "url": "https://vc/sdk", "user": "u", "password_env": "VC_PW"}]}


def test_example_documents_every_key_and_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    (tmp_path / "syslog").mkdir()
    text = text.replace("/var/log/remote/dsm/", str(tmp_path / "syslog"))
    for name in ("/etc/pki/dsm-ca.pem", "~/.ssh/esxi_ed25519", "~/.ssh/config", "/etc/pki/trend-activeupdate-ca.pem"):
        local = tmp_path / name.rsplit("/", 1)[1]
        local.write_text("x")
        text = text.replace(name, str(local))
    inv = inventory.load(write(tmp_path, text))
    assert inv.remote is not None and inv.remote.roles["windows"].transport == "winrm"
    assert inv.events is not None and inv.events.source == "soap" and inv.update_source is not None
    assert inv.dsm.on_premises and inv.nsx == "nsx-t" and inv.scope.clusters == ("cl-prod",)
    assert inv.relay_groups[0].relays == ("relay-01.example.local", "relay-02.example.local")
    assert inv.update_proxy is not None and inv.tls_exceptions == []
    assert inv.deadline_s == 900
    assert inv.security_update_max_age_h == 48
    assert inv.nsx_manager == inventory.NsxManager("nsx-t", "https://nsx.example.local", "svc-dsfleet-audit",
                                                   "DSFLEET_NSX_PASSWORD", inventory.Tls(True, None), 30.0, 1000)
    assert inv.offline_segments == (inventory.OfflineSegment("plant-a", "relay-01.example.local",
                                                             ("relay-plant-01.example.local",)),)


def test_defaults_are_verifying_and_documented(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, minimal()))
    assert inv.dsm.tls.verify and inv.dsm.tls.requests_verify is True
    assert inv.dsm.auth == "api-secret-key" and inv.dsm.page_size == 5000
    assert inv.scope.everything and inv.dsva_vm_pattern == inventory.DEFAULT_DSVA_PATTERN


def test_tls_off_is_recorded(tmp_path: Path) -> None:
    data = minimal()
    data["dsm"]["tls"] = {"verify": False}
    inv = inventory.load(write(tmp_path, data))
    assert inv.tls_exceptions == ["DSM https://dsm:4119"] and inv.dsm.tls.requests_verify is False


def mutate(path: str, value: Any) -> dict[str, Any]:
    data = minimal()
    node: Any = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("path,value,field,expected", [
    ("name", KeyError, "name", "a non-empty name for reports (required)"),
    ("dsm.url", "http://dsm:4119", "dsm.url", "an https:// URL of the DSM"),
    ("dsm.auth", "basic", "dsm.auth", "one of api-secret-key, apikey"),
    ("dsm.api_key_env", "not a name", "dsm.api_key_env", "the name of an environment variable"),
    ("dsm.page_size", 0, "dsm.page_size", "an integer from 1 to 5000"),
    ("dsm.timeout_s", True, "dsm.timeout_s", "a positive number of seconds"),
    ("dsm.tls", {"verify": "yes"}, "dsm.tls.verify", "true or false"),
    ("dsm.tls", {"ca_bundle": "missing.pem"}, "dsm.tls.ca_bundle", "an existing PEM file"),
    ("dsm.password", "hunter2", "dsm.password", "no such key"),
    ("vcenters", [], "vcenters", "a non-empty list"),
    ("vcenters.0.url", "vc.local", "vcenters[0].url", "an https:// URL of the vCenter"),
    ("vcenters.0.password_env", KeyError, "vcenters[0].password_env", "the name of an environment variable"),
    ("nsx", "nsx-x", "nsx", "one of nsx-v, nsx-t"),
    ("nsx", {"type": "nsx-t"}, "nsx.url", "an https:// URL of the NSX Manager (required)"),
    ("nsx", {"type": "nsx-x", "url": "https://nsx"}, "nsx.type", "one of nsx-v, nsx-t"),
    ("nsx", {"type": "nsx-t", "url": "http://nsx", "user": "u", "password_env": "P"}, "nsx.url",
     "an https:// URL of the NSX Manager"),
    ("nsx", {"type": "nsx-t", "url": "https://nsx", "user": "u", "password_env": "P", "password": "x"},
     "nsx.password", "no such key"),
    ("nsx", {"type": "nsx-t", "url": "https://nsx", "user": "u", "password_env": "P", "page_size": 5000},
     "nsx.page_size", "an integer from 1 to 1000"),
    ("scope", {"clusters": "cl-a"}, "scope.clusters", "a list of strings"),
    ("dsva", {"vm_name_pattern": "("}, "dsva.vm_name_pattern", "a regular expression"),
    ("relay_groups", [{"id": -1, "relays": []}], "relay_groups[0].id", "relayListID"),
    ("update_proxy", {"url": "ftp://p"}, "update_proxy.url", "an http:// or https:// proxy URL"),
])
def test_errors_name_file_field_and_expectation(tmp_path: Path, path: str, value: Any, field: str,
                                                expected: str) -> None:
    file = write(tmp_path, mutate(path, value))
    with pytest.raises(InputError) as err:
        inventory.load(file)
    message = str(err.value)
    assert message.startswith(f"{file}: {field}: expected ") and expected in message
    assert "\n" not in message


@pytest.mark.parametrize("remote,field,expected", [
    ({"windows": {"transport": "telnet", "user": "a", "password_env": "P"}}, "remote.windows.transport",
     "one of ssh, winrm"),
    ({"esxi": {"transport": "winrm", "user": "root", "password_env": "P"}}, "remote.esxi.transport", "one of ssh"),
    ({"dsva": {"user": "dsva"}}, "remote.dsva", "password_env or key_file"),
    ({"dsva": {"user": "dsva", "key_file": "nope"}}, "remote.dsva.key_file", "an existing file"),
    ({"concurrency": 0}, "remote.concurrency", "an integer from 1 to 512"),
    ({"ssh_client": "libssh"}, "remote.ssh_client", "asyncssh or paramiko"),
    ({"windows": {"user": "a", "password_env": "P", "address": "dns"}}, "remote.windows.address", "one of name, ip"),
    ({"esxi": {"user": "root", "password_env": "P", "sudo": True}}, "remote.esxi.sudo", "no such key"),
])
def test_remote_errors(tmp_path: Path, remote: dict[str, Any], field: str, expected: str) -> None:
    data = minimal()
    data["remote"] = remote
    file = write(tmp_path, data)
    with pytest.raises(InputError) as err:
        inventory.load(file)
    assert str(err.value).startswith(f"{file}: {field}: expected ") and expected in str(err.value)


@pytest.mark.parametrize("key,value,field,expected", [
    ("events", {"source": "syslog"}, "events.source", "one of soap, cef"),
    ("events", {"source": "soap", "soap_user": "a"}, "events", "soap_user and soap_password_env"),
    ("events", {"source": "cef"}, "events.cef_paths", "at least one file or folder"),
    ("events", {"source": "cef", "cef_paths": ["nope.log"]}, "events.cef_paths", "existing files or folders"),
    ("update_source", {"trust_ca": "missing.pem"}, "update_source.trust_ca", "an existing file"),
    ("update_source", {"timeout_s": -1}, "update_source.timeout_s", "a positive number of seconds"),
    ("update_source", {"relays": "relay-01"}, "update_source.relays", "a list of strings"),
])
def test_update_and_event_errors(tmp_path: Path, key: str, value: Any, field: str, expected: str) -> None:
    data = minimal()
    data[key] = value
    file = write(tmp_path, data)
    with pytest.raises(InputError) as err:
        inventory.load(file)
    assert str(err.value).startswith(f"{file}: {field}: expected ") and expected in str(err.value)


def test_remote_defaults_verify_host_keys(tmp_path: Path) -> None:
    data = minimal()
    data["remote"] = {"windows": {"transport": "winrm", "user": "a", "password_env": "P"}}
    inv = inventory.load(write(tmp_path, data))
    assert inv.remote is not None and inv.remote.verify_host_keys and inv.remote.concurrency == 256
    assert str(inv.remote.known_hosts).endswith(".ssh/known_hosts") and inv.remote.roles["windows"].address == "ip"
    data["remote"]["verify_host_keys"] = False
    assert "SSH host keys" in " ".join(inventory.load(write(tmp_path, data)).tls_exceptions)


def test_duplicate_vcenter_names(tmp_path: Path) -> None:
    data = minimal()
    data["vcenters"].append(dict(data["vcenters"][0]))
    with pytest.raises(InputError, match=r"vcenters\[1\]\.name: expected a name not used"):
        inventory.load(write(tmp_path, data))


@pytest.mark.parametrize("text,field", [("name: [unclosed", "line 1"), ("- a list", "(top level)")])
def test_broken_files(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(InputError, match=re.escape(f": {field}: expected")):
        inventory.load(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.yml: \(file\): expected a readable inventory file"):
        inventory.load(tmp_path / "nope.yml")


def test_secrets_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = inventory.load(write(tmp_path, minimal()))
    monkeypatch.delenv("DSM_KEY", raising=False)
    with pytest.raises(InputError, match="dsm.api_key_env: expected environment variable DSM_KEY to be set"):
        inv.secret("DSM_KEY", "dsm.api_key_env")
    monkeypatch.setenv("DSM_KEY", "s3cret")
    assert inv.secret("DSM_KEY", "dsm.api_key_env") == "s3cret"
