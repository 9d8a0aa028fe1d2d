"""``leakcheck apply`` / ``undo`` on real folders of real PNG files, as a user would run them.

Every test builds split folders with class subfolders, writes ``summary.json`` and the plan CSV the
way an audit or ``leakcheck place`` writes them, runs the real functions and compares full snapshots
({relative path: sha256}) of the temporary tree.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leakcheck.fixes.apply import (
    PlanError,
    PlannedOperation,
    apply_plan,
    read_plan,
    undo_journal,
)

REPO = Path(__file__).resolve().parents[1]
REASSIGNMENT_HEADER = ["path", "from_split", "to_split", "group", "reason"]
PLACEMENT_HEADER = ["path", "split", "reason", "twin_split", "twin_path", "ssim"]


# ------------------------------------------------------------------------------------------------
# Building real datasets and reports
# ------------------------------------------------------------------------------------------------


def write_png(path: Path, seed: int, size: int = 8) -> None:
    """A small PNG whose pixels depend on ``seed``, so every seed gives different bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def snapshot(root: Path) -> dict[str, str]:
    """Every folder, file and link under ``root``: folders as ``<dir>``, files by sha256."""
    tree: dict[str, str] = {}
    for folder, subfolders, files in os.walk(root):
        for name in subfolders + files:
            path = Path(folder) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                tree[key] = f"<link to {os.readlink(path)}>"
            elif path.is_dir():
                tree[key] = "<dir>"
            else:
                tree[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def without_journals(tree: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in tree.items() if not Path(key).name.startswith("journal-")}


def file_hashes(tree: dict[str, str], prefix: str) -> collections.Counter[str]:
    return collections.Counter(
        value for key, value in tree.items() if key.startswith(prefix) and not value.startswith("<")
    )


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_summary(report: Path, roots: dict[str, Path], new_dir: Path | None = None) -> None:
    splits = {
        name: {"root": str(root), "images": sum(1 for _ in root.rglob("*.png")), "errors": 0}
        for name, root in roots.items()
    }
    summary: dict = {"schema_version": 1, "version": "0.1.0", "splits": splits, "exit_code": 1}
    if new_dir is not None:
        summary["new_dir"] = str(new_dir)
    report.mkdir(parents=True, exist_ok=True)
    (report / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Path]:
    """train/{cats,dogs}, valid/cats (no dogs yet) and an audit report moving two files to valid."""
    train, valid, report = tmp_path / "data/train", tmp_path / "data/valid", tmp_path / "report"
    for index in range(4):
        write_png(train / "cats" / f"img {index}.png", seed=index)
    for index in range(3):
        write_png(train / "dogs" / f"dog{index}.png", seed=10 + index)
    write_png(valid / "cats" / "val0.png", seed=20)
    write_summary(report, {"train": train, "valid": valid})
    rows = [
        ["cats/img 0.png", "train", "valid", "g1", "twin of valid/cats/val0.png"],
        ["dogs/dog0.png", "train", "valid", "g2", "twin in valid"],
        ["cats/img 1.png", "train", "", "g3", "conflict: twins in train and valid"],
    ]
    write_csv(report / "reassignments.csv", REASSIGNMENT_HEADER, rows)
    return {"root": tmp_path, "train": train, "valid": valid, "report": report}


def journals(report: Path) -> list[Path]:
    return sorted(report.glob("journal-*.csv"))


# ------------------------------------------------------------------------------------------------
# Dry run, apply, clash, undo
# ------------------------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_changes_nothing(dataset: dict[str, Path]) -> None:
    before = snapshot(dataset["root"])
    lines: list[str] = []
    outcome = apply_plan(dataset["report"], yes=False, echo=lines.append)
    assert snapshot(dataset["root"]) == before  # not even a journal
    assert outcome.journal is None
    assert [line for line in lines if line.startswith("would move")] == [
        f"would move {dataset['train'] / 'cats/img 0.png'} -> {dataset['valid'] / 'cats/img 0.png'}",
        f"would move {dataset['train'] / 'dogs/dog0.png'} -> {dataset['valid'] / 'dogs/dog0.png'}",
    ]
    assert outcome.skipped == [(4, "conflict: twins in train and valid")]


def test_read_plan_lists_moves_with_their_rows(dataset: dict[str, Path]) -> None:
    train, valid = dataset["train"], dataset["valid"]
    assert read_plan(dataset["report"]) == [
        PlannedOperation("move", train / "cats/img 0.png", valid / "cats/img 0.png", 2),
        PlannedOperation("move", train / "dogs/dog0.png", valid / "dogs/dog0.png", 3),
    ]


def expected_after_apply(before: dict[str, str]) -> dict[str, str]:
    expected = dict(before)
    expected["data/valid/cats/img 0.png"] = expected.pop("data/train/cats/img 0.png")
    expected["data/valid/dogs"] = "<dir>"
    expected["data/valid/dogs/dog0.png"] = expected.pop("data/train/dogs/dog0.png")
    return expected


def test_apply_moves_exactly_the_planned_files(dataset: dict[str, Path]) -> None:
    before = snapshot(dataset["root"])
    outcome = apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    after = snapshot(dataset["root"])
    assert without_journals(after) == expected_after_apply(before)
    assert file_hashes(after, "data/") == file_hashes(before, "data/")
    assert outcome.renamed == []
    assert outcome.skipped == [(4, "conflict: twins in train and valid")]
    assert outcome.journal is not None and journals(dataset["report"]) == [outcome.journal]


def test_apply_never_overwrites_a_clash_gets_a_suffix(dataset: dict[str, Path]) -> None:
    valid = dataset["valid"]
    write_png(valid / "cats/img 0.png", seed=99)  # same name, other image
    write_png(valid / "cats/img 0 (1).png", seed=98)
    before = snapshot(dataset["root"])
    dry = apply_plan(dataset["report"], yes=False, echo=lambda line: None)
    lines: list[str] = []
    outcome = apply_plan(dataset["report"], yes=True, echo=lines.append)

    renamed = (valid / "cats/img 0.png", valid / "cats/img 0 (2).png")
    assert dry.renamed == outcome.renamed == [renamed]
    assert any("img 0 (2).png (renamed: img 0.png exists)" in line for line in lines)
    after = snapshot(dataset["root"])
    assert after["data/valid/cats/img 0.png"] == before["data/valid/cats/img 0.png"]
    assert after["data/valid/cats/img 0 (2).png"] == before["data/train/cats/img 0.png"]
    assert file_hashes(after, "data/") == file_hashes(before, "data/")


def test_undo_gives_back_a_byte_identical_tree(dataset: dict[str, Path]) -> None:
    before = snapshot(dataset["root"])
    outcome = apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    assert outcome.journal is not None
    assert undo_journal(outcome.journal, echo=lambda line: None) == 2
    after = snapshot(dataset["root"])
    assert without_journals(after) == before  # valid/dogs, created by apply, is gone again
    assert outcome.journal.is_file()  # journals are never deleted


def test_undo_twice_says_nothing_to_undo(dataset: dict[str, Path]) -> None:
    outcome = apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    assert outcome.journal is not None
    undo_journal(outcome.journal, echo=lambda line: None)
    undone = snapshot(dataset["root"])
    with pytest.raises(PlanError, match="nothing to undo"):
        undo_journal(outcome.journal, echo=lambda line: None)
    assert snapshot(dataset["root"]) == undone


def test_apply_after_undo_completes_the_plan_with_a_new_journal(dataset: dict[str, Path]) -> None:
    before = snapshot(dataset["root"])
    first = apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    assert first.journal is not None
    undo_journal(first.journal, echo=lambda line: None)
    second = apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    assert second.journal is not None and second.journal != first.journal  # never overwritten
    assert without_journals(snapshot(dataset["root"])) == expected_after_apply(before)
    assert len(journals(dataset["report"])) == 2


def test_an_existing_journal_is_never_overwritten(dataset: dict[str, Path]) -> None:
    now = time.time()
    stamps = {time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + delta)) for delta in (0, 1, 2)}
    for stamp in stamps:  # as if other applies had run in this very second
        (dataset["report"] / f"journal-{stamp}.csv").write_text(
            "someone else's\n", encoding="utf-8"
        )
    outcome = apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    assert outcome.journal is not None and outcome.journal.name.endswith("-2.csv")
    for stamp in stamps:
        assert (dataset["report"] / f"journal-{stamp}.csv").read_text() == "someone else's\n"


