"""junit.xml (format ``junit``): the audit as test results, for CI systems that show JUnit reports.

One ``<testsuite name="leakcheck">``:

- one failing ``<testcase>`` per leaking twin group (its images span several splits and at least
  one of its cross-split pairs is not accepted by the baseline), its members and scores in the
  failure message;
- one skipped ``<testcase>`` per leaking group whose cross-split pairs are all accepted;
- one failing ``<testcase>`` per manifest group id found in two splits (``group_leaks``);
- passing testcases ``no cross-split near-twins`` and (with manifest groups) ``no group id in
  several splits`` when there is nothing to report.

ElementTree writes it, so every name is escaped; characters XML cannot hold are replaced.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import namedtuple
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from leakcheck.audit import AuditResult

#: Members and pairs listed in one failure message; the failure's text lists them all.
MESSAGE_ITEMS = 20

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """``value`` as text that XML 1.0 can hold (control characters, lone surrogates → U+FFFD)."""
    return _NOT_XML.sub("\ufffd", str(value))


Member = tuple[str, str, str]  # split, path, label


def columns(frame: pd.DataFrame, *names: str) -> Iterator[tuple[Any, ...]]:
    """Plain tuples of the named columns of ``frame`` (fast: no pandas boxing per value)."""
    return zip(*(frame[name].tolist() for name in names), strict=True)


def records(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> list[Any]:
    """Rows of ``frame`` as named tuples. Much faster than ``itertuples`` on pandas' string
    columns, which box every value; the values are plain Python objects."""
    names = list(frame.columns if columns is None else columns)
    row_type = namedtuple("Row", names, rename=True)  # type: ignore[misc]
    return list(map(row_type._make, zip(*(frame[name].tolist() for name in names), strict=True)))


@dataclass(frozen=True)
class LeakingGroup:
    """A twin group that spans several splits, with its cross-split pairs (rows of ``pairs``)."""

    group: str
    members: list[Member]  # in split order, then by path
    pairs: list[Any]  # rows of ``result.pairs`` (see :func:`records`), strongest first
    accepted: bool  # every cross-split pair is accepted by the baseline

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(split for split, _, _ in self.members))


def leaking_groups(result: AuditResult) -> list[LeakingGroup]:
    """Twin groups whose images span several splits, strongest pair first (one pass each)."""
    groups = result.groups
    members: dict[str, list[Member]] = {}
    group_by_image: dict[tuple[str, str], str] = {}
    for group, split, path, label in columns(groups, "group", "split", "path", "label"):
        members.setdefault(group, []).append((split, path, label or ""))
        group_by_image[(split, path)] = group
    pairs_of: dict[str, list[Any]] = {}
    for row in records(result.pairs):
        # A pair outside every group should not happen; it is still reported, as its own group.
        key = (row.split_a, row.path_a)
        group = group_by_image.get(key, f"{row.split_a}/{row.path_a}")
        pairs_of.setdefault(group, []).append(row)
    rank = {name: position for position, name in enumerate(result.split_order)}
    found = []
    for group, rows in pairs_of.items():
        listed = members.get(group) or [
            (rows[0].split_a, rows[0].path_a, rows[0].label_a or ""),
            (rows[0].split_b, rows[0].path_b, rows[0].label_b or ""),
        ]
        listed = sorted(listed, key=lambda member: (rank.get(member[0], len(rank)), member[1]))
        accepted = all(bool(row.accepted) for row in rows)
        found.append(LeakingGroup(str(group), listed, rows, accepted))
    return found


def group_of(result: AuditResult) -> dict[tuple[str, str], str]:
    """``(split, path)`` → twin group id, for every image in a twin group."""
    return {
        (split, path): group
        for group, split, path in columns(result.groups, "group", "split", "path")
    }


def leaking_group_counts(result: AuditResult) -> tuple[int, int]:
    """``(failing, accepted)``: leaking groups with a pair not accepted, and with all accepted.

    The same counts as :func:`leaking_groups`, without building the groups."""
    group_by_image = group_of(result)
    failing: set[str] = set()
    every: set[str] = set()
    for split, path, accepted in columns(result.pairs, "split_a", "path_a", "accepted"):
        group = group_by_image.get((split, path), f"{split}/{path}")
        every.add(group)
        if not accepted:
            failing.add(group)
    return len(failing), len(every) - len(failing)


def _member_line(split: str, path: str, label: str) -> str:
    return f"{split}/{path}" + (f" [{label}]" if label else "")


def _pair_line(row: Any) -> str:
    note = " (accepted)" if bool(row.accepted) else ""
    return (
        f"{row.split_a}/{row.path_a} <-> {row.split_b}/{row.path_b}: "
        f"SSIM {float(row.ssim):.6f} ({row.method}){note}"
    )


def _group_case(suite: ET.Element, found: LeakingGroup, threshold: float) -> ET.Element:
    splits = found.splits
    case = ET.SubElement(
        suite,
        "testcase",
        classname="leakcheck.twin_groups",
        name=xml_text(f"twin group {found.group} ({', '.join(splits)})"),
    )
    if found.accepted:
        ET.SubElement(case, "skipped", message="every cross-split pair is accepted (baseline)")
        return case
    members = [_member_line(*member) for member in found.members]
    shown = members[:MESSAGE_ITEMS]
    if len(members) > MESSAGE_ITEMS:
        shown.append(f"... {len(members) - MESSAGE_ITEMS} more")
    scores = [f"{float(row.ssim):.6f}" for row in found.pairs[:MESSAGE_ITEMS]]
    message = (
        f"{len(members)} near-twin images (SSIM >= {threshold:g}) in {len(splits)} splits: "
        + "; ".join(shown)
        + ". Scores: "
        + ", ".join(scores)
        + (", ..." if len(found.pairs) > MESSAGE_ITEMS else "")
    )
    failure = ET.SubElement(
        case, "failure", message=xml_text(message), type="cross-split near-twins"
    )
    pair_lines = [_pair_line(row) for row in found.pairs]
    failure.text = xml_text(
        "Members:\n  " + "\n  ".join(members) + "\nCross-split pairs:\n  " + "\n  ".join(pair_lines)
    )
    return case


def _group_leak_case(suite: ET.Element, row: Any) -> ET.Element:
    case = ET.SubElement(
        suite,
        "testcase",
        classname="leakcheck.group_ids",
        name=xml_text(f"group id {row.group} ({row.split_a}, {row.split_b})"),
    )
    message = (
        f"group id {row.group} has {row.count_a} image(s) in {row.split_a} and "
        f"{row.count_b} in {row.split_b}"
    )
    ET.SubElement(case, "failure", message=xml_text(message), type="group id leak")
    return case


def build_tree(result: AuditResult) -> ET.ElementTree:
    """The JUnit document as an ElementTree."""
    root = ET.Element("testsuites", name="leakcheck")
    seconds = sum(
        value
        for value in result.summary.get("timings", {}).values()
        if isinstance(value, int | float)
    )
    suite = ET.SubElement(root, "testsuite", name="leakcheck")
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("threshold", result.settings.threshold),
        ("exit_code", result.exit_code),
        ("images", sum(info["images"] for info in result.summary["splits"].values())),
        ("unreadable_files", len(result.errors)),
    ):
        ET.SubElement(properties, "property", name=name, value=str(value))
    groups = leaking_groups(result)
    for found in groups:
        _group_case(suite, found, result.settings.threshold)
    if not any(not found.accepted for found in groups):
        ET.SubElement(
            suite, "testcase", classname="leakcheck.twin_groups", name="no cross-split near-twins"
        )
    for row in records(result.group_leaks):
        _group_leak_case(suite, row)
    uses_groups = bool((result.images["group"] != "").any()) if len(result.images) else False
    if uses_groups and result.group_leaks.empty:
        ET.SubElement(
            suite, "testcase", classname="leakcheck.group_ids", name="no group id in several splits"
        )
    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(case.find("failure") is not None for case in cases),
        "errors": 0,
        "skipped": sum(case.find("skipped") is not None for case in cases),
    }
    for element in (root, suite):
        for key, value in counts.items():
            element.set(key, str(value))
        element.set("time", f"{seconds:.3f}")
    return ET.ElementTree(root)


def write(result: AuditResult, out: Path) -> list[Path]:
    path = Path(out) / "junit.xml"
    temporary = path.with_name(path.name + ".tmp")
    tree = build_tree(result)
    ET.indent(tree)
    tree.write(temporary, encoding="utf-8", xml_declaration=True)
    temporary.replace(path)
    return [path]
