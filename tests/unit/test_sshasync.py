"""The asyncssh client's connection choices: algorithm preferences and what an ssh_config changes."""

from __future__ import annotations

from pathlib import Path

from dsfleet.inventory import RemoteAccess, RoleAccess
from dsfleet.remote import _ssh_config
from dsfleet.sshasync import _algorithms, _host_key_algs, endpoint


def remote(ssh_config: Path | None = None) -> RemoteAccess:
    return RemoteAccess(concurrency=8, processes=1, connect_timeout_s=5.0, command_timeout_s=5.0,
                        verify_host_keys=True, known_hosts=Path("/nonexistent"), ssh_config=ssh_config, roles={})


ESXI = RoleAccess(role="esxi", transport="ssh", user="root", port=None, password_env="P", key_file=None,
                  address="name")


def test_gcm_first_and_every_default_cipher_kept() -> None:
    ciphers, compression, _ = _algorithms()
    assert ciphers[:2] == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    # A server without GCM (an old or FIPS-restricted sshd) still finds a common cipher.
    assert {"chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"} <= set(ciphers)
    assert compression[0] == "none"


def test_known_host_key_types_are_asked_for_first() -> None:
    defaults = _host_key_algs(())
    rsa = _host_key_algs(("ssh-rsa",))
    assert rsa[:3] == ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] and sorted(rsa) == sorted(defaults)
    assert _host_key_algs(("ecdsa-sha2-nistp256",))[0] == "ecdsa-sha2-nistp256"


def test_endpoint_without_ssh_config() -> None:
    where = endpoint("esx-01.example.local", ESXI, remote(), None)
    assert (where.hostname, where.port, where.user, where.key_file, where.proxy_command, where.known_name) == (
        "esx-01.example.local", 22, "root", None, None, "esx-01.example.local")
    off_port = endpoint("10.0.0.5", RoleAccess(role="windows", transport="ssh", user="Administrator", port=2222,
                                               password_env="P", key_file=None, address="ip"), remote(), None)
    assert off_port.known_name == "[10.0.0.5]:2222"  # as OpenSSH writes a non-default port in known_hosts


def test_ssh_config_maps_host_port_user_identity_and_proxy(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host esx-01\n    HostName 192.0.2.11\n    Port 2022\n    User audit\n"
                      "    IdentityFile ~/.ssh/esxi_ed25519\n    ProxyCommand ssh -W %h:%p bastion\n")
    where = endpoint("esx-01", ESXI, remote(config), _ssh_config(str(config)).lookup)
    assert (where.hostname, where.port, where.user) == ("192.0.2.11", 2022, "audit")
    assert where.key_file is not None and where.key_file.endswith("/.ssh/esxi_ed25519")
    assert where.proxy_command == "ssh -W 192.0.2.11:2022 bastion"
    assert where.known_name == "[192.0.2.11]:2022"
    # The key the inventory names wins over the ssh_config's, as with testinfra's backend.
    named = endpoint("esx-01", RoleAccess(role="esxi", transport="ssh", user="root", port=None, password_env=None,
                                          key_file=tmp_path / "inventory_key", address="name"),
                     remote(config), _ssh_config(str(config)).lookup)
    assert named.key_file == str(tmp_path / "inventory_key")
