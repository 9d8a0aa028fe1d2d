"""Manifest input (``path, split[, label, group]``): group-id leaks, plans that never separate a
group, and ``--write-manifest``, the non-destructive fix.

The manifests list real image files copied from ``sample_data/``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from planted_twins import reaudit

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
SPLITS = ("train", "valid", "test")
PLANTED = {
    "valid/textures/brick_06.webp", "valid/animals/chelsea_05.jpg", "test/textures/grass_06.jpg",
    "test/microscopy/immunohistochemistry_05.png", "test/people/astronaut_06.jpg",
    "test/objects/coffee_06.jpg",
}  # fmt: skip


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def sample_manifest(root: Path, groups: dict[str, str], *, twins: bool = True) -> list[dict]:
    """Rows for a copy of sample_data under ``root``: ``path`` (relative), ``split``, ``label``,
    ``group`` (from ``groups`` by path, else empty) and an extra ``note`` column."""
    rows = []
    for split in SPLITS:
        shutil.copytree(SAMPLE_DATA / split, root / split)
        for file in sorted((root / split).rglob("*")):
            path = file.relative_to(root).as_posix()
            if file.is_file() and (twins or path not in PLANTED):
                label = file.relative_to(root / split).parts[0]
                rows.append({"path": path, "split": split, "label": label,
                             "group": groups.get(path, ""), "note": f"n{len(rows)}"})  # fmt: skip
    return rows


def test_a_group_id_in_two_splits_is_a_leak_and_the_fixed_manifest_is_clean(
    tmp_path: Path, run_cli
) -> None:
    rows = sample_manifest(
        tmp_path,
        {"train/textures/gravel_01.jpg": "site-7", "train/textures/gravel_02.jpg": "site-7",
         "valid/textures/gravel_03.jpg": "site-7", "test/textures/gravel_04.jpg": "site-9"},
        twins=False,
    )  # fmt: skip
    manifest = write_rows(tmp_path / "splits.csv", rows)
    report = tmp_path / "report"
    fixed = tmp_path / "fixed" / "splits.csv"
    audit = run_cli("--manifest", manifest, "--out", report, "--format", "csv", "--quiet",
                    "--write-manifest", fixed)  # fmt: skip
    assert audit.returncode == 1, audit.stderr
    assert read_rows(report / "pairs.csv") == []
    assert read_rows(report / "group_leaks.csv") == [
        {"group": "site-7", "split_a": "train", "count_a": "2", "split_b": "valid", "count_b": "1"}
    ]
    moves = read_rows(report / "reassignments.csv")
    assert {row["group"] for row in moves} == {"manifest:site-7"}
    assert len(moves) == 1 and moves[0]["path"] == "valid/textures/gravel_03.jpg"

    again = reaudit(manifest=fixed)
    assert again.exit_code == 0, (again.pairs, again.group_leaks)
    fixed_rows = read_rows(fixed)
    assert [r["path"] for r in fixed_rows] == [f"../{r['path']}" for r in rows]
    changed = [(a["path"], a["split"], b["split"]) for a, b in zip(rows, fixed_rows, strict=True)
               if a["split"] != b["split"]]  # fmt: skip
    assert changed == [("valid/textures/gravel_03.jpg", "valid", "train")]
    assert [r["note"] for r in fixed_rows] == [r["note"] for r in rows]


def test_the_plan_never_separates_a_group_even_through_an_unreadable_file(
    tmp_path: Path, run_cli
) -> None:
    # chelsea_01 (train) has a planted twin in valid; its group also holds chelsea_02 (train)
    # and a broken file listed in valid
    groups = {"train/animals/chelsea_01.jpg": "cat-1", "train/animals/chelsea_02.jpg": "cat-1",
              "valid/animals/chelsea_03.jpg": "cat-2", "test/animals/chelsea_04.jpg": "cat-2"}  # fmt: skip
    rows = sample_manifest(tmp_path, groups)
    (tmp_path / "valid/animals/broken.png").write_text("not an image", encoding="utf-8")
    (tmp_path / "valid/readme.txt").write_text("skipped by extension", encoding="utf-8")
    rows.append({"path": "valid/animals/broken.png", "split": "valid", "label": "animals",
                 "group": "cat-1", "note": "broken"})  # fmt: skip
    rows.append({"path": "valid/readme.txt", "split": "valid", "label": "", "group": "",
                 "note": "text"})  # fmt: skip
    manifest = write_rows(tmp_path / "splits.csv", rows)
    report = tmp_path / "report"
    fixed = tmp_path / "fixed.csv"
    audit = run_cli("--manifest", manifest, "--out", report, "--format", "csv", "--quiet",
                    "--policy", "majority", "--write-manifest", fixed)  # fmt: skip
    assert audit.returncode == 1
    assert [r["group"] for r in read_rows(report / "group_leaks.csv")] == ["cat-2"]
    assert [r["path"] for r in read_rows(report / "errors.csv")] == ["valid/animals/broken.png"]
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    assert summary["manifest_written"] == str(fixed)

    fixed_rows = read_rows(fixed)
    assert len(fixed_rows) == len(rows)
    assert [r["path"] for r in fixed_rows] == [r["path"] for r in rows]  # same folder: unchanged
    split_of = {r["path"]: r["split"] for r in fixed_rows}
    for group in ("cat-1", "cat-2"):
        assert len({r["split"] for r in fixed_rows if r["group"] == group}) == 1, group
    # the twin joins its group (majority: train holds 2 of the 3), and the broken file follows
    assert split_of["valid/animals/chelsea_05.jpg"] == "train"
    assert split_of["valid/animals/broken.png"] == "train"
    assert split_of["valid/readme.txt"] == "valid"
    again = reaudit(manifest=fixed)
    assert again.exit_code == 0, (again.pairs, again.group_leaks)


def test_a_folder_audit_can_be_fixed_as_a_manifest_without_moving_files(
    tmp_path: Path, run_cli
) -> None:
    splits = [arg for split in SPLITS for arg in (f"--{split}", str(SAMPLE_DATA / split))]
    fixed = tmp_path / "fixed.csv"
    audit = run_cli(*splits, "--out", tmp_path / "report", "--quiet", "--write-manifest", fixed)
    assert audit.returncode == 1
    rows = read_rows(fixed)
    assert list(rows[0]) == ["path", "split", "label"]
    assert len(rows) == 58
    assert all((tmp_path / row["path"]).resolve().is_file() for row in rows)
    again = reaudit(manifest=fixed)
    assert again.exit_code == 0, (again.pairs, again.group_leaks)


def test_the_input_manifest_is_never_overwritten(tmp_path: Path, run_cli) -> None:
    manifest = write_rows(tmp_path / "splits.csv", sample_manifest(tmp_path, {}))
    before = manifest.read_bytes()
    result = run_cli("--manifest", manifest, "--out", tmp_path / "report", "--quiet",
                     "--write-manifest", manifest)  # fmt: skip
    assert result.returncode == 2
    assert "is the input manifest" in result.stderr
    assert manifest.read_bytes() == before
    assert not (tmp_path / "report" / "summary.json").exists()  # refused before any work
