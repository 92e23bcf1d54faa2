"""WinRM (WS-Management) endpoints for the lab's Windows guests, over HTTPS with the lab CA.

Implements the shell exchange pywinrm (and so testinfra's WinRM backend) performs for one command:
Create (open a cmd shell), Command, Receive (base64 stdout/stderr, CommandState Done with ExitCode),
Signal (terminate) and Delete, each answered with RelatesTo the request's MessageID. Basic auth
(user Administrator, password from DSFLEET_LAB_GUEST_PASSWORD). Each guest listens on its own loopback
address, port 5986; ``ssh: down`` guests are not served, ``ssh: stall`` ones never answer Receive.
Command output comes from the same scenario state and formats as lab/ssh_server.py, and so do the runtime
faults of ``<lab dir>/faults.json`` (``silent``: no HTTP answer at all; ``hang-command``: Receive never
answers; ``garbled``, ``ja-JP``, ``de-DE-labels``: the output) and the command log ``commands-ssh.log``.

Run: ``python -m lab.winrm_server CONFIG.json``
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .ssh_server import Faults, answer, encode, log_command

NS = {"s": "http://www.w3.org/2003/05/soap-envelope", "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
      "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
      "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"}
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
DONE = f"{SHELL}/CommandState/Done"
PORT = 5986


def envelope(action: str, relates_to: str, body: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}">'
            f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
            f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>").encode()


class Guest(BaseHTTPRequestHandler):
    endpoint: dict[str, Any]
    config: dict[str, Any]
    password: str
    faults: Faults
    commands: dict[str, tuple[bytes, int]]  # CommandId → (stdout, exit code)
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, data: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode = self.faults.mode(self.endpoint["address"])
        if mode == "silent":
            time.sleep(3600)  # TCP (and TLS) accepted, never an answer
        expected = "Basic " + base64.b64encode(f"Administrator:{self.password}".encode()).decode()
        if self.path != "/wsman" or self.headers.get("Authorization") != expected:
            self._reply(401, headers={"WWW-Authenticate": 'Basic realm="WSMAN"'})
            return
        root = ET.fromstring(raw)
        action = root.findtext("s:Header/a:Action", namespaces=NS) or ""
        message_id = root.findtext("s:Header/a:MessageID", namespaces=NS) or ""
        if action == f"{TRANSFER}/Create":
            shell = str(uuid.uuid4()).upper()
            body = (f'<x:ResourceCreated xmlns:x="{TRANSFER}"><a:ReferenceParameters><w:SelectorSet>'
                    f'<w:Selector Name="ShellId">{shell}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
                    f"</x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell}</rsp:ShellId></rsp:Shell>")
            self._reply(200, envelope(f"{TRANSFER}/CreateResponse", message_id, body))
        elif action == f"{SHELL}/Command":
            command = (root.findtext("s:Body/rsp:CommandLine/rsp:Command", namespaces=NS) or "").strip('"')
            log_command(self.faults.path.parent / "commands-ssh.log", self.endpoint["address"], "Administrator",
                        command)
            command_id = str(uuid.uuid4()).upper()
            text, rc = answer(self.endpoint, command, self.config["nsx"], mode)
            with self.lock:
                self.commands[command_id] = encode(self.endpoint, mode, text), rc
            body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
            self._reply(200, envelope(f"{SHELL}/CommandResponse", message_id, body))
        elif action == f"{SHELL}/Receive":
            if self.endpoint.get("ssh") == "stall" or mode == "hang-command":
                time.sleep(3600)
            if self.config.get("latency_ms"):
                time.sleep(self.config["latency_ms"] / 1000)
            stream = root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
            command_id = stream.get("CommandId", "") if stream is not None else ""
            with self.lock:
                stdout, rc = self.commands.pop(command_id, (b"", 1))
            data = base64.b64encode(stdout).decode()
            body = (f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="{command_id}">{data}</rsp:Stream>'
                    f'<rsp:Stream Name="stdout" CommandId="{command_id}" End="true"></rsp:Stream>'
                    f'<rsp:Stream Name="stderr" CommandId="{command_id}" End="true"></rsp:Stream>'
                    f'<rsp:CommandState CommandId="{command_id}" State="{DONE}"><rsp:ExitCode>{rc}</rsp:ExitCode>'
                    f"</rsp:CommandState></rsp:ReceiveResponse>")
            self._reply(200, envelope(f"{SHELL}/ReceiveResponse", message_id, body))
        elif action == f"{SHELL}/Signal":
            self._reply(200, envelope(f"{SHELL}/SignalResponse", message_id, "<rsp:SignalResponse/>"))
        elif action == f"{TRANSFER}/Delete":
            self._reply(200, envelope(f"{TRANSFER}/DeleteResponse", message_id, ""))
        else:
            self._reply(400, envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", message_id,
                                      f"<s:Fault><s:Reason><s:Text>unsupported action {escape(action)}</s:Text>"
                                      f"</s:Reason></s:Fault>"))


def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    password = os.environ.get("DSFLEET_LAB_GUEST_PASSWORD", "")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["winrm_cert"], config["winrm_key"])
    faults = Faults(config_path.parent / "faults.json")
    for endpoint in config["endpoints"]:
        if endpoint["role"] != "windows" or endpoint.get("ssh") == "down":
            continue
        handler = type("GuestHandler", (Guest,), {"endpoint": endpoint, "config": config, "password": password,
                                                  "faults": faults, "commands": {}})
        server = ThreadingHTTPServer((endpoint["address"], PORT), handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready = Path(config["winrm_ready_file"])
    ready.with_suffix(".tmp").write_text("listening\n")
    ready.with_suffix(".tmp").rename(ready)
    threading.Event().wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
