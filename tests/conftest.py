"""Shared fixtures: an isolated cache, the real ``leakcheck`` command, real photo crops.

Every test runs with ``LEAKCHECK_CACHE_DIR`` pointing into a per-session temporary folder, so no
test ever reads or writes a user's cache; subprocesses inherit it.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO_ROOT / "sample_data"

#: Photos shipped with ``skimage.data`` that crops are cut from (all at least 300x300).
PHOTO_NAMES = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "grass", "brick", "gravel",
    "camera",
)  # fmt: skip

GRID = 5

RunCli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session", autouse=True)
def isolated_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point leakcheck's cache at a per-session folder for the whole test run."""
    folder = tmp_path_factory.mktemp("leakcheck-cache")
    saved = os.environ.get("LEAKCHECK_CACHE_DIR")
    os.environ["LEAKCHECK_CACHE_DIR"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("LEAKCHECK_CACHE_DIR", None)
    else:
        os.environ["LEAKCHECK_CACHE_DIR"] = saved


def _run_cli(
    *args: object, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "leakcheck", *map(str, args)],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def run_cli() -> RunCli:
    """``run_cli(*args, cwd=None)``: run ``python -m leakcheck ARGS`` as a real subprocess."""
    return _run_cli


@cache
def _photo(name: str) -> np.ndarray:
    from skimage import data

    photo = getattr(data, name)()
    if photo.ndim == 2:
        photo = np.stack([photo] * 3, axis=-1)
    return np.ascontiguousarray(photo)


def photo_crop(index: int, side: int = 48) -> np.ndarray:
    """A distinct uint8 RGB crop of a ``skimage.data`` photo, resized to ``side`` x ``side``.

    The same index always gives the same crop. Each index has its own cell of a 5x5 grid over one
    of nine photos (225 cells), so crops of different indices never overlap; indices from 225 on
    repeat the cells upside down.
    """
    rng = np.random.default_rng(index)
    photo = _photo(PHOTO_NAMES[index % len(PHOTO_NAMES)])
    cell = index // len(PHOTO_NAMES) % (GRID * GRID)
    height, width = photo.shape[:2]
    cell_h, cell_w = height // GRID, width // GRID
    window = min(int(side * rng.uniform(1.0, 1.5)), cell_h, cell_w)
    top = cell // GRID * cell_h + int(rng.integers(0, cell_h - window + 1))
    left = cell % GRID * cell_w + int(rng.integers(0, cell_w - window + 1))
    patch = photo[top : top + window, left : left + window]
    if index // (len(PHOTO_NAMES) * GRID * GRID) % 2:
        patch = patch[::-1]
    resized = Image.fromarray(np.ascontiguousarray(patch)).resize((side, side), Image.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


@cache
def distinct_indices(count: int = 40) -> tuple[int, ...]:
    """Indices of textured crops that are pairwise far from twins (SSIM < 0.5 at 32x32 gray).

    Flat crops (sky, background) score high against each other, so a dataset that must have no
    near-twin but the planted ones is built from these.
    """
    from skimage.metrics import structural_similarity

    kept: dict[int, np.ndarray] = {}
    for index in range(len(PHOTO_NAMES) * GRID * GRID):
        gray = (photo_crop(index, 48) / 255.0) @ np.array([0.2125, 0.7154, 0.0721])
        small = Image.fromarray(gray.astype(np.float32)).resize((32, 32), Image.LANCZOS)
        candidate = np.asarray(small, dtype=np.float64)
        if candidate.std() < 0.1:
            continue
        if all(
            structural_similarity(candidate, other, data_range=1.0) < 0.5 for other in kept.values()
        ):
            kept[index] = candidate
        if len(kept) == count:
            return tuple(kept)
    raise ValueError(f"only {len(kept)} distinct crops, {count} asked for")


@pytest.fixture(scope="session")
def crop() -> Callable[..., np.ndarray]:
    """``crop(index, side=48)``: see :func:`photo_crop`."""
    return photo_crop


@pytest.fixture(scope="session")
def distinct_crops() -> Callable[[int, int], list[np.ndarray]]:
    """``distinct_crops(count, side=48)``: textured crops, pairwise far from near-twins."""

    def make(count: int, side: int = 48) -> list[np.ndarray]:
        return [photo_crop(index, side) for index in distinct_indices(max(count, 40))[:count]]

    return make


def save_png(rgb: np.ndarray, path: Path) -> Path:
    """Write ``rgb`` as a PNG at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG")
    return path


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV file, every value a string (empty stays empty)."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium binary; skipped without one, but a failure when CI=true."""
    from browser import find_chromium

    binary = find_chromium()
    if binary is None:
        message = "no chromium binary (install chromium or set $CHROMIUM)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true, so browser tests may not be skipped")
        pytest.skip(message)
    return binary
