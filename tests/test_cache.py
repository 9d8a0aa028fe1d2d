"""The incremental cache: re-runs decode only new files, unchanged inputs skip the comparison,
corrupt entries are rebuilt, two runs at once are safe, the size cap holds."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import leakcheck
from leakcheck.cache import DATABASE_NAME, Cache


def _write_dataset(root: Path, count: int = 12, seed: int = 0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    splits = {"train": root / "train", "valid": root / "valid"}
    for folder in splits.values():
        folder.mkdir(parents=True)
    for k in range(count):
        image = (rng.random((40, 40)) * 255).astype(np.uint8)
        Image.fromarray(image).save(splits["train"] / f"t{k:02d}.png")
        noisy = np.clip(image.astype(int) + rng.integers(-3, 4, image.shape), 0, 255)
        target = splits["valid"] if k < 3 else splits["train"]
        Image.fromarray(noisy.astype(np.uint8)).save(target / f"v{k:02d}.png")
    return splits


def _audit(splits: dict[str, Path], cache_dir: Path, **options: object) -> leakcheck.AuditResult:
    return leakcheck.audit(splits, size=32, cache_dir=cache_dir, jobs=1, **options)


def test_unchanged_rerun_skips_decoding_and_comparison(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    first = _audit(splits, cache_dir)
    assert first.summary["images_decoded"] == 24
    assert first.summary["comparison_from_cache"] is False
    second = _audit(splits, cache_dir)
    assert second.summary["comparison_from_cache"] is True
    assert second.summary["images_decoded"] == 0
    assert "compare" not in second.summary["timings"]
    assert second.pairs.equals(first.pairs)


def test_unchanged_rerun_reuses_the_findings_and_still_writes_its_files(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    first = _audit(splits, cache_dir)
    assert first.summary["findings_from_cache"] is False
    baseline = tmp_path / "accepted.json"
    second = _audit(splits, cache_dir, write_baseline=baseline)
    assert second.summary["findings_from_cache"] is True
    assert second.summary["images_from_cache"] == 24
    assert second.summary["settings"]["write_baseline"] == str(baseline)
    for table in ("pairs", "groups", "group_info", "reassignments", "images", "errors"):
        assert getattr(second, table).equals(getattr(first, table)), table
    unchanged = ("timings", "settings", "findings_from_cache", "images_decoded")
    assert {k: v for k, v in second.summary.items() if k not in unchanged} == {
        k: v for k, v in first.summary.items() if k not in unchanged
    } | {"images_from_cache": 24, "comparison_from_cache": True}
    # the side effect of --write-baseline happens on a cached run too
    assert len(json.loads(baseline.read_text())["pairs"]) == len(first.pairs) > 0


def test_what_the_findings_depend_on_misses_their_cache(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    _audit(splits, cache_dir, write_baseline=tmp_path / "accepted.json")
    other_policy = _audit(splits, cache_dir, policy="train")
    assert other_policy.summary["findings_from_cache"] is False
    assert other_policy.summary["comparison_from_cache"] is True
    accepted = _audit(splits, cache_dir, baseline=tmp_path / "accepted.json")
    assert accepted.summary["findings_from_cache"] is False
    assert accepted.summary["exit_code"] == 0
    # the same baseline path with other content is another baseline
    (tmp_path / "accepted.json").write_text('{"schema": "leakcheck-baseline/1", "pairs": []}\n')
    emptied = _audit(splits, cache_dir, baseline=tmp_path / "accepted.json")
    assert emptied.summary["findings_from_cache"] is False
    assert emptied.summary["exit_code"] == 1


def test_adding_images_decodes_only_the_new_ones(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    _audit(splits, cache_dir)
    rng = np.random.default_rng(7)
    Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)).save(splits["valid"] / "new.png")
    again = _audit(splits, cache_dir)
    assert again.summary["images_decoded"] == 1
    assert again.summary["images_from_cache"] == 24
    assert again.summary["comparison_from_cache"] is False


def test_settings_that_shape_arrays_miss_the_cache(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    _audit(splits, cache_dir)
    other_size = leakcheck.audit(splits, size=24, cache_dir=cache_dir, jobs=1)
    assert other_size.summary["images_decoded"] == 24


def test_corrupt_entries_are_rebuilt_not_trusted(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    reference = _audit(splits, cache_dir)
    with sqlite3.connect(cache_dir / DATABASE_NAME) as connection:
        # flip bytes in every stored array and result: checksums no longer match
        connection.execute("UPDATE entries SET data = zeroblob(length(data))")
    rebuilt = _audit(splits, cache_dir)
    assert rebuilt.summary["images_decoded"] == 24
    assert rebuilt.summary["comparison_from_cache"] is False
    assert rebuilt.pairs.equals(reference.pairs)


def test_a_cache_file_that_is_not_a_database_is_replaced(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / DATABASE_NAME).write_bytes(b"this is not sqlite" * 100)
    result = _audit(splits, cache_dir)
    assert result.summary["images_decoded"] == 24
    assert len(result.pairs) == 3


def test_size_cap_evicts_least_recently_used(tmp_path: Path) -> None:
    arrays = {f"key{k}": np.full((1, 32, 32), k, dtype=np.uint8) for k in range(10)}
    with Cache(tmp_path, max_bytes=5 * 1024) as cache:
        for key, array in arrays.items():
            cache.put_arrays({key: array})
        info = cache.info()
        assert info["bytes"] <= 5 * 1024
        kept = cache.get_arrays(arrays)
    assert "key9" in kept and "key0" not in kept
    assert all(np.array_equal(kept[key], arrays[key]) for key in kept)


def test_two_runs_at_once_do_not_corrupt_the_cache(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data", count=30)
    cache_dir = tmp_path / "cache"
    command = [
        sys.executable, "-m", "leakcheck", "--train", str(splits["train"]),
        "--valid", str(splits["valid"]), "--size", "32", "--cache", str(cache_dir), "--quiet",
        "--format", "csv",
    ]  # fmt: skip
    runs = [
        subprocess.Popen([*command, "--out", str(tmp_path / f"out{k}")], stderr=subprocess.PIPE)
        for k in range(3)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 1, stderr.decode()
    final = _audit(splits, cache_dir)
    assert final.summary["comparison_from_cache"] is True
    reports = [(tmp_path / f"out{k}" / "pairs.csv").read_text() for k in range(3)]
    assert reports[0] == reports[1] == reports[2]


def test_cache_info_and_clear_commands(tmp_path: Path) -> None:
    splits = _write_dataset(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    _audit(splits, cache_dir)
    info = subprocess.run(
        [sys.executable, "-m", "leakcheck", "cache", "info", "--cache", str(cache_dir)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    with Cache(cache_dir) as cache:
        stored = cache.info()
    assert "24 images" in info.stdout and f"{stored['results']} results" in info.stdout
    assert stored["results"] >= 1  # the comparison (and the plan's searches, when it made some)
    cleared = subprocess.run(
        [sys.executable, "-m", "leakcheck", "cache", "clear", "--cache", str(cache_dir)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"removed {24 + stored['results']} entries" in cleared.stdout
    with Cache(cache_dir) as cache:
        assert cache.info()["arrays"] == 0


def test_environment_variable_sets_the_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAKCHECK_CACHE_DIR", str(tmp_path / "from-env"))
    splits = _write_dataset(tmp_path / "data")
    leakcheck.audit(splits, size=32, jobs=1)
    assert (tmp_path / "from-env" / DATABASE_NAME).exists()


def test_no_cache_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKCHECK_CACHE_DIR", str(tmp_path / "unused"))
    splits = _write_dataset(tmp_path / "data")
    result = leakcheck.audit(splits, size=32, jobs=1, cache=False)
    assert result.summary["images_decoded"] == 24
    assert not (tmp_path / "unused").exists()
    assert json.dumps(result.summary["settings"])  # settings are JSON-ready
