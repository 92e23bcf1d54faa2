"""The triage commands' real output formats (deepsecurity-facts.md §5) and what the parsers make of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsfleet.parsers import (UnexpectedOutput, parse_agent_state, parse_chcp, parse_init_status, parse_rpm_query,
                             parse_sc_query, parse_service_status)
from dsfleet.versions import Build

SC_RUNNING = """
SERVICE_NAME: vsepflt
        TYPE               : 2  FILE_SYSTEM_DRIVER
        STATE              : 4  RUNNING
                                (STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)
        WIN32_EXIT_CODE    : 0  (0x0)
        SERVICE_EXIT_CODE  : 0  (0x0)
        CHECKPOINT         : 0x0
        WAIT_HINT          : 0x0
""".replace("\n", "\r\n")
SC_MISSING = ("[SC] EnumQueryServicesStatus:OpenService FAILED 1060:\r\n\r\n"
              "The specified service does not exist as an installed service.\r\n\r\n")


def sc_state(code: int, word: str, name: str = "vmci") -> str:
    return (f"\r\nSERVICE_NAME: {name}\r\n        TYPE               : 1  KERNEL_DRIVER\r\n"
            f"        STATE              : {code}  {word}\r\n"
            "                                (NOT_STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)\r\n")


def test_sc_query_running() -> None:
    state = parse_sc_query("vsepflt", SC_RUNNING, 0)
    assert state.running and state.describe() == "vsepflt: RUNNING"


@pytest.mark.parametrize("code,word", [(1, "STOPPED"), (2, "START_PENDING"), (3, "STOP_PENDING"),
                                       (5, "CONTINUE_PENDING"), (6, "PAUSE_PENDING"), (7, "PAUSED")])
def test_sc_query_every_other_state_is_not_running(code: int, word: str) -> None:
    state = parse_sc_query("vmci", sc_state(code, word), 0)
    assert state.installed and state.state == word and not state.running


def test_sc_query_missing_service() -> None:
    state = parse_sc_query("vsepflt", SC_MISSING, 1060)
    assert not state.installed and not state.running and "FAILED 1060" in state.describe()


@pytest.mark.parametrize("text", ["", "Access is denied.", sc_state(4, "RUNNING", name="vmci")])
def test_sc_query_unexpected(text: str) -> None:
    with pytest.raises(UnexpectedOutput):
        parse_sc_query("vsepflt", text, 5)


SYSTEMD_RUNNING = """Redirecting to /bin/systemctl status ds_agent.service
● ds_agent.service - Trend Micro Deep Security Agent
   Loaded: loaded (/usr/lib/systemd/system/ds_agent.service; enabled; vendor preset: disabled)
   Active: active (running) since Mon 2025-09-29 10:12:01 JST; 3 days ago
 Main PID: 1187 (ds_agent)