def test_applying_an_applied_plan_is_refused(dataset: dict[str, Path]) -> None:
    apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    applied = snapshot(dataset["root"])
    with pytest.raises(PlanError, match=r"2 source file\(s\) missing: row 2 "):
        apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    assert snapshot(dataset["root"]) == applied


def test_undo_of_a_missing_or_foreign_journal_is_refused(dataset: dict[str, Path]) -> None:
    with pytest.raises(PlanError, match="journal not found"):
        undo_journal(dataset["report"] / "journal-nope.csv", echo=lambda line: None)
    with pytest.raises(PlanError, match="not a leakcheck journal"):
        undo_journal(dataset["report"] / "reassignments.csv", echo=lambda line: None)


# ------------------------------------------------------------------------------------------------
# Refused plans: nothing changes
# ------------------------------------------------------------------------------------------------


def rewrite_plan(
    dataset: dict[str, Path], rows: list[list[str]], header: list[str] | None = None
) -> None:
    write_csv(dataset["report"] / "reassignments.csv", header or REASSIGNMENT_HEADER, rows)


def dotdot_path(dataset: dict[str, Path]) -> str:
    rewrite_plan(dataset, [["../valid/cats/val0.png", "train", "valid", "g", ""]])
    return "leaves its folder"


def absolute_path(dataset: dict[str, Path]) -> str:
    rewrite_plan(dataset, [[str(dataset["train"] / "cats/img 2.png"), "train", "valid", "g", ""]])
    return "absolute path"


