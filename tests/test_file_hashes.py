"""Recorded file hashes: an unchanged file is not read again; any change is noticed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

import leakcheck
from leakcheck.cache import RACY_SECONDS, Cache, file_stamp
from leakcheck.decoding import hash_sources
from leakcheck.sources import scan_split_folder


def _age(path: Path, seconds: float) -> None:
    """Make a file look modified ``seconds`` ago (older than the racy window)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_unchanged_files_are_not_read_again_and_changes_are_noticed(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / f"{k}.png")
        _age(folder / f"{k}.png", 10 * RACY_SECONDS)
    source = scan_split_folder("train", folder)
    with Cache(tmp_path / "cache") as cache:
        first = hash_sources([source], 1, cache)
        stamps = {str(r.file): file_stamp(os.stat(r.file)) for r in source.records}
        assert cache.get_file_hashes(stamps) == {
            str(file): digest for file, digest in first.sha256_of.items()
        }
        second = hash_sources([source], 1, cache)
        assert second.sha256_of == first.sha256_of
        # rewrite one file with other content: size or times change, the new hash is computed
        changed = folder / "1.png"
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(changed)
        third = hash_sources([source], 1, cache)
        record = next(r for r in source.records if r.path == "1.png")
        assert third.sha256_of[record.file] != first.sha256_of[record.file]
        # a file modified just now has no stamp: its hash is neither recorded nor trusted
        assert file_stamp(os.stat(changed)) is None
        assert str(changed) not in cache.get_file_hashes({str(changed): "any"})


def test_audit_result_follows_a_changed_file(tmp_path: Path) -> None:
    splits = {"train": tmp_path / "train", "valid": tmp_path / "valid"}
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (32, 32), dtype=np.uint8)
    for folder in splits.values():
        folder.mkdir()
    Image.fromarray(image).save(splits["train"] / "a.png")
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(splits["valid"] / "b.png")
    for path in (splits["train"] / "a.png", splits["valid"] / "b.png"):
        _age(path, 10 * RACY_SECONDS)
    options = dict(size=32, variants=("plain",), cache_dir=tmp_path / "cache", jobs=1)
    assert leakcheck.audit(splits, **options).exit_code == 0
    assert leakcheck.audit(splits, **options).summary["comparison_from_cache"] is True
    # the valid image becomes a copy of the train image: the next audit must see it at once
    Image.fromarray(image).save(splits["valid"] / "b.png")
    result = leakcheck.audit(splits, **options)
    assert result.exit_code == 1
    assert result.summary["comparison_from_cache"] is False
