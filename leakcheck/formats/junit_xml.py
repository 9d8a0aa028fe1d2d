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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leakcheck.audit import AuditResult

#: Members and pairs listed in one failure message; the failure's text lists them all.
MESSAGE_ITEMS = 20

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """``value`` as text that XML 1.0 can hold (control characters, lone surrogates → U+FFFD)."""
    return _NOT_XML.sub("\ufffd", str(value))


@dataclass(frozen=True)
class LeakingGroup:
    """A twin group that spans several splits, with its cross-split pairs."""

    group: str
    members: pd.DataFrame  # split, path, label
    pairs: pd.DataFrame  # rows of result.pairs
    accepted: bool  # every cross-split pair is accepted by the baseline


def leaking_groups(result: AuditResult) -> list[LeakingGroup]:
    """Twin groups whose images span several splits, strongest pair first."""
    pairs = result.pairs
    if pairs.empty:
        return []
    group_of = dict(
        zip(
            zip(result.groups["split"], result.groups["path"], strict=True),
            result.groups["group"],
            strict=True,
        )
    )
    keys = [
        group_of.get((s, p), "") for s, p in zip(pairs["split_a"], pairs["path_a"], strict=True)
    ]
    pairs = pairs.assign(_group=keys)
    rank = {name: position for position, name in enumerate(result.split_order)}
    found = []
    for group, group_pairs in pairs.groupby("_group", sort=False):
        members = result.groups[result.groups["group"] == group][["split", "path", "label"]]
        members = members.assign(_rank=members["split"].map(rank)).sort_values(
            ["_rank", "path"], kind="mergesort"
        )[["split", "path", "label"]]
        if members.empty:  # a pair outside every group: should not happen, still report it
            members = pd.DataFrame(
                {
                    "split": [group_pairs["split_a"].iloc[0], group_pairs["split_b"].iloc[0]],
                    "path": [group_pairs["path_a"].iloc[0], group_pairs["path_b"].iloc[0]],
                    "label": [group_pairs["label_a"].iloc[0], group_pairs["label_b"].iloc[0]],
                }
            )
        accepted = bool(group_pairs["accepted"].astype(bool).all())
        found.append(
            LeakingGroup(str(group), members, group_pairs.drop(columns="_group"), accepted)
        )
    return found


def _member_line(split: str, path: str, label: str) -> str:
    return f"{split}/{path}" + (f" [{label}]" if label else "")


def _pair_line(row: pd.Series) -> str:
    note = " (accepted)" if bool(row["accepted"]) else ""
    return (
        f"{row['split_a']}/{row['path_a']} <-> {row['split_b']}/{row['path_b']}: "
        f"SSIM {float(row['ssim']):.6f} ({row['method']}){note}"
    )


def _group_case(suite: ET.Element, found: LeakingGroup, threshold: float) -> ET.Element:
    splits = list(dict.fromkeys(found.members["split"]))
    case = ET.SubElement(
        suite,
        "testcase",
        classname="leakcheck.twin_groups",
        name=xml_text(f"twin group {found.group} ({', '.join(splits)})"),
    )
    members = [
        _member_line(s, p, lab)
        for s, p, lab in zip(
            found.members["split"], found.members["path"], found.members["label"], strict=True
        )
    ]
    pair_lines = [_pair_line(row) for _, row in found.pairs.iterrows()]
    if found.accepted:
        ET.SubElement(case, "skipped", message="every cross-split pair is accepted (baseline)")
        return case
    shown = members[:MESSAGE_ITEMS] + [f"... {len(members) - MESSAGE_ITEMS} more"] * (
        len(members) > MESSAGE_ITEMS
    )
    scores = [f"{float(v):.6f}" for v in found.pairs["ssim"]][:MESSAGE_ITEMS]
    message = (
        f"{len(members)} near-twin images (SSIM >= {threshold:g}) in {len(splits)} splits: "
        + "; ".join(shown)
        + ". Scores: "
        + ", ".join(scores)
    )
    failure = ET.SubElement(
        case, "failure", message=xml_text(message), type="cross-split near-twins"
    )
    failure.text = xml_text(
        "Members:\n  " + "\n  ".join(members) + "\nCross-split pairs:\n  " + "\n  ".join(pair_lines)
    )
    return case


def _group_leak_case(suite: ET.Element, row: pd.Series) -> ET.Element:
    case = ET.SubElement(
        suite,
        "testcase",
        classname="leakcheck.group_ids",
        name=xml_text(f"group id {row['group']} ({row['split_a']}, {row['split_b']})"),
    )
    message = (
        f"group id {row['group']} has {row['count_a']} image(s) in {row['split_a']} and "
        f"{row['count_b']} in {row['split_b']}"
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
    for _, row in result.group_leaks.iterrows():
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