def symlink_outside(dataset: dict[str, Path]) -> str:
    secret = dataset["root"] / "outside/secret.png"
    write_png(secret, seed=50)
    (dataset["train"] / "cats/link.png").symlink_to(secret)
    rewrite_plan(dataset, [["cats/link.png", "train", "valid", "g", ""]])
    return "outside"


def target_folder_symlink_outside(dataset: dict[str, Path]) -> str:
    (dataset["root"] / "outside").mkdir()
    (dataset["valid"] / "dogs").symlink_to(dataset["root"] / "outside")
    rewrite_plan(dataset, [["dogs/dog1.png", "train", "valid", "g", ""]])
    return "outside"


def unknown_split(dataset: dict[str, Path]) -> str:
    rewrite_plan(dataset, [["cats/img 2.png", "train", "tset", "g", ""]])
    return "unknown split 'tset'"


def missing_source(dataset: dict[str, Path]) -> str:
    rewrite_plan(
        dataset,
        [
            ["cats/img 2.png", "train", "valid", "g", ""],
            ["cats/gone.png", "train", "valid", "g", ""],
        ],
    )
    return r"1 source file\(s\) missing: row 3 .*gone.png"


def duplicate_source(dataset: dict[str, Path]) -> str:
    row = ["cats/img 2.png", "train", "valid", "g", ""]
    rewrite_plan(dataset, [row, row])
    return "same source file as row 2"


def missing_column(dataset: dict[str, Path]) -> str:
    rewrite_plan(dataset, [["cats/img 2.png", "train"]], header=["path", "from_split"])
    return r"missing column\(s\): to_split"


def short_row(dataset: dict[str, Path]) -> str:
    rewrite_plan(
        dataset, [["cats/img 2.png", "train", "valid", "g", ""], ["cats/img 3.png", "train"]]
    )
    return "row 3: wrong number of fields"


def no_plan(dataset: dict[str, Path]) -> str:
    (dataset["report"] / "reassignments.csv").unlink()
    return "no reassignments.csv or placement.csv"


@pytest.mark.parametrize(
    "break_plan",
    [
        dotdot_path,
        absolute_path,
        symlink_outside,
        target_folder_symlink_outside,
        unknown_split,
        missing_source,
        duplicate_source,
        missing_column,
        short_row,
        no_plan,
    ],
)
def test_a_bad_plan_is_refused_and_nothing_changes(dataset: dict[str, Path], break_plan) -> None:
    message = break_plan(dataset)
    before = snapshot(dataset["root"])
    for yes in (False, True):
        with pytest.raises(PlanError, match=message) as refused:
            apply_plan(dataset["report"], yes=yes, echo=lambda line: None)
        assert "\n" not in str(refused.value)
        assert snapshot(dataset["root"]) == before


# ------------------------------------------------------------------------------------------------
# Placement: copies, and undo removes them
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def placement(dataset: dict[str, Path]) -> dict[str, Path]:
    """A ``leakcheck place`` report over NEW_DIR in the same report folder as an audit plan."""
    new_dir = dataset["root"] / "new"
    for index in range(3):
        write_png(new_dir / "cats" / f"new{index}.png", seed=30 + index)
    write_png(new_dir / "birds/bird.png", seed=40)
    write_summary(
        dataset["report"], {"train": dataset["train"], "valid": dataset["valid"]}, new_dir
    )
    rows = [
        ["cats/new0.png", "train", "no twin", "", "", ""],
        ["cats/new1.png", "valid", "twin of valid/cats/val0.png", "valid", "cats/val0.png", "0.95"],
        [
            "cats/new2.png",
            "",
            "conflict: twins in train and valid",
            "train",
            "cats/img 0.png",
            "0.97",
        ],
        ["birds/bird.png", "valid", "no twin", "", "", ""],
    ]
    write_csv(dataset["report"] / "placement.csv", PLACEMENT_HEADER, rows)
    return {**dataset, "new": new_dir}


