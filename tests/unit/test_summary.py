"""The verdict, root-cause ordering, folding, the Markdown budget, the catalog's sources and the languages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dsfleet import catalog, summary
from dsfleet.baseline import compare
from dsfleet.verdict import COMPLIANT, EVIDENCE_INCOMPLETE, NOT_COMPLIANT, judge

URL = re.compile(r"https://\S+")


def english_leaks(text: str) -> set[str]:
    """Runs of three or more lower-case English words outside code, URLs and markup: a template left
    untranslated. (Data such as DSM status strings and object names are capitalised or single tokens.)"""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S)
    text = re.sub(r"<code>.*?</code>|`[^`]*`|https://\S+", " ", text)
    text = re.sub(r"<[^>]+>", " ", text)
    return {m.group(0) for m in re.finditer(r"\b[a-z][a-z'-]*(?: [a-z][a-z'-]*){2,}\b", text)}


def r(check: str, obj: str, outcome: str, severity: str = "critical", **extra: Any) -> dict[str, Any]:
    return {"check": check, "object": obj, "outcome": outcome, "severity": severity, "title": f"title {check}",
            "host": obj.split("@")[-1] if "@" in obj else obj, "observed": f"observed {obj}", "required": "req",
            "remedy": "", "remediation": "fix it", "guidance": "fix it", "source": "field practice: x",
            "waiver": None, **extra}


def doc(results: list[dict[str, Any]], lang: str = "en") -> dict[str, Any]:
    counts: dict[str, int] = {}
    for x in results:
        counts[x["outcome"]] = counts.get(x["outcome"], 0) + 1
    return {"inventory": "site", "started_utc": "2026-01-01T00:00:00+00:00", "finished_utc": "2026-01-01T00:01:00+00:00",
            "snapshot": "snapshot.json", "snapshot_sha256": "0" * 64, "counts": counts, "results": results,
            "waivers": [], "lang": lang, "scope": {"inventory": "site", "vcenters": 1, "esx_hosts": 2, "vms": 9,
                                                   "dsm_computers": 9, "checks": 3, "results": len(results)}}


@pytest.mark.parametrize(("outcomes", "status"), [
    (["pass", "fail", "error"], EVIDENCE_INCOMPLETE), (["pass", "fail", "waived"], NOT_COMPLIANT),
    (["pass", "waived", "skip"], COMPLIANT), ([], EVIDENCE_INCOMPLETE)])
def test_verdict_agrees_with_the_exit_code(outcomes: list[str], status: str) -> None:
    assert judge([r("PRT-001", f"o{i}", o) for i, o in enumerate(outcomes)]).status == status


def test_root_causes_first_and_a_case_b_host_folds_its_vms(tmp_path: Path) -> None:
    vms = [f"WIN-{i}@esx-02" for i in range(5)]
    results = ([r("ISO-001", "esx-02", "fail", case="B", explains=vms), r("ISO-001", "esx-01", "fail", case="A",
                                                                           explains=["WIN-9@esx-01"])]
               + [r("PRT-002", vm, "fail") for vm in vms + ["WIN-9@esx-01"]]
               + [r("PRT-003", "WIN-9@esx-01", "fail", "high"), r("PRT-001", "WIN-7@esx-03", "fail"),
                  r("PRT-001", "WIN-8@esx-03", "fail"), r("DRV-001", "WIN-6@esx-01", "error")])
    summary.link_causes(results)
    sections = summary.findings(results)
    assert [s.check for s in sections] == ["ISO-001", "PRT-001", "DRV-001", "PRT-002", "PRT-003"]
    host = sections[0].rows[0]
    assert host.result["object"] == "esx-02" and [x.result["object"] for x in host.folded] == vms
    prt002 = next(s for s in sections if s.check == "PRT-002")
    assert [x.result["object"] for x in prt002.rows] == ["WIN-9@esx-01"]  # case A: linked, not folded
    assert prt002.rows[0].cause is sections[0].rows[1]
    summary.write(tmp_path, doc(results), None)
    html = (tmp_path / "summary.html").read_text()
    assert all(f'<td>{vm}' in html for vm in vms)  # folded, never hidden
    assert f'href="#{sections[0].rows[1].anchor}"' in html
    assert html.index('id="verdict"') < html.index("Per check") < html.index("Findings")
    assert "NOT COMPLIANT" not in html and "EVIDENCE INCOMPLETE" in html


def test_summary_puts_the_diff_first_and_never_lists_waived_as_new(tmp_path: Path) -> None:
    results = [r("PRT-003", "WIN-1@esx-01", "fail"), r("PRT-003", "WIN-2@esx-01", "pass"),
               r("PRT-001", "WIN-3@esx-01", "waived", waiver={"justification": "j", "approver": "a", "ticket": "T-1",
                                                             "expires": "2099-01-01"})]
    earlier = [r("PRT-003", "WIN-1@esx-01", "pass"), r("PRT-001", "WIN-3@esx-01", "pass")]
    summary.write(tmp_path, doc(results), compare(results, earlier, "earlier"), [("2025-12-31", {"PRT-003": 4})])
    md = (tmp_path / "summary.md").read_text()
    assert md.index("NOT COMPLIANT") < md.index("## Against the baseline") < md.index("## Per check") \
        < md.index("## Findings")
    new = md[md.index("### New failures"):md.index("### Newly waived")]
    assert "WIN-1@esx-01" in new and "WIN-3@esx-01" not in new
    html = (tmp_path / "summary.html").read_text()
    assert html.index("Against the baseline") < html.index("Per ESXi host") < html.index("Findings")
    assert "<svg" in html and "<polyline" in html  # the trend from the history point to this run
    # Reads fully without script: the one inline script only un-hides the filter form.
    assert html.count("<script") == 1 and '<form id="filters" hidden>' in html


def test_markdown_stays_under_githubs_budget_at_10000_vms(tmp_path: Path) -> None:
    results = [r(f"PRT-00{i % 5 + 1}", f"WIN-{n:05d}@esx-{n % 50:02d}", "fail", observed="x" * 2000)
               for i, n in enumerate(range(10_000))]
    summary.write(tmp_path, doc(results), None)
    md = (tmp_path / "summary.md").read_bytes()
    assert len(md) < summary.GITHUB_BUDGET and b"and 1980 more" in md
    assert md.index(b"PRT-001") < md.index(b"## Findings")


def test_every_catalog_source_is_public_and_english_has_no_japanese() -> None:
    checks = catalog.load()
    for info in checks.values():
        assert URL.search(info.source) or info.source.startswith(catalog.FIELD_PRACTICE), info.id
        for kb in re.findall(r"KA-\d{7}", info.source):
            assert f"/solution/{kb}".lower() in info.source.lower(), (info.id, kb)  # a KB number comes with its URL
        assert not re.search(r"seed|deepsecurity-facts|[\u3040-\u30ff\u4e00-\u9fff]", info.source, re.I), info.id
    with pytest.raises(catalog.CatalogError, match="source: expected a public URL"):
        catalog.parse({"checks": {"ABC-001": {"title": "t", "severity": "low", "source": "Seed 000", "remediation": "r"}}})


def test_japanese_labels_are_complete_and_translate_check_texts(tmp_path: Path) -> None:
    en, ja = catalog.language("en"), catalog.language("ja")
    assert set(en.labels) == set(ja.labels)
    text = ja.text("no evidence: unreachable: cannot connect: connection refused (nothing listens on that address "
                   "and port) (address 127.0.50.5, ssh)")
    assert not english_leaks(text), text
    vms = ["WIN-1@esx-02", "WIN-2@esx-02"]
    results = [r("ISO-001", "esx-02", "fail", case="B", explains=vms,
                 observed="case B: Anti-Malware Engine Offline on every protected VM on esx-02 (2 of 2): WIN-1, WIN-2; "
                          "causes: nsx-context-mux is not running on esx-02")] + [r("PRT-002", vm, "fail") for vm in vms]
    for x in results:
        x.update(title="タイトル", remediation="対処", guidance="対処", source="現場の運用知見: x", required="要件")
        x["observed"] = x["observed"] if x["check"] == "ISO-001" else "antiMalware.state=on; status: Anti-Malware Engine Offline"
    summary.link_causes(results)
    summary.write(tmp_path, doc(results, "ja"), None)
    html, md = (tmp_path / "summary.html").read_text(), (tmp_path / "summary.md").read_text()
    assert '<html lang="ja">' in html and "Noto Sans CJK JP" in html and "証拠不十分" not in html and "非準拠" in html
    for page in (html, md):
        assert not english_leaks(page)
        visible = re.sub(r"<[^>]+>", " ", page)  # data-verdict="NOT COMPLIANT" stays a machine token
        assert not [v for v in en.labels.values() if len(v.split()) > 1 and v in visible]
