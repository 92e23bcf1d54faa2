"""WIN-001's parsers on real published outputs, and the readiness table's judgement."""

from pathlib import Path

import pytest

from dsfleet.parsers import UnexpectedOutput
from dsfleet.winready import ReadinessPolicy, parse_certutil_store, parse_hotfixes, windows_build

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "windows"
ACS = "F40042E2E5F7E8EF8189FED15519AECE42C3BFA2"
DIGICERT = ["0563B8630D62D75ABBC8AB1E4BDFB5A899B24D43", "DF3C24F9BFD666761B268073FE06D1CC8D4F82A4",
            "7E04DE896A3E666D00E687D33FFAD93BE83D349E", "DDFB16CD4931C973A2037D3FC83A4D7D775D05E4"]


def test_certutil_real_sample() -> None:
    text = (SAMPLES / "certutil-store-root-en.txt").read_text(encoding="utf-8")
    assert parse_certutil_store(text, 0) == ["EF56CF1F0052B3FF7A1C834CFA3D71EA0D72C04E"]


def test_certutil_spaced_hash_and_20_byte_serial() -> None:
    # A 20-byte serial comes first in the block; the hash is the block's last 20-byte line.
    text = ("================ 証明書 0 ================\r\nシリアル番号: " + "ab" * 20 + "\r\n"
            "証明書ハッシュ(sha1): f4 00 42 e2 e5 f7 e8 ef 81 89 fe d1 55 19 ae ce 42 c3 bf a2\r\n")
    assert parse_certutil_store(text, 0) == [ACS]


@pytest.mark.parametrize("text, rc", [("", 0), ("CertUtil: -store command FAILED: 0x80090011", 17),
                                      ("================ Certificate 0 ================\r\nSubject: CN=x\r\n", 0)])
def test_certutil_unreadable(text: str, rc: int) -> None:
    with pytest.raises(UnexpectedOutput):
        parse_certutil_store(text, rc)


def test_hotfix_real_sample() -> None:
    text = (SAMPLES / "get-hotfix-en.txt").read_text(encoding="utf-8")
    assert parse_hotfixes(text, 0) == {"KB4495590", "KB4470788", "KB4480056"}
    with pytest.raises(UnexpectedOutput):
        parse_hotfixes("", 0)


def test_windows_build() -> None:
    assert windows_build("Microsoft Windows Server 2022 (64 bit)  Build 20348") == 20348
    assert windows_build("Microsoft Windows Server 2022 (64 bit)") is None


def test_judge() -> None:
    policy = ReadinessPolicy.load()
    ok = policy.judge(20348, [ACS, *DIGICERT], {"KB5005619"})
    assert not ok.missing and not ok.review
    no_acs = policy.judge(20348, DIGICERT, {"KB5005619"})
    assert no_acs.missing == [f"root Microsoft Identity Verification Root Certificate Authority 2020 ({ACS}) "
                              "not in LocalMachine\\Root"]
    # A superseded rollup and an open root are for review, never a guessed pass or a finding.
    review = policy.judge(9600, [ACS], set(["KB2919355"]))
    assert not review.missing and len(review.review) == 5
    # SHA-2 support on Windows Server 2008 R2 is a finding when missing.
    old = policy.judge(7601, [ACS, *DIGICERT], {"KB4490628", "KB5006743"})
    assert old.missing == ["update KB4474419 (SHA-2 code signing support) not installed"]
    assert policy.judge(26100, [ACS, *DIGICERT], {"KB1"}).review  # Server 2025: not in the sources
