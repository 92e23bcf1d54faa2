"""Start and stop a lab scenario: certificates, the vCenter simulator, the DSM stand-in, the inventory.

``Lab(...).start()`` writes into its folder: ``ca.pem``, ``inventory.yml`` (points at the lab, names
environment variables only), ``lab.env`` (the generated secrets, mode 0600) and ``state.json`` (the
PIDs ``stop()`` ends). Servers bind loopback addresses only.

Faults on a running lab: ``set_faults({...})`` writes ``faults.json``, which every stand-in re-reads when it
changes (keys in lab/faults.py's callers: "dsm", "ssh", "au"); ``start_fault_endpoint()`` starts
lab/faults.py, an HTTPS address that refuses, hangs, errors or proxies as told. Each stand-in logs what it
was asked to ``requests-<source>.log`` / ``commands-ssh.log``, so tests can prove the suite only reads.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh
import trustme
import yaml

from . import scenario as scenario_mod

ROOT = Path(__file__).resolve().parent.parent
VCSIM_SRC = ROOT / "lab" / "vcsim" / "main.go"
VCSIM_BIN = ROOT / ".cache" / "dsfleet-vcsim"
VC_HOST, DSM_HOST, AU_HOST, PROXY_HOST = "127.0.20.1", "127.0.20.2", "127.0.20.5", "127.0.20.6"
FAULT_HOST, CATCHER_HOST, REFUSED_HOST = "127.0.20.7", "127.0.20.8", "127.0.20.9"
NSX_HOST, NSX_USER, ENV_NSX_PASSWORD = "127.0.20.4", "dsfleet-audit", "DSFLEET_LAB_NSX_PASSWORD"
WRONG_NAME = "another-host.lab.invalid"  # the name on the wrong-name endpoint's certificate
MITMDUMP = ROOT / ".cache" / "mitmproxy" / "bin" / "mitmdump"
TINYPROXY = Path("/usr/bin/tinyproxy")
ENV_SOAP_PASSWORD = "DSFLEET_LAB_SOAP_PASSWORD"
SOAP_USER = "dsfleet-audit"
ENV_DSM_KEY, ENV_VC_PASSWORD = "DSFLEET_LAB_DSM_KEY", "DSFLEET_LAB_VC_PASSWORD"
ENV_GUEST_PASSWORD = "DSFLEET_LAB_GUEST_PASSWORD"
SSH_PORT = 2222
VC_USER = "administrator@vsphere.local"


def ensure_vcsim() -> Path:
    """Build the Go launcher from Debian's govmomi sources when missing or older than its source."""
    if VCSIM_BIN.exists() and VCSIM_BIN.stat().st_mtime >= VCSIM_SRC.stat().st_mtime:
        return VCSIM_BIN
    VCSIM_BIN.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOCACHE=str(ROOT / ".cache" / "go"))
    try:
        subprocess.run(["go", "build", "-o", str(VCSIM_BIN), "./lab/vcsim"], cwd=ROOT, env=env, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"lab: cannot build the vCenter simulator ({err}); run lab/bootstrap first") from None
    return VCSIM_BIN