def test_placement_copies_and_undo_removes_the_copies(placement: dict[str, Path]) -> None:
    before = snapshot(placement["root"])
    outcome = apply_plan(placement["report"], yes=True, echo=lambda line: None)
    after = snapshot(placement["root"])

    expected = dict(before)
    expected["data/train/cats/new0.png"] = before["new/cats/new0.png"]
    expected["data/valid/cats/new1.png"] = before["new/cats/new1.png"]
    expected["data/valid/birds"] = "<dir>"
    expected["data/valid/birds/bird.png"] = before["new/birds/bird.png"]
    assert without_journals(after) == expected  # NEW_DIR untouched, audit plan ignored
    assert [operation.kind for operation in outcome.operations] == ["copy"] * 3
    assert outcome.skipped == [(4, "conflict: twins in train and valid")]

    assert outcome.journal is not None
    assert undo_journal(outcome.journal, echo=lambda line: None) == 3
    assert without_journals(snapshot(placement["root"])) == before


def test_placement_without_new_dir_falls_back_to_the_audit_plan(placement: dict[str, Path]) -> None:
    write_summary(placement["report"], {"train": placement["train"], "valid": placement["valid"]})
    assert {operation.kind for operation in read_plan(placement["report"])} == {"move"}


def test_undo_keeps_a_copy_that_was_changed_since(placement: dict[str, Path]) -> None:
    outcome = apply_plan(placement["report"], yes=True, echo=lambda line: None)
    changed = placement["valid"] / "cats/new1.png"
    write_png(changed, seed=77)  # the user edited the placed image
    changed_hash = hashlib.sha256(changed.read_bytes()).hexdigest()
    lines: list[str] = []
    assert outcome.journal is not None
    with pytest.raises(PlanError, match=r"undo incomplete: 1 operation\(s\) left"):
        undo_journal(outcome.journal, echo=lines.append)
    assert hashlib.sha256(changed.read_bytes()).hexdigest() == changed_hash
    assert not (placement["train"] / "cats/new0.png").exists()
    assert not (placement["valid"] / "birds").exists()  # its copy was removed, so was the folder
    assert any("new1.png was changed since apply; left in place" in line for line in lines)


# ------------------------------------------------------------------------------------------------
# Interrupted apply: a real process killed with SIGKILL part-way
# ------------------------------------------------------------------------------------------------

APPLY_IN_A_SUBPROCESS = (
    "import sys; from pathlib import Path; from leakcheck.fixes.apply import apply_plan; "
    "apply_plan(Path(sys.argv[1]), yes=True, echo=lambda line: None)"
)


