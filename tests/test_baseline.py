"""Accepted pairs: ``--write-baseline`` and ``--baseline``, as a team adopting the gate uses them.

A baseline holds content-hash pairs, so it survives renames and moves; entries that match nothing
any more are counted as stale; a new twin still fails the gate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sample_copies import SAMPLE_DATA, copy_sample, read_rows, split_args, summary_of

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, run_cli_module) -> dict[str, Path]:
    """The six planted pairs of sample_data written as a baseline, once for the module."""
    root = tmp_path_factory.mktemp("baseline")
    data = copy_sample(root)
    report = root / "report"
    result = run_cli_module(
        *split_args(data), "--out", report, "--format", "csv", "--quiet",
        "--write-baseline", root / "accepted.json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    return {"file": root / "accepted.json", "pairs_csv": report / "pairs.csv"}


@pytest.fixture(scope="module")
def run_cli_module(isolated_cache_dir: Path):
    """``python -m leakcheck ARGS`` for module-scoped fixtures (``run_cli`` is per test)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), LEAKCHECK_CACHE_DIR=str(isolated_cache_dir))

    def run(*args: object) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "leakcheck", *map(str, args)]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    return run


def test_a_written_baseline_holds_content_hash_pairs_with_paths(baseline) -> None:
    document = json.loads(baseline["file"].read_text(encoding="utf-8"))
    assert document["schema"] == "leakcheck-baseline/1"
    assert len(document["pairs"]) == 6
    entry = next(e for e in document["pairs"] if e["path_b"] == "textures/brick_06.webp")
    assert len(entry["sha256"]) == 2 and all(len(h) == 64 for h in entry["sha256"])
    assert (entry["split_a"], entry["path_a"], entry["split_b"]) == (
        "train", "textures/brick_01.png", "valid",
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["baseline file", "pairs.csv"])
def test_the_current_pairs_as_baseline_exit_0(tmp_path: Path, run_cli, baseline, kind) -> None:
    data = copy_sample(tmp_path)
    given = baseline["file"] if kind == "baseline file" else baseline["pairs_csv"]
    report = tmp_path / "report"
    result = run_cli(*split_args(data), "--out", report, "--format", "csv", "--baseline", given)
    assert result.returncode == 0, result.stdout + result.stderr
    pairs = read_rows(report / "pairs.csv")
    assert len(pairs) == 6 and all(row["accepted"] == "true" for row in pairs)
    summary = summary_of(report)
    assert (summary["accepted_pairs"], summary["baseline_stale"]) == (6, 0)
    assert read_rows(report / "reassignments.csv") == []  # accepted twins are not moved


def test_a_baseline_survives_renames_and_moves_and_counts_stale_entries(
    tmp_path: Path, run_cli, baseline
) -> None:
    data = copy_sample(tmp_path)
    # rename one twin, move another into a new subfolder of its split, delete a third
    (data / "valid/textures/brick_06.webp").rename(data / "valid/textures/renamed_brick.webp")
    (data / "test/people/moved").mkdir()
    (data / "test/people/astronaut_06.jpg").rename(data / "test/people/moved/astro.jpg")
    (data / "test/objects/coffee_06.jpg").unlink()
    report = tmp_path / "report"
    result = run_cli(*split_args(data), "--out", report, "--format", "csv", "--quiet",
                     "--baseline", baseline["file"])  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = summary_of(report)
    assert (summary["accepted_pairs"], summary["baseline_stale"]) == (5, 1)
    paths = {row["path_b"] for row in read_rows(report / "pairs.csv")}
    assert {"textures/renamed_brick.webp", "people/moved/astro.jpg"} <= paths


def test_a_new_twin_fails_the_gate_and_the_baseline_still_matches_after_apply(
    tmp_path: Path, run_cli, baseline
) -> None:
    data = copy_sample(tmp_path)
    rocket = np.asarray(Image.open(data / "train/space/rocket_01.jpg").convert("RGB"), float)
    twin = np.clip(rocket * 1.1, 0, 255).astype(np.uint8)
    Image.fromarray(twin).save(data / "valid/space/rocket_twin.png")
    report = tmp_path / "report"
    flagged = run_cli(*split_args(data), "--out", report, "--format", "csv", "--quiet",
                      "--baseline", baseline["file"])  # fmt: skip
    assert flagged.returncode == 1
    pairs = read_rows(report / "pairs.csv")
    new = [row for row in pairs if row["accepted"] == "false"]
    assert [(r["path_a"], r["path_b"]) for r in new] == [
        ("space/rocket_01.jpg", "space/rocket_twin.png")
    ]
    moves = read_rows(report / "reassignments.csv")
    assert {row["path"] for row in moves} <= {"space/rocket_01.jpg", "space/rocket_twin.png"}
    assert len(moves) == 1

    assert run_cli("apply", report, "--yes").returncode == 0
    after = tmp_path / "after"
    clean = run_cli(*split_args(data), "--out", after, "--format", "csv", "--quiet",
                    "--baseline", baseline["file"])  # fmt: skip
    assert clean.returncode == 0, clean.stdout + clean.stderr
    summary = summary_of(after)
    assert (summary["accepted_pairs"], summary["baseline_stale"]) == (6, 0)


def test_an_unreadable_baseline_is_a_usage_error(tmp_path: Path, run_cli) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"pairs": [{"no_hashes": 1}]}', encoding="utf-8")
    result = run_cli(*split_args(SAMPLE_DATA), "--out", tmp_path / "r", "--quiet",
                     "--baseline", bad)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("leakcheck: error: baseline")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "summary.json").exists()  # refused before any work
