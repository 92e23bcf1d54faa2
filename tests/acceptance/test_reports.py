"""The reports as an auditor reads them: the verdict banner per scenario, root causes first, a case-B host
folding its VMs, the EVT-001 decisive evidence, public sources, full Japanese, waived never "new"."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from dsfleet.baseline import load_doc

from ..conftest import run_suite
from ..unit.test_summary import english_leaks

EXIT = {"COMPLIANT": 0, "NOT COMPLIANT": 1, "EVIDENCE INCOMPLETE": 6}


def banner(run_dir: Path) -> str:
    html = (run_dir / "summary.html").read_text()
    verdict = re.search(r'data-verdict="([A-Z ]+)"', html)
    assert verdict is not None
    md = (run_dir / "summary.md").read_text()
    doc = json.loads((run_dir / "results.json").read_text())
    # One verdict everywhere: the page's banner, the job summary (its first line), results.json.
    assert verdict.group(1) == doc["verdict"]["status"]
    assert md.splitlines()[0] == f"<!-- dsfleet verdict: {verdict.group(1)} -->" and md.splitlines()[1].startswith("# ")
    return verdict.group(1)


def test_engine_offline_reports_root_causes_first_in_both_languages(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    run = run_suite(tmp_path / "en", "--inventory", str(lab.inventory_path), env=lab.env)
    # WIN-01-05 cannot be reached: evidence incomplete wins over the findings (exit 6), and the banner says so.
    assert banner(run.run_dir) == "EVIDENCE INCOMPLETE" and run.returncode == EXIT["EVIDENCE INCOMPLETE"]
    assert "dsfleet verdict: EVIDENCE INCOMPLETE" in run.stdout
    md = (run.run_dir / "summary.md").read_text()
    headings = re.findall(r"^### (\w+) · ([A-Z]{3}-\d{3})", md, re.M)
    severities = [s for s, _ in headings]
    assert severities == sorted(severities, key=["critical", "high", "medium", "low"].index)
    checks = [c for _, c in headings]
    assert checks.index("ISO-001") < checks.index("PRT-001") < checks.index("PRT-002")  # 13 objects, 5, then 4
    html = (run.run_dir / "summary.html").read_text()
    # esx-02 (case B) is one row with its five VMs folded under it; case-A VMs link to their ISO-001 row.
    fold = html[html.index('data-c="ISO-001"><td>esx-02'):]
    fold = fold[:fold.index("</details>")]
    assert all(f"WIN-02-0{i}@esx-02" in fold for i in range(1, 6))
    results = load_doc(run.run_dir)[0]["results"]  # each result with its check's catalog text again
    case_a = next(r for r in results if (r["check"], r["object"]) == ("ISO-001", "esx-01"))
    anchor = re.search(r'<tr id="(f\d+)" data-o="fail" data-s="critical" data-h="esx-01" data-c="ISO-001">', html)
    assert case_a["case"] == "A" and len(case_a["explains"]) >= 4
    assert anchor is not None and html.count(f'href="#{anchor.group(1)}"') == len(case_a["explains"])
    # Nothing hidden: every result that did not pass is in the page.
    assert all(f"<td>{r['object']}" in html for r in results if r["outcome"] in ("fail", "error"))
    assert all(re.search(r"https://|^field practice: ", r["source"]) for r in results)
    # On disk each check's catalog text is written once, under "checks"; a result carries only its own facts.
    raw = json.loads((run.run_dir / "results.json").read_text())
    assert raw["version"] == 3 and set(raw["checks"]) == {r["check"] for r in raw["results"]}
    assert not any({"title", "source", "guidance", "remediation"} & set(r) for r in raw["results"])

    # The same lab in Japanese, with a waiver and a baseline in which the waived objects passed.
    baseline = tmp_path / "baseline.json"
    doc = json.loads((run.run_dir / "results.json").read_text())
    for r in doc["results"]:
        if r["check"] == "PRT-001":
            r["outcome"] = "pass"
    baseline.write_text(json.dumps(doc))
    waivers = tmp_path / "waivers.yml"
    waivers.write_text(yaml.safe_dump({"waivers": [
        {"check": "PRT-001", "object": "WIN-03-*@esx-03", "justification": "esx-03 は廃止予定",
         "approver": "j.tanaka", "ticket": "CHG-2041", "expires": "2099-01-31"}]}))
    ja = run_suite(tmp_path / "ja", "--inventory", str(lab.inventory_path), "--lang", "ja", "--waivers",
                   str(waivers), "--baseline", str(baseline), env=lab.env)
    assert ja.returncode == EXIT[banner(ja.run_dir)]
    diff = json.loads((ja.run_dir / "results.json").read_text())["baseline"]
    assert not [d for d in diff["new_failures"] if d["check"] == "PRT-001"]
    assert {d["object"] for d in diff["newly_waived"]} == {f"WIN-03-0{i}@esx-03" for i in range(1, 6)}
    page, jmd = (ja.run_dir / "summary.html").read_text(), (ja.run_dir / "summary.md").read_text()
    listed = dict(re.findall(r"^### (.+)\n\n((?:- .*\n)+)", jmd, re.M))
    assert "WIN-03-0" not in listed.get("新たな不合格", "") and listed["新たに例外承認されたもの (不合格ではない)"].count("`WIN-03-0") == 5
    assert '<html lang="ja">' in page and "Noto Sans CJK JP" in page and "証拠不十分" in page
    assert "<polyline" in page  # the trend against the baseline
    assert not english_leaks(page) and not english_leaks(jmd)

    # The DSM cannot be reached: evidence incomplete, never a pass.
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["dsm"].update(url="https://127.0.0.1:9/api", timeout_s=2, retries=0)
    broken = lab.inventory_path.parent / "no-dsm.yml"
    broken.write_text(yaml.safe_dump(inv))
    nodsm = run_suite(tmp_path / "no-dsm", "--inventory", str(broken), "--lang", "ja", env=lab.env)
    assert banner(nodsm.run_dir) == "EVIDENCE INCOMPLETE" and nodsm.returncode == EXIT["EVIDENCE INCOMPLETE"]
    assert "DSM https://127.0.0.1:9/api" in (nodsm.run_dir / "summary.md").read_text()
    assert not english_leaks((nodsm.run_dir / "summary.html").read_text())


def test_cert_expiry_shows_the_decisive_event_evidence(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("cert-expiry-2025")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    assert banner(run.run_dir) == "NOT COMPLIANT" and run.returncode == EXIT["NOT COMPLIANT"]
    evt = [r for r in run.results if r["check"] == "EVT-001" and r["outcome"] == "fail"]
    assert evt and all(r["observed"].startswith("event 2205 (agent event 9017) error code -24 "
                                                "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE at ") for r in evt)
    md = (run.run_dir / "summary.md").read_text()
    assert "error code -24 IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE" in md
    assert "https://success.trendmicro.com/ja-JP/solution/KA-0016311" in md
    assert not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]|Seed 000|deepsecurity-facts", md)  # English report


def test_healthy_is_compliant(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    assert banner(run.run_dir) == "COMPLIANT" and run.returncode == EXIT["COMPLIANT"]
    report = (run.run_dir / "report.html").read_text()
    assert "COMPLIANT" in report and "all times UTC" in report