def journal_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def kill_apply_after(report: Path, rows: int) -> Path:
    """Run apply in a real process and SIGKILL it once its journal holds ``rows`` rows."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", APPLY_IN_A_SUBPROCESS, str(report)], env=environment
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            found = journals(report)
            if found and len(found[0].read_text(encoding="utf-8").splitlines()) > rows:
                break
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "apply finished before it could be killed"
    (journal,) = journals(report)
    return journal


@pytest.fixture
def large_plan(tmp_path: Path) -> dict[str, Path]:
    """Three hundred small images moved from train to valid, enough to kill apply part-way."""
    train, valid, report = tmp_path / "data/train", tmp_path / "data/valid", tmp_path / "report"
    for index in range(300):
        write_png(train / f"class{index % 3}" / f"img{index:03}.png", seed=index, size=24)
    write_png(valid / "class0/keep.png", seed=1000)
    write_summary(report, {"train": train, "valid": valid})
    rows = [
        [f"class{index % 3}/img{index:03}.png", "train", "valid", "", ""] for index in range(300)
    ]
    write_csv(report / "reassignments.csv", REASSIGNMENT_HEADER, rows)
    return {"root": tmp_path, "train": train, "valid": valid, "report": report}


@pytest.mark.parametrize("rows_before_kill", [1, 40, 151])
def test_undo_after_a_killed_apply_restores_the_tree(
    large_plan: dict[str, Path], rows_before_kill: int
) -> None:
    before = snapshot(large_plan["root"])
    journal = kill_apply_after(large_plan["report"], rows_before_kill)
    statuses = collections.Counter(row[1] for row in journal_rows(journal))
    assert statuses["planned"] >= 1 and statuses["done"] < 300  # really interrupted

    undo_journal(journal, echo=lambda line: None)
    assert without_journals(snapshot(large_plan["root"])) == before
    assert not list(large_plan["root"].rglob("*.partial"))

    apply_plan(large_plan["report"], yes=True, echo=lambda line: None)
    after = snapshot(large_plan["root"])
    expected = {
        key: value for key, value in before.items() if not key.startswith("data/train/class")
    }
    expected.update(
        {"data/train/class0": "<dir>", "data/train/class1": "<dir>", "data/train/class2": "<dir>"}
    )
    expected.update({"data/valid/class1": "<dir>", "data/valid/class2": "<dir>"})
    for key, value in before.items():
        if key.startswith("data/train/class") and key.endswith(".png"):
            expected[key.replace("data/train/", "data/valid/")] = value
    assert without_journals(after) == expected
    with pytest.raises(PlanError, match="nothing to undo"):
        undo_journal(journal, echo=lambda line: None)


def test_undo_after_a_kill_between_claiming_the_target_and_removing_the_source(
    dataset: dict[str, Path],
) -> None:
    """The one state a kill rarely hits: both names exist and the journal has no ``done`` row yet."""
    before = snapshot(dataset["root"])
    outcome = apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    assert outcome.journal is not None
    # Put the disk and the journal exactly where the kill would have left them: the last move has
    # linked its target but not yet unlinked its source, and its "done" row is not written.
    os.link(dataset["valid"] / "dogs/dog0.png", dataset["train"] / "dogs/dog0.png")
    lines = outcome.journal.read_text(encoding="utf-8").splitlines(keepends=True)
    assert ",done," in lines[-1]
    outcome.journal.write_text("".join(lines[:-1]), encoding="utf-8")

    assert (
        undo_journal(outcome.journal, echo=lambda line: None) == 1
    )  # the other one was undone by unlinking
    assert without_journals(snapshot(dataset["root"])) == before


def test_undo_ignores_a_last_journal_row_torn_by_a_crash(dataset: dict[str, Path]) -> None:
    """A power cut can leave half a row at the end of the journal; undo drops it and goes on."""
    before = snapshot(dataset["root"])
    outcome = apply_plan(dataset["report"], yes=True, echo=lambda line: None)
    assert outcome.journal is not None
    with outcome.journal.open("ab") as handle:
        handle.write(b'3,planned,move,9,"/data/train/cats/im')
    assert undo_journal(outcome.journal, echo=lambda line: None) == 2
    assert without_journals(snapshot(dataset["root"])) == before
    with pytest.raises(PlanError, match="nothing to undo"):
        undo_journal(outcome.journal, echo=lambda line: None)


# ------------------------------------------------------------------------------------------------
# Moves across filesystems: copy, fsync, verify, then remove the source
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def other_filesystem(tmp_path: Path):
    shm = Path("/dev/shm")
    if (
        not shm.is_dir()
        or not os.access(shm, os.W_OK)
        or shm.stat().st_dev == tmp_path.stat().st_dev
    ):
        pytest.skip("no second writable filesystem (/dev/shm) to move across")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="leakcheck-test-"))
    yield folder
    shutil.rmtree(folder)


def test_a_move_across_filesystems_is_verified_and_undone(
    tmp_path: Path, other_filesystem: Path
) -> None:
    train, valid, report = tmp_path / "train", other_filesystem / "valid", tmp_path / "report"
    write_png(train / "cats/a.png", seed=1)
    write_png(train / "cats/b.png", seed=2)
    write_png(valid / "cats/b.png", seed=3)  # a clash on the other filesystem too
    write_summary(report, {"train": train, "valid": valid})
    rows = [["cats/a.png", "train", "valid", "", ""], ["cats/b.png", "train", "valid", "", ""]]
    write_csv(report / "reassignments.csv", REASSIGNMENT_HEADER, rows)
    before = {"tmp": snapshot(tmp_path), "other": snapshot(other_filesystem)}

    outcome = apply_plan(report, yes=True, echo=lambda line: None)
    assert snapshot(other_filesystem)["valid/cats/a.png"] == before["tmp"]["train/cats/a.png"]
    assert snapshot(other_filesystem)["valid/cats/b (1).png"] == before["tmp"]["train/cats/b.png"]
    assert not (train / "cats/a.png").exists() and not (train / "cats/b.png").exists()
    assert not list(other_filesystem.rglob("*.partial"))

    assert outcome.journal is not None
    undo_journal(outcome.journal, echo=lambda line: None)
    assert without_journals(snapshot(tmp_path)) == before["tmp"]
    assert snapshot(other_filesystem) == before["other"]
