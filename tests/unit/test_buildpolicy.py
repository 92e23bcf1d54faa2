"""Every boundary of the KB table (seed 001), the DSVA range, and the table's schema and order."""

from __future__ import annotations

import pytest

from dsfleet.buildpolicy import COLUMNS, BuildPolicy, Status, platform_column
from dsfleet.versions import Build

POLICY = BuildPolicy.load()

# (line, column, last affected, first fixed) exactly as the KB prints them.
RANGES = [
    ("20.0", "windows", "20.0.0-5995", "20.0.0-6313"),
    ("20.0", "linux", "20.0.0-4416", "20.0.0-4726"),
    ("20.0", "unix", "20.0.1-25771", "20.0.2-1390"),
    ("20.0", "macos", "20.0.0-224", "20.0.0-236"),
    ("12.0", "windows", "12.0.0-2265", "12.0.0-2380"),
    ("12.0", "linux", "12.0.0-2265", "12.0.0-2380"),
    ("12.0", "unix", "12.0.0-2265", "12.0.0-2380"),
    ("11.0", "windows", "11.0.0-2401", "11.0.0-2549"),
    ("11.0", "linux", "11.0.0-2401", "11.0.0-2549"),
    ("11.0", "unix", "11.0.0-2401", "11.0.0-2549"),
]


def bump(build: Build, delta: int) -> Build:
    return Build(build.major, build.minor, build.patch, build.build + delta)


@pytest.mark.parametrize("line,column,affected,fixed", RANGES, ids=[f"{r[0]}-{r[1]}" for r in RANGES])
def test_range_boundaries(line: str, column: str, affected: str, fixed: str) -> None:
    last_affected, first_fixed = Build.parse(affected), Build.parse(fixed)
    assert POLICY.classify(last_affected, column).status is Status.AFFECTED
    assert POLICY.classify(bump(last_affected, -1), column).status is Status.AFFECTED
    assert POLICY.classify(first_fixed, column).status is Status.FIXED
    assert POLICY.classify(bump(first_fixed, 1), column).status is Status.FIXED
    assert POLICY.classify(Build(first_fixed.major, first_fixed.minor, first_fixed.patch + 1, 1), column).status \
        is Status.FIXED
    # Builds strictly between the two bounds are not named by the KB: not compliant, with their own status.
    assert POLICY.classify(bump(last_affected, 1), column).status is Status.UNLISTED
    assert POLICY.classify(bump(first_fixed, -1), column).status is Status.UNLISTED
    assert POLICY.classify(first_fixed, column).required == f">= {first_fixed}"


@pytest.mark.parametrize("column", ["windows", "linux", "unix"])
def test_10_0_is_manual_review_and_9_6_not_affected(column: str) -> None:
    assert POLICY.classify(Build.parse("10.0.0-3761"), column).status is Status.MANUAL
    assert POLICY.classify(Build.parse("9.6.2-7888"), column).status is Status.NOT_AFFECTED


@pytest.mark.parametrize("line", ["12.0", "11.0", "10.0", "9.6"])
def test_macos_has_no_row_below_20(line: str) -> None:
    status = POLICY.classify(Build.parse(f"{line}.0-100"), "macos").status
    assert status is Status.UNKNOWN_LINE and not status.compliant


def test_release_lines_outside_the_table_are_not_compliant() -> None:
    assert POLICY.classify(Build.parse("11.1.0.163"), "windows").status is Status.UNKNOWN_LINE


def test_dsva_range() -> None:
    assert POLICY.classify_dsva(Build.parse("20.0.0-4416")).status is Status.AFFECTED
    assert POLICY.classify_dsva(Build.parse("20.0.0-4725")).status is Status.UNLISTED
    assert POLICY.classify_dsva(Build.parse("20.0.0-4726")).status is Status.FIXED
    assert POLICY.classify_dsva(Build.parse("20.0.0.8453")).status is Status.FIXED
    assert POLICY.classify_dsva(Build.parse("20.0.0-8454")).status is Status.OUT_OF_RANGE
    assert POLICY.classify_dsva(Build.parse("20.0.1-100")).status is Status.OUT_OF_RANGE
    assert POLICY.classify_dsva(Build.parse("12.0.0-2380")).status is Status.FIXED  # Linux column of 12.0


def test_hyphen_and_dotted_forms_are_the_same_build() -> None:
    assert Build.parse("20.0.0-4726") == Build.parse("20.0.0.4726")
    assert str(Build.parse("20.0.0.4726")) == "20.0.0-4726"
    assert Build.parse("20.0.0-10000") > Build.parse("20.0.0-9999")  # numeric, not string, order
    for bad in ("20.0.0", "20.0.0-x", "v20.0.0-1", ""):
        with pytest.raises(ValueError):
            Build.parse(bad)


def test_table_schema_and_order_are_pinned() -> None:
    assert list(POLICY.lines()) == ["20.0", "12.0", "11.0", "10.0", "9.6"]
    for columns in POLICY.lines().values():
        assert tuple(columns) == COLUMNS
    assert POLICY.source["reference"] == "KA-0016311" and POLICY.source["updated"] == "2025-09-25"
    assert (str(POLICY.dsva_min), str(POLICY.dsva_max)) == ("20.0.0-4726", "20.0.0-8453")


@pytest.mark.parametrize("platform,column", [
    ("Microsoft Windows Server 2022 (64 bit)  Build 20348", "windows"),
    ("Red Hat Enterprise 9 (64 bit) (5.14.0-284.30.1.el9_2.x86_64)", "linux"),
    ("Ubuntu Linux 20 (64 bit) (5.15.0-1041-aws)", "linux"),
    ("Solaris 11 (64 bit) (SPARC)", "unix"),
    ("AIX 7.2", "unix"),
    ("macOS 13", "macos"),
    ("Unknown OS", None),
])
def test_platform_column(platform: str, column: str | None) -> None:
    assert platform_column(platform) == column
