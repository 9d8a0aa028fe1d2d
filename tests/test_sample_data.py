"""The committed demo dataset in ``sample_data/``: its planted twins are exactly the near-twins.

The README's first command audits this folder, so these tests check what a user would: the files
in ``planted_twins.csv`` exist, the generator rebuilds the committed files, and by leakcheck's
SSIM definition the planted pairs are the only cross-split pairs at or above the default 0.9.
"""

from __future__ import annotations

import csv
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
SPLITS = ("train", "valid", "test")
PLANTED_COLUMNS = ["split_a", "path_a", "split_b", "path_b", "transform"]
DEFAULT_THRESHOLD = 0.9
CANONICAL_SIZE = 64

ImageKey = tuple[str, str]  # (split, path relative to the split folder)


def dataset_files(root: Path) -> list[Path]:
    """Every file of a generated dataset (split folders and planted list), relative to ``root``."""
    files = [Path("planted_twins.csv")]
    for split in SPLITS:
        files += sorted(p.relative_to(root) for p in (root / split).rglob("*") if p.is_file())
    return files


def split_images(root: Path) -> list[ImageKey]:
    """Every image under ``root`` as (split, path with forward slashes)."""
    return [
        (split, path.relative_to(root / split).as_posix())
        for split in SPLITS
        for path in sorted((root / split).rglob("*"))
        if path.is_file()
    ]


def planted_rows(root: Path = SAMPLE_DATA) -> list[dict[str, str]]:
    """The rows of ``planted_twins.csv``."""
    with (root / "planted_twins.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == PLANTED_COLUMNS
        return list(reader)


def planted_pairs() -> set[frozenset[ImageKey]]:
    """The planted pairs as unordered pairs of (split, path)."""
    return {
        frozenset({(row["split_a"], row["path_a"]), (row["split_b"], row["path_b"])})
        for row in planted_rows()
    }


def test_planted_list_names_existing_twins_across_splits() -> None:
    rows = planted_rows()
    assert 4 <= len(rows) <= 6
    for row in rows:
        assert SPLITS.index(row["split_a"]) < SPLITS.index(row["split_b"]), row
        for side in ("a", "b"):
            assert "\\" not in row[f"path_{side}"]
            assert (SAMPLE_DATA / row[f"split_{side}"] / row[f"path_{side}"]).is_file(), row
        # A twin keeps its class label (the first folder level).
        assert row["path_a"].split("/")[0] == row["path_b"].split("/")[0], row
        assert row["transform"]
    split_pairs = {(row["split_a"], row["split_b"]) for row in rows}
    assert split_pairs == {("train", "valid"), ("train", "test"), ("valid", "test")}
    members = [image for pair in planted_pairs() for image in pair]
    assert len(members) == len(set(members)) == 2 * len(rows), "an image is in two planted pairs"


def test_splits_are_small_imagefolders() -> None:
    images = split_images(SAMPLE_DATA)
    counts = {split: sum(1 for s, _ in images if s == split) for split in SPLITS}
    assert 30 <= counts["train"] <= 40 and 12 <= counts["valid"] <= 15
    assert 12 <= counts["test"] <= 15, counts
    assert all(path.count("/") == 1 for _, path in images), "expected <split>/<label>/<file>"
    suffixes = [path.rsplit(".", 1)[-1] for _, path in images]
    assert suffixes.count("jpg") > len(images) / 2 and "png" in suffixes
    total = sum((SAMPLE_DATA / f).stat().st_size for f in dataset_files(SAMPLE_DATA))
    assert total < 600 * 1024


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_generator_rebuilds_the_committed_files(tmp_path: Path) -> None:
    script = SAMPLE_DATA / "make_sample_data.py"
    run = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert dataset_files(tmp_path) == dataset_files(SAMPLE_DATA)
    for relative in dataset_files(SAMPLE_DATA):
        committed, rebuilt = SAMPLE_DATA / relative, tmp_path / relative
        if committed.read_bytes() == rebuilt.read_bytes():
            continue
        # Another Pillow (libjpeg, zlib, libwebp) may encode differently but decode the same
        # pixels, give or take JPEG rounding.
        assert relative.suffix != ".csv", f"{relative} differs"
        difference = np.abs(decoded(committed) - decoded(rebuilt))
        assert difference.mean() < 1.0, f"{relative} decodes to different pixels"


def test_planted_pairs_are_the_only_near_twins() -> None:
    images_module = pytest.importorskip("leakcheck.images")
    images = split_images(SAMPLE_DATA)
    arrays = {
        image: images_module.canonical_to_float(
            images_module.load_canonical(
                SAMPLE_DATA / image[0] / image[1], size=CANONICAL_SIZE, color="gray"
            )
        )
        for image in images
    }
    near_twins = {
        frozenset({a, b})
        for a, b in itertools.combinations(images, 2)
        if a[0] != b[0]
        and structural_similarity(arrays[a], arrays[b], data_range=1.0) >= DEFAULT_THRESHOLD
    }
    assert near_twins == planted_pairs()
