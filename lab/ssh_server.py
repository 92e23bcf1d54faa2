"""SSH endpoints for the lab's ESXi hosts, DSVAs and Windows guests: one asyncssh process, one loopback
address per host, answering seed 000's commands in their real output formats from scenario state.

ESXi hosts and DSVAs accept the lab's client key; Windows guests (OpenSSH for Windows, cmd.exe) accept a
password from DSFLEET_LAB_GUEST_PASSWORD. An endpoint marked ``ssh: down`` is not listened on
(unreachable); ``ssh: stall`` accepts commands and never answers (a hung host).

Run: ``python -m lab.ssh_server CONFIG.json``
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncssh

SC = {"vsepflt": "2  FILE_SYSTEM_DRIVER", "vmci": "1  KERNEL_DRIVER"}
SC_MISSING = ("[SC] EnumQueryServicesStatus:OpenService FAILED 1060:\r\n\r\n"
              "The specified service does not exist as an installed service.\r\n\r\n")
MUX = {"nsx-v": "vShield-Endpoint-Mux", "nsx-t": "nsx-context-mux"}


def sc_query(name: str, state: str) -> tuple[str, int]:
    if state == "missing":
        return SC_MISSING, 1060
    code, word, flags = ((4, "RUNNING", "STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN") if state == "running"
                         else (1, "STOPPED", "NOT_STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN"))
    lines = ["", f"SERVICE_NAME: {name}", f"        TYPE               : {SC[name]}",
             f"        STATE              : {code}  {word}", f"                                ({flags})",
             "        WIN32_EXIT_CODE    : 0  (0x0)", "        SERVICE_EXIT_CODE  : 0  (0x0)",
             "        CHECKPOINT         : 0x0", "        WAIT_HINT          : 0x0", ""]
    return "\r\n".join(lines), 0


def ds_agent_status(running: bool) -> tuple[str, int]:
    active = ("active (running) since Mon 2025-09-29 10:12:01 JST; 7 weeks 5 days ago" if running
              else "inactive (dead) since Fri 2026-11-20 02:41:17 JST; 21h ago")
    text = ("Redirecting to /bin/systemctl status ds_agent.service\n"
            "● ds_agent.service - Trend Micro Deep Security Agent\n"
            "   Loaded: loaded (/usr/lib/systemd/system/ds_agent.service; enabled; vendor preset: disabled)\n"
            f"   Active: {active}\n" + (" Main PID: 1187 (ds_agent)\n" if running else ""))
    return text, 0 if running else 3


def answer(endpoint: dict[str, Any], command: str, nsx: str) -> tuple[str, int]:
    role = endpoint["role"]
    if role == "windows":
        for name in SC:
            if command == f"sc query {name}":
                return sc_query(name, endpoint.get(name, "running"))
        return f"'{command.split()[0]}' is not recognized as an internal or external command,\r\n", 1
    if role == "dsva":
        running = endpoint.get("agent", "running") == "running"
        if command == "service ds_agent status":
            return ds_agent_status(running)
        if command == "/opt/ds_agent/dsa_query -c GetAgentStatus":
            if not running:
                return "Failed to connect to the agent: the agent is not running\n", 1
            return ("AgentStatus.agentState: green\nAgentStatus.dwellTime: 0\n"
                    "AgentStatus.lastCommunication: 1763700000\n"), 0
        if command == "rpm -q ds_agent":
            return f"ds_agent-{endpoint['build']}.el7.x86_64\n", 0
    if role == "relay" and command.startswith("curl ") and "--write-out" in command:
        # The relay's own probe of the update source, answered as curl does for the scenario's proxy.
        proxy = command.split("--proxy '", 1)[1].split("'", 1)[0] if "--proxy '" in command else "-"
        host = proxy.split("//", 1)[-1].split(":", 1)[0]
        state = endpoint.get("update", "plain")
        if state == "down":
            return f"curl: (7) Failed to connect to {host} port {proxy.rsplit(':', 1)[-1].strip('/')} after 0 ms: " \
                   "Couldn't connect to server\n", 7
        if state == "inspecting":
            return ("curl: (60) SSL certificate problem: unable to get local issuer certificate\n"
                    "More details here: https://curl.se/docs/sslcerts.html\n"), 60
        return "200 0.012", 0
    if role == "esxi":
        mux = MUX[nsx]
        if command == f"/etc/init.d/{mux} status":
            running = endpoint.get("mux", "running") == "running"
            return (f"{mux} is running\n", 0) if running else (f"{mux} is not running\n", 3)
        if command.startswith("/etc/init.d/"):
            return f"sh: {command.split()[0]}: not found\n", 127
    return f"sh: {command.split()[0]}: command not found\n", 127


def server_class(endpoint: dict[str, Any], password: str) -> type[asyncssh.SSHServer]:
    windows = endpoint["role"] == "windows"

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return windows

        def validate_password(self, username: str, pw: str) -> bool:
            return windows and username == "Administrator" and pw == password

        def public_key_auth_supported(self) -> bool:
            return not windows

    return Server


async def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    password = os.environ.get("DSFLEET_LAB_GUEST_PASSWORD", "")
    latency = config.get("latency_ms", 0) / 1000
    host_key = asyncssh.read_private_key(config["host_key"])
    authorized = asyncssh.read_authorized_keys(config["authorized_keys"])
    nsx = config["nsx"]

    def handler(endpoint: dict[str, Any]) -> Any:
        async def handle(process: asyncssh.SSHServerProcess[str]) -> None:
            if endpoint.get("ssh") == "stall":
                await asyncio.sleep(3600)  # a hung host: the client's command timeout must fire
            if latency:
                await asyncio.sleep(latency)
            stdout, rc = answer(endpoint, process.command or "", nsx)
            # curl reports failures on stderr; everything else here answers on stdout
            (process.stderr if rc and endpoint["role"] == "relay" else process.stdout).write(stdout)
            process.exit(rc)
        return handle

    for endpoint in config["endpoints"]:
        if endpoint.get("ssh") == "down":
            continue
        await asyncssh.listen(endpoint["address"], config["port"], server_factory=server_class(endpoint, password),
                              server_host_keys=[host_key], authorized_client_keys=authorized,
                              process_factory=handler(endpoint), encoding="utf-8", backlog=256)
    ready = Path(config["ready_file"])
    ready.with_suffix(".tmp").write_text("listening\n")
    ready.with_suffix(".tmp").rename(ready)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
