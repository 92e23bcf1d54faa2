"""dsfleet installed like any pytest plugin: the wheel, in a venv outside the checkout, run from another folder.

The wheel is built from this checkout (pip's isolated build, as a site would) and installed without
dependencies into a fresh venv whose dependency path is the project's .venv (so no package index is needed
beyond the build). Nothing of the checkout is importable there: the checks and the glue come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterator

import pytest

from ..conftest import ROOT
from .test_scenarios import EXPECTED


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv with only the dsfleet wheel installed; returns its python."""
    base = tmp_path_factory.mktemp("install")
    # setuptools builds in-tree, in build/: a stale copy of a removed module there would ship in the wheel.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(ROOT)],
                       check=True, capture_output=True, timeout=300)
    finally:
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = (base / "dist").glob("dsfleet-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # The dependencies (pytest, pyvmomi, ...) from the project's venv, appended after the venv's own packages.
    # A path added by a .pth line is not itself scanned for .pth files, so the checkout's editable hook stays out.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "dsfleet-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    yield python


def _run(python: Path, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **env))


def test_the_wheel_runs_the_suite_from_any_folder(installed: Path, start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("cert-expiry-2025")
    where = _run(installed, tmp_path, "-c", "import dsfleet.checks; print(dsfleet.checks.__file__)", env={})
    assert where.returncode == 0 and str(ROOT) not in where.stdout, where.stdout + where.stderr
    run = _run(installed, tmp_path, "-m", "pytest", "--pyargs", "dsfleet.checks", "-q", "-p", "no:cacheprovider",
               "--inventory", str(lab.inventory_path), env=lab.env)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if not p.is_symlink()]  # under the working folder
    results = json.loads((run_dir / "results.json").read_text())["results"]
    assert {(r["check"], r["object"]) for r in results if r["outcome"] in ("fail", "error")} \
        == EXPECTED["cert-expiry-2025"]
    for name in ("summary.html", "report.html", "junit.xml", "snapshot.json", "manifest.sha256"):
        assert (run_dir / name).is_file(), name


def test_ini_settings_and_the_console_script(installed: Path, start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    (tmp_path / "pytest.ini").write_text(f"[pytest]\ndsfleet_inventory = {lab.inventory_path}\n"
                                         f"dsfleet_run_dir = evidence/today\ndsfleet_lang = ja\n")
    dsfleet = installed.parent / "dsfleet"  # the console script
    run = subprocess.run([str(dsfleet), "run", "-q", "-p", "no:cacheprovider"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, **lab.env))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    doc = json.loads((tmp_path / "evidence" / "today" / "results.json").read_text())
    assert doc["lang"] == "ja" and doc["inventory"] == "lab-healthy"
    # The command line wins over the ini file.
    again = subprocess.run([str(dsfleet), "run", "-q", "-p", "no:cacheprovider",
                            "--run-dir", "other", "--lang", "en"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=600, env=dict(os.environ, **lab.env))
    assert again.returncode == 0 and json.loads((tmp_path / "other" / "results.json").read_text())["lang"] == "en"
