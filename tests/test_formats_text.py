"""summary.md and junit.xml: real datasets, the real CLI in a subprocess, the files parsed."""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_formats_html import (
    ALL_FORMATS,
    EXPECTED_PAIRS,
    HOSTILE_NAME,
    PIPE_NAME,
    make_hostile_dataset,
    run_leakcheck,
    synthetic_texture,
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def hostile_splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_hostile_dataset(tmp_path_factory.mktemp("hostile-data"))


@pytest.fixture(scope="module")
def leak_report(
    hostile_splits: dict[str, Path], cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("leak-report")
    completed = run_leakcheck(hostile_splits, out, "--format", ALL_FORMATS, cache_dir=cache_dir)
    assert completed.returncode == 1, completed.stderr
    return out


@pytest.fixture(scope="module")
def accepted_report(
    hostile_splits: dict[str, Path],
    leak_report: Path,
    cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The same audit with every pair of the first run accepted (``--baseline pairs.csv``)."""
    out = tmp_path_factory.mktemp("accepted-report")
    completed = run_leakcheck(
        hostile_splits, out, "--format", ALL_FORMATS, "--baseline", leak_report / "pairs.csv",
        cache_dir=cache_dir,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def suite_of(report: Path) -> ET.Element:
    root = ET.parse(report / "junit.xml").getroot()
    suites = root.findall("testsuite")
    assert root.tag == "testsuites" and len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "leakcheck"
    cases = suite.findall("testcase")
    failures = [case for case in cases if case.find("failure") is not None]
    skipped = [case for case in cases if case.find("skipped") is not None]
    for element in (root, suite):
        assert element.get("tests") == str(len(cases))
        assert element.get("failures") == str(len(failures))
        assert element.get("skipped") == str(len(skipped))
        assert element.get("errors") == "0"
    return suite


# -- junit.xml ---------------------------------------------------------------------------------


def test_junit_has_one_failure_per_leaking_group(leak_report: Path) -> None:
    suite = suite_of(leak_report)
    groups = read_rows(leak_report / "groups.csv")
    leaking = {row["group"] for row in groups}  # every sample group spans two splits
    failing = [case for case in suite.findall("testcase") if case.find("failure") is not None]
    assert len(failing) == len(leaking) == EXPECTED_PAIRS
    assert {case.get("name", "").split()[2] for case in failing} == leaking
    hostile = next(case for case in failing if HOSTILE_NAME in case.find("failure").get("message"))
    message = hostile.find("failure").get("message")
    assert f"valid/<b>dogs/{PIPE_NAME} [<b>dogs]" in message
    assert "Scores: 1.000000" in message
    assert "SSIM 1.000000" in hostile.find("failure").text
    assert suite.find("testcase[@name='no cross-split near-twins']") is None


def test_junit_accepted_pairs_give_no_failure(accepted_report: Path) -> None:
    suite = suite_of(accepted_report)
    cases = suite.findall("testcase")
    assert not [case for case in cases if case.find("failure") is not None]
    assert len([case for case in cases if case.find("skipped") is not None]) == EXPECTED_PAIRS
    assert suite.find("testcase[@name='no cross-split near-twins']") is not None


def test_junit_and_markdown_of_a_clean_audit(cache_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    splits = {}
    for split, seeds in (("train", range(10, 14)), ("valid", range(20, 23))):
        splits[split] = tmp_path / split
        splits[split].mkdir()
        for seed in seeds:
            Image.fromarray(synthetic_texture(seed)).save(splits[split] / f"texture_{seed}.png")
    out = tmp_path / "report"
    completed = run_leakcheck(splits, out, "--format", "junit,markdown", cache_dir=cache_dir)
    assert completed.returncode == 0, completed.stderr
    suite = suite_of(out)
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == ["no cross-split near-twins"]
    assert list(cases[0]) == [] and suite.get("failures") == "0"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("## leakcheck: ✅ clean — no cross-split near-twin")
    assert "| train / valid | 0 | 0 |" in summary
    assert "- Reassignment plan: 0 file(s) to move" in summary


def test_junit_and_markdown_report_group_id_leaks(cache_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    rows = []
    for index, (split, group) in enumerate(
        [("train", "patient-1"), ("train", "patient-2"), ("valid", "patient-1"),
         ("valid", "patient-3"), ("test", "patient-4")]
    ):  # fmt: skip
        path = tmp_path / "images" / f"scan_{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(synthetic_texture(100 + index)).save(path)
        rows.append(f"images/scan_{index}.png,{split},{group}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,split,group\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "report"
    completed = run_leakcheck(
        {}, out, "--manifest", manifest, "--format", "junit,markdown", cache_dir=cache_dir
    )
    assert completed.returncode == 1, completed.stderr
    suite = suite_of(out)
    failing = [case for case in suite.findall("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failing] == ["group id patient-1 (train, valid)"]
    assert suite.find("testcase[@name='no cross-split near-twins']") is not None
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "1 group id leak(s)" in summary


# -- summary.md --------------------------------------------------------------------------------


def table_rows(markdown: str) -> list[list[str]]:
    """Cells of every table row, split on unescaped ``|`` only."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([cell.strip() for cell in cells])
    return rows


def test_markdown_has_verdict_and_pairs(leak_report: Path) -> None:
    summary = (leak_report / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("## leakcheck: ❌ LEAK — 7 cross-split near-twin pairs")
    assert "Exit code **1**" in summary
    for row in read_rows(leak_report / "pairs.csv"):
        if row["label_a"] != "cats":  # the sample data's names need no escaping but "_"
            for side in ("a", "b"):
                name = f"{row[f'split_{side}']}/{row[f'path_{side}']}".replace("_", "\\_")
                assert name in summary
    assert "- Reassignment plan: 7 file(s) to move" in summary
    assert "- Unreadable files: 1 (`errors.csv`)" in summary
    assert "**labels differ**" in summary


def test_markdown_escapes_pipes_and_html(leak_report: Path) -> None:
    summary = (leak_report / "summary.md").read_text(encoding="utf-8")
    assert "twin\\|pipe.png" in summary
    assert "<img" not in summary and "<b>" not in summary
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in summary
    rows = table_rows(summary)
    pair_rows = [row for row in rows if len(row) == 8]
    assert len(pair_rows) == 2 + EXPECTED_PAIRS  # header, separator, pairs
    assert any("twin\\|pipe.png" in cell for row in pair_rows for cell in row)
    assert all(len(row) in (3, 8) for row in rows)  # no name broke a table


def test_markdown_clean_after_baseline(accepted_report: Path) -> None:
    summary = (accepted_report / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("## leakcheck: ✅ clean")
    assert f"{EXPECTED_PAIRS} accepted pair(s)" in summary
    assert "- Leaking twin groups: **0** (7 accepted)" in summary