class Lab:
    def __init__(self, scenario: str, workdir: Path, *, hosts: int | None = None, vms_per_host: int | None = None,
                 vc_delay_ms: int = 0, dsm_latency_ms: int = 0, dsm_throttle_every: int = 0,
                 ssh_latency_ms: int = 0, windows_transport: str = "ssh") -> None:
        self.spec = scenario_mod.load(scenario)
        self.fleet = scenario_mod.build(self.spec, hosts=hosts, vms_per_host=vms_per_host)
        self.dir = workdir.resolve()
        self.vc_delay_ms, self.dsm_latency_ms, self.dsm_throttle_every = vc_delay_ms, dsm_latency_ms, dsm_throttle_every
        self.ssh_latency_ms = ssh_latency_ms
        self.windows_transport = windows_transport  # ssh (OpenSSH for Windows) or winrm (WS-Management)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}
        self.ca: trustme.CA | None = None

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yml"

    def start(self, timeout_s: float = 120) -> "Lab":
        stop_dir(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {ENV_DSM_KEY: secrets.token_urlsafe(24), ENV_VC_PASSWORD: secrets.token_urlsafe(18),
                    ENV_GUEST_PASSWORD: secrets.token_urlsafe(18), ENV_SOAP_PASSWORD: secrets.token_urlsafe(18),
                    ENV_NSX_PASSWORD: secrets.token_urlsafe(18)}
        ca = self.ca = trustme.CA(organization_name="dsfleet lab CA")
        (self.dir / "faults.json").unlink(missing_ok=True)
        ca.cert_pem.write_to_path(str(self.dir / "ca.pem"))
        for name, host in (("vcenter", VC_HOST), ("dsm", DSM_HOST), ("nsx", NSX_HOST)):
            self._issue(name, host)
        self._write_ssh_material()
        if self.windows_transport == "winrm":
            ips = [e["address"] for e in self.fleet.ssh_endpoints() if e["role"] == "windows"]
            self._issue("winrm", *ips)
        for ready in ("vcenter.ready", "dsm.ready", "ssh.ready", "winrm.ready", "au.ready", "nsx.ready"):
            (self.dir / ready).unlink(missing_ok=True)
        log = open(self.dir / "lab.log", "ab")
        # The update source first: the DSM's settings and the proxies need its address.
        au_url = self._start_update_path(log)

        vc_spec = {"listen": f"{VC_HOST}:0", "user": VC_USER, "cert": str(self.dir / "vcenter-cert.pem"),
                   "key": str(self.dir / "vcenter-key.pem"), "delay_ms": self.vc_delay_ms,
                   "ready_file": str(self.dir / "vcenter.ready"), "clusters": self.fleet.vcsim_clusters(),
                   "request_log": str(self.dir / "requests-vcenter.log"), "moref_file": str(self.dir / "morefs.json")}
        (self.dir / "vcenter.json").write_text(json.dumps(vc_spec))
        dsm_config = {"host": DSM_HOST, "port": 0, "cert": str(self.dir / "dsm-cert.pem"),
                      "key": str(self.dir / "dsm-key.pem"), "ready_file": str(self.dir / "dsm.ready"),
                      "manager_version": self.fleet.manager_version, "auth": self.fleet.dsm_auth,
                      "latency_ms": self.dsm_latency_ms, "throttle_every": self.dsm_throttle_every,
                      "computers": self.fleet.computers,
                      "settings": {"platformSettingUpdateSecurityPrimarySourceMode": "Other Update Source",
                                   "platformSettingUpdateSecurityPrimarySourceUrl":
                                       f"{au_url}/iau_server.dll{self.fleet.url_suffix}",
                                   "platformSettingProxyAgentUpdateProxyId": "1"},
                      "events": self.fleet.events(dt.datetime.now(dt.timezone.utc).replace(microsecond=0)),
                      "soap_user": SOAP_USER, "cef_file": str(self.dir / "syslog" / "dsm.cef")}
        (self.dir / "dsm.json").write_text(json.dumps(dsm_config))

        binary = ensure_vcsim()
        # The simulator writes a file per VM: keep them on tmpfs where there is one.
        tmp = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        vc_env = dict(os.environ, DSFLEET_VCSIM_PASSWORD=self.env[ENV_VC_PASSWORD], **({"TMPDIR": tmp} if tmp else {}))
        self.procs.append(subprocess.Popen([str(binary), "-spec", str(self.dir / "vcenter.json")], env=vc_env,
                                           stdout=log, stderr=log, start_new_session=True))
        dsm_env = dict(os.environ, **{ENV_DSM_KEY: self.env[ENV_DSM_KEY], ENV_SOAP_PASSWORD: self.env[ENV_SOAP_PASSWORD]})
        self.procs.append(subprocess.Popen([sys.executable, "-m", "lab.dsm_server", str(self.dir / "dsm.json")],
                                           cwd=ROOT, env=dsm_env, stdout=log, stderr=log, start_new_session=True))
        (self.dir / "nsx.json").write_text(json.dumps({
            "host": NSX_HOST, "cert": str(self.dir / "nsx-cert.pem"), "key": str(self.dir / "nsx-key.pem"),
            "ready_file": str(self.dir / "nsx.ready"), "user": NSX_USER, "morefs": str(self.dir / "morefs.json"),
            # Scenario fleets page by 2 so every list really pages; benchmark fleets by NSX's own 1000.
            "page_size": 2 if len(self.fleet.vms) <= 100 else 1000, **self.fleet.nsx_policy()}))
        self.procs.append(subprocess.Popen([sys.executable, "-m", "lab.nsx_server", str(self.dir / "nsx.json")],
                                           cwd=ROOT, env=dict(os.environ, **{ENV_NSX_PASSWORD: self.env[ENV_NSX_PASSWORD]}),
                                           stdout=log, stderr=log, start_new_session=True))
        ssh_env = dict(os.environ, **{ENV_GUEST_PASSWORD: self.env[ENV_GUEST_PASSWORD]})
        self.procs.append(subprocess.Popen([sys.executable, "-m", "lab.ssh_server", str(self.dir / "ssh.json")],
                                           cwd=ROOT, env=ssh_env, stdout=log, stderr=log, start_new_session=True))
        if self.windows_transport == "winrm":
            self.procs.append(subprocess.Popen([sys.executable, "-m", "lab.winrm_server", str(self.dir / "ssh.json")],
                                               cwd=ROOT, env=ssh_env, stdout=log, stderr=log, start_new_session=True))
        self._record_pids()
        try:
            vc_url = self._wait("vcenter.ready", timeout_s)
            dsm_url = self._wait("dsm.ready", timeout_s)
            self._wait("ssh.ready", timeout_s)
            self.nsx_url = self._wait("nsx.ready", timeout_s)
            if self.windows_transport == "winrm":
                self._wait("winrm.ready", timeout_s)
        except BaseException:
            self.stop()
            raise
        self._write_inventory(vc_url, dsm_url)
        env_file = self.dir / "lab.env"
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))
        return self

    def _record_pids(self) -> None:
        (self.dir / "state.json").write_text(json.dumps({"pids": [p.pid for p in self.procs],
                                                         "scenario": self.fleet.name}))

    def _start_update_path(self, log: Any) -> str:
        """The ActiveUpdate stand-in (its own CA) and the scenario's proxy in front of it; returns its URL."""
        au_ca = trustme.CA(organization_name="Trend Micro lab ActiveUpdate")
        au_ca.cert_pem.write_to_path(str(self.dir / "au-ca.pem"))
        leaf = au_ca.issue_cert(AU_HOST)
        leaf.private_key_pem.write_to_path(str(self.dir / "au-key.pem"))
        (self.dir / "au-cert.pem").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        (self.dir / "au.json").write_text(json.dumps({"host": AU_HOST, "cert": str(self.dir / "au-cert.pem"),
                                                      "key": str(self.dir / "au-key.pem"),
                                                      "ready_file": str(self.dir / "au.ready"),
                                                      "faults": str(self.dir / "faults.json"),
                                                      "request_log": str(self.dir / "requests-au.log")}))
        self.procs.append(subprocess.Popen([sys.executable, "-m", "lab.au_server", str(self.dir / "au.json")],
                                           cwd=ROOT, stdout=log, stderr=log, start_new_session=True))
        self._record_pids()
        au_url = self._wait("au.ready", 30)
        au_port = int(au_url.rsplit(":", 1)[1])
        self.proxy_port = _free_port(PROXY_HOST)
        if self.fleet.proxy == "plain":
            conf = self.dir / "tinyproxy.conf"
            logfile = self.dir / "tinyproxy.log"
            logfile.touch(mode=0o666)
            os.chmod(logfile, 0o666)  # tinyproxy drops to nobody before it opens its log
            conf.write_text(f"User nobody\nGroup nogroup\nListen {PROXY_HOST}\nPort {self.proxy_port}\nTimeout 30\n"
                            f"LogFile \"{logfile}\"\nLogLevel Info\nMaxClients 200\nAllow 127.0.0.0/8\n"
                            f"ConnectPort {au_port}\nDisableViaHeader Yes\n")
            command = [str(TINYPROXY), "-d", "-c", str(conf)]
        elif self.fleet.proxy == "inspecting":
            # mitmproxy re-signs every server certificate with its own CA, as an SSL-inspecting proxy does.
            command = [str(MITMDUMP), "--listen-host", PROXY_HOST, "--listen-port", str(self.proxy_port), "-q",
                       "--set", f"confdir={self.dir / 'mitmproxy'}",
                       "--set", f"ssl_verify_upstream_trusted_ca={self.dir / 'au-ca.pem'}"]
        else:
            return au_url  # proxy-down: the inventory names a proxy port where nothing listens
        if not Path(command[0]).exists():
            raise SystemExit(f"lab: {command[0]} is missing; run lab/bootstrap first")
        self.procs.append(subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True))
        self._record_pids()
        _wait_port(PROXY_HOST, self.proxy_port, 30, self.procs[-1])
        return au_url

    def _write_ssh_material(self) -> None:
        """Host and client keys, known_hosts for every endpoint, an ssh_config naming the ESXi hosts."""
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        host_key.write_private_key(str(self.dir / "ssh_host_key"))
        client_key.write_private_key(str(self.dir / "client_key"))
        client_key.write_public_key(str(self.dir / "client_key.pub"))
        os.chmod(self.dir / "client_key", 0o600)
        public = host_key.export_public_key().decode().strip()
        endpoints = self.fleet.ssh_endpoints()
        (self.dir / "known_hosts").write_text("".join(f"[{e['address']}]:{SSH_PORT} {public}\n" for e in endpoints))
        # Real ESXi hosts are reached by the name vCenter knows them by; here that name maps to its address.
        names = {**self.fleet.host_address, **self.fleet.relay_addresses(), **self.fleet.windows_agent_addresses()}
        (self.dir / "ssh_config").write_text("".join(f"Host {host}\n    HostName {addr}\n"
                                                     for host, addr in names.items()))
        (self.dir / "ssh.json").write_text(json.dumps({
            "port": SSH_PORT, "host_key": str(self.dir / "ssh_host_key"),
            "authorized_keys": str(self.dir / "client_key.pub"), "latency_ms": self.ssh_latency_ms,
            "nsx": self.fleet.nsx, "ready_file": str(self.dir / "ssh.ready"), "endpoints": endpoints,
            "winrm_cert": str(self.dir / "winrm-cert.pem"), "winrm_key": str(self.dir / "winrm-key.pem"),
            "winrm_ready_file": str(self.dir / "winrm.ready"), "au_ca": str(self.dir / "au-ca.pem"),
            "faults": str(self.dir / "faults.json"),
            # Past 1,000 endpoints one process per core (lab.ssh_server.serve_in_processes).
            "processes": min(os.cpu_count() or 1, 1 + len(endpoints) // 1000)}))

    def _issue(self, name: str, *hosts: str) -> None:
        """A leaf certificate from the lab CA: <name>-cert.pem (chain) and <name>-key.pem."""
        assert self.ca is not None
        leaf = self.ca.issue_cert(*hosts)
        leaf.private_key_pem.write_to_path(str(self.dir / f"{name}-key.pem"))
        (self.dir / f"{name}-cert.pem").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))

    def set_faults(self, faults: dict[str, Any]) -> None:
        """Replace the running stand-ins' faults (the contract's faults.json); ``{}`` clears them. Atomic, so a
        stand-in never reads half a file."""
        _write_atomic(self.dir / "faults.json", json.dumps(faults))

    def start_fault_endpoint(self, mode: str = "pass", **options: Any) -> "FaultEndpoint":
        """Start lab/faults.py (stopped with the lab) in ``mode``; change it later with ``FaultEndpoint.set``."""
        self._issue("fault", FAULT_HOST)
        self._issue("fault-wrong-name", WRONG_NAME)
        self._issue("catcher", CATCHER_HOST)
        endpoint = FaultEndpoint(self.dir)
        endpoint.set(mode, **options)
        (self.dir / "fault.ready").unlink(missing_ok=True)
        (self.dir / "fault.json").write_text(json.dumps({
            "host": FAULT_HOST, "catcher_host": CATCHER_HOST, "refused_host": REFUSED_HOST,
            "cert": str(self.dir / "fault-cert.pem"), "key": str(self.dir / "fault-key.pem"),
            "wrong_cert": str(self.dir / "fault-wrong-name-cert.pem"),
            "wrong_key": str(self.dir / "fault-wrong-name-key.pem"),
            "catcher_cert": str(self.dir / "catcher-cert.pem"), "catcher_key": str(self.dir / "catcher-key.pem"),
            "upstream_cas": [str(self.dir / "ca.pem"), str(self.dir / "au-ca.pem")],
            "control": str(endpoint.control), "log": str(self.dir / "requests-fault.log"),
            "catcher_log": str(endpoint.catcher_log), "ready_file": str(self.dir / "fault.ready")}))
        with open(self.dir / "lab.log", "ab") as log:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "lab.faults", str(self.dir / "fault.json")],
                                               cwd=ROOT, stdout=log, stderr=log, start_new_session=True))
        self._record_pids()
        urls = json.loads(self._wait("fault.ready", 30))
        endpoint.url, endpoint.catcher_url, endpoint.refused_url = urls["url"], urls["catcher_url"], urls["refused_url"]
        return endpoint

    def _wait(self, name: str, timeout_s: float) -> str:
        path = self.dir / name
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.exists():
                return path.read_text().strip()
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"lab: a server exited early (code {p.returncode}); see {self.dir / 'lab.log'}")
            time.sleep(0.05)
        raise TimeoutError(f"lab: {name} not ready after {timeout_s} s; see {self.dir / 'lab.log'}")

    def _write_inventory(self, vc_url: str, dsm_url: str) -> None:
        inv: dict[str, Any] = {
            "name": f"lab-{self.fleet.name}",
            "dsm": {"url": dsm_url, "auth": self.fleet.dsm_auth, "api_key_env": ENV_DSM_KEY,
                    "tls": {"verify": True, "ca_bundle": "ca.pem"}},
            "vcenters": [{"name": "lab-vc", "url": vc_url, "user": VC_USER, "password_env": ENV_VC_PASSWORD,
                          "tls": {"verify": True, "ca_bundle": "ca.pem"}}],
            "nsx": {"type": self.fleet.nsx, "url": self.nsx_url, "user": NSX_USER, "password_env": ENV_NSX_PASSWORD,
                    "tls": {"verify": True, "ca_bundle": "ca.pem"}},
            "remote": {
                "known_hosts": "known_hosts", "ssh_config": "ssh_config",
                "connect_timeout_s": 5, "command_timeout_s": 5,
                "esxi": {"user": "root", "port": SSH_PORT, "key_file": "client_key"},
                "dsva": {"user": "dsva", "port": SSH_PORT, "key_file": "client_key"},
                "relay": {"user": "dsrelay", "port": SSH_PORT, "key_file": "client_key"},
                "windows_agent": {"user": "Administrator", "port": SSH_PORT, "password_env": ENV_GUEST_PASSWORD},
                "windows": ({"transport": "ssh", "user": "Administrator", "port": SSH_PORT,
                             "password_env": ENV_GUEST_PASSWORD} if self.windows_transport == "ssh" else
                            {"transport": "winrm", "user": "Administrator", "port": 5986, "winrm_auth": "basic",
                             "password_env": ENV_GUEST_PASSWORD, "tls": {"ca_bundle": "ca.pem"}}),
            },
        }
        inv["update_proxy"] = {"url": f"http://{PROXY_HOST}:{self.proxy_port}"}
        inv["update_source"] = {"trust_ca": "au-ca.pem", "timeout_s": 5,
                                "relays": sorted(self.fleet.relay_addresses())}
        inv["events"] = {"source": "soap", "soap_user": SOAP_USER, "soap_password_env": ENV_SOAP_PASSWORD}
        if self.spec.get("inventory_relay_groups"):
            inv["relay_groups"] = self.fleet.relay_groups
        inv.update(self.spec.get("inventory") or {})  # keys the scenario adds as they are (e.g. offline_segments)
        header = f"# Written by `python -m lab up {self.fleet.name}`: the lab scenario's inventory.\n"
        self.inventory_path.write_text(header + yaml.safe_dump(inv, sort_keys=False))

    def stop(self) -> None:
        stop_dir(self.dir)
        self.procs = []

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FaultEndpoint:
    """A running lab/faults.py: ``url`` misbehaves as ``set`` says; ``catcher_url`` records what reaches it
    (in ``catcher_log``); ``refused_url`` refuses every connection."""

    def __init__(self, lab_dir: Path) -> None:
        self.control = lab_dir / "fault-control.json"
        self.catcher_log = lab_dir / "catcher.log"
        self.url = self.catcher_url = self.refused_url = ""

    def set(self, mode: str, **options: Any) -> None:
        """``mode`` and its options (see lab/faults.py), e.g. ``set("pass", upstream=url)``,
        ``set("status", status=429, retry_after=1, count=1, upstream=url)``."""
        _write_atomic(self.control, json.dumps({"mode": mode, **options}))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_port(host: str, port: int, timeout_s: float, proc: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lab: {proc.args[0]} exited early (code {proc.returncode}); see lab.log")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"lab: nothing listens on {host}:{port} after {timeout_s} s")


def stop_dir(workdir: Path) -> None:
    """End every process a lab started in this folder (by its recorded PIDs and process groups)."""
    state = workdir / "state.json"
    if not state.exists():
        return
    pids = json.loads(state.read_text()).get("pids", [])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.killpg(pid, sig)
                alive.append(pid)
            except (ProcessLookupError, PermissionError):
                continue
        deadline = time.monotonic() + 5
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if _running(p)]
            time.sleep(0.05)
        if not alive:
            break
    state.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