"""


@pytest.mark.parametrize("text,rc,running,state", [
    (SYSTEMD_RUNNING, 0, True, "active (running)"),
    (SYSTEMD_RUNNING.replace("active (running)", "inactive (dead)"), 3, False, "inactive (dead)"),
    (SYSTEMD_RUNNING.replace("active (running)", "failed (Result: exit-code)"), 3, False,
     "failed (Result: exit-code)"),
    ("ds_agent (pid  1187) is running...\n", 0, True, "running"),
    ("ds_agent is stopped\n", 3, False, "stopped"),
    ("ds_agent: unrecognized service\n", 1, False, "not installed"),
])
def test_service_status(text: str, rc: int, running: bool, state: str) -> None:
    assert parse_service_status("ds_agent", text, rc) == (running, state)


def test_service_status_unexpected() -> None:
    with pytest.raises(UnexpectedOutput):
        parse_service_status("ds_agent", "Permission denied", 1)


def test_agent_state() -> None:
    text = "AgentStatus.agentState: green\nAgentStatus.dwellTime: 0\nAgentStatus.lastCommunication: 1763700000\n"
    assert parse_agent_state(text) == "green"
    assert parse_agent_state(text.replace("green", "red")) == "red"
    with pytest.raises(UnexpectedOutput):
        parse_agent_state("dsa_query: cannot connect to agent")


def test_rpm_query() -> None:
    assert parse_rpm_query("ds_agent", "ds_agent-20.0.0-8438.el7.x86_64\n", 0) == Build.parse("20.0.0-8438")
    assert parse_rpm_query("ds_agent", "package ds_agent is not installed\n", 1) is None
    with pytest.raises(UnexpectedOutput):
        parse_rpm_query("ds_agent", "rpm: command not found", 127)


@pytest.mark.parametrize("name", ["vShield-Endpoint-Mux", "nsx-context-mux"])
def test_init_status(name: str) -> None:
    assert parse_init_status(name, f"{name} is running\n", 0) is True
    assert parse_init_status(name, f"{name} is not running\n", 3) is False
    with pytest.raises(UnexpectedOutput, match="wrong NSX flavour"):
        parse_init_status(name, f"sh: /etc/init.d/{name}: not found\n", 127)


# -- Real-world sc query / chcp output in other languages (tests/samples/windows, see SOURCES.md) --------

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "windows"


def sample(name: str, crlf: bool) -> str:
    text = (SAMPLES / name).read_text(encoding="utf-8")
    return text.replace("\n", "\r\n") if crlf else text


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("file,service,state", [
    ("sc-query-running-en.txt", "GoodbyeDPI", "RUNNING"),
    ("sc-query-start-pending-zh.txt", "PcapDNSProxyService", "START_PENDING"),
    ("sc-query-enum-ru.txt", "salt-minion", "STOPPED"),  # the first service of an enumeration
    ("sc-query-running-de-labels.txt", "vsepflt", "RUNNING"),
    ("sc-query-stopped-fr-labels.txt", "vmci", "STOPPED"),
])
def test_sc_query_state_by_its_number_whatever_the_labels(file: str, service: str, state: str, crlf: bool) -> None:
    got = parse_sc_query(service, sample(file, crlf), 0)
    assert got.installed and got.state == state and got.running == (state == "RUNNING")


def test_sc_query_translated_labels_russian() -> None:
    block = sample("sc-query-enum-ru.txt", True).split("\r\n\r\n")[1]  # Имя_службы: postgresql-9.4
    assert parse_sc_query("postgresql-9.4", block, 0).running


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("file", ["sc-query-missing-en.txt", "sc-query-missing-zh.txt", "sc-query-missing-es.txt",
                                  "sc-query-missing-fr-CA.txt", "sc-query-missing-ja.txt"])
def test_sc_query_1060_in_any_language(file: str, crlf: bool) -> None:
    got = parse_sc_query("vsepflt", sample(file, crlf), 1060)
    assert not got.installed and got.describe() == "vsepflt: not installed (FAILED 1060)"


def test_sc_query_exit_status_1060_alone_is_not_installed() -> None:
    assert not parse_sc_query("vsepflt", "", 1060).installed
    assert not parse_sc_query("vsepflt", "\x93\xfa\x96{\x8c\xea", 1060).installed  # a message we cannot read


@pytest.mark.parametrize("text,match", [
    ("[SC] OpenService FAILED 5:\r\n\r\nAccess is denied.\r\n", "Windows error 5"),
    ("SERVICE_NAME: vsepflt\r\n        STATE              : 4  STOPPED\r\n", "state 4 printed as STOPPED"),
    ("SERVICE_NAME: vsepflt\r\n        ZUSTAND            : 4  WIRD_AUSGEFÜHRT\r\n", "0 state lines"),
    ("SERVICE_NAME: vsepflt\r\n        TYPE               : 2  FILE_SYSTEM_DRIVER\r\n", "0 state lines"),
    ("xK3 9dfj\r\nqq Zr 77 1060\r\n", "rc 0"),  # garbled text: never a pass, even with the digits in it
])
def test_sc_query_unknown_forms_are_unexpected(text: str, match: str) -> None:
    with pytest.raises(UnexpectedOutput, match=match):
        parse_sc_query("vsepflt", text, 0)


@pytest.mark.parametrize("file,code_page", [("chcp-en.txt", 1252), ("chcp-de.txt", 1252), ("chcp-fr.txt", 850),
                                            ("chcp-ja.txt", 932)])
def test_chcp_in_any_language(file: str, code_page: int) -> None:
    assert parse_chcp(sample(file, True)) == code_page


def test_chcp_unexpected() -> None:
    with pytest.raises(UnexpectedOutput):
        parse_chcp("'chcp' is not recognized as an internal or external command,\r\n")
