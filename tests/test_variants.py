"""Robust variants end to end: mirrored, shifted, cropped, turned and re-toned twins.

A real photo crop goes into ``train`` and a transformed copy of it into ``valid`` (each twin made
from its own crop, as a person would make it with an image editor); the real command finds each
pair with the variant's ``method``, and the reported ``ssim`` is skimage's SSIM of the two
canonical arrays after that variant's transforms. A crop of the same photograph that does not
overlap stays unflagged, and ``--variants plain`` finds no mirrored twin.
"""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import RunCli
from PIL import Image
from skimage import data
from skimage.metrics import structural_similarity

from leakcheck.engine import variants
from leakcheck.images import canonical_to_float, load_canonical
from leakcheck.settings import DEFAULT_SIZE, Settings

SIDE = 96
SHIFT_PIXELS = round(variants.SHIFT * SIDE)


def _photo(name: str) -> np.ndarray:
    return np.ascontiguousarray(getattr(data, name)())


def _window(photo: np.ndarray, top: int, left: int, side: int = SIDE) -> np.ndarray:
    return np.ascontiguousarray(photo[top : top + side, left : left + side])


def _turned(photo: np.ndarray, top: int, left: int, degrees: float) -> np.ndarray:
    """The same window of the scene, taken again turned by ``degrees`` about its centre."""
    pad = SIDE // 4
    region = photo[top - pad : top + SIDE + pad, left - pad : left + SIDE + pad]
    turned = Image.fromarray(region).rotate(degrees, Image.Resampling.BICUBIC)
    return _window(np.asarray(turned), pad, pad)


def _save(pixels: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)
    return path


# Each twin: (original, twin, the method that must report it).
def _twins() -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    chelsea, coffee, astronaut = _photo("chelsea"), _photo("coffee"), _photo("astronaut")
    motorcycle = data.stereo_motorcycle()[0]
    original_flip = _window(chelsea, 120, 160)
    original_shift = _window(coffee, 150, 250)
    original_crop = _window(astronaut, 60, 300)
    original_turn = _window(motorcycle, 200, 300)
    original_dark = _window(coffee, 0, 0)  # a dark corner: plain SSIM drops to about 0.6
    crop_margin = round(SIDE * (1 - variants.CROP) / 2)
    return {
        "hflip": (original_flip, original_flip[:, ::-1], "ssim_hflip"),
        "shift": (
            original_shift,
            _window(coffee, 150 + SHIFT_PIXELS, 250 + SHIFT_PIXELS),
            "ssim_shift",
        ),
        "crop": (
            original_crop,
            original_crop[crop_margin : SIDE - crop_margin, crop_margin : SIDE - crop_margin],
            "ssim_crop",
        ),
        "rotate": (original_turn, _turned(motorcycle, 200, 300, variants.ROTATION), "ssim_rotate"),
        "darken": (
            original_dark,
            np.clip(original_dark.astype(int) - 25, 0, 255).astype(np.uint8),
            "ssim_tone",
        ),
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/<name>.png`` originals, ``valid/<name>_twin.png`` twins, and a hard negative:
    ``valid/negative.png``, a crop of the mirrored twin's photograph that does not overlap it."""
    root = tmp_path_factory.mktemp("variants")
    for name, (original, twin, _) in _twins().items():
        _save(original, root / "train" / f"{name}.png")
        _save(twin, root / "valid" / f"{name}_twin.png")
    _save(_window(_photo("chelsea"), 120, 40), root / "valid" / "negative.png")
    return root


def _audit(run_cli: RunCli, root: Path, out: Path, *options: str) -> list[dict[str, str]]:
    completed: subprocess.CompletedProcess = run_cli(
        "--train", root / "train", "--valid", root / "valid", "--out", out,
        "--format", "csv", "--labels", "none", "--quiet", *options,
    )  # fmt: skip
    assert completed.returncode in (0, 1), completed.stderr
    with open(out / "pairs.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def default_pairs(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    from conftest import _run_cli

    return _audit(_run_cli, dataset, tmp_path_factory.mktemp("report"))


def _row(rows: list[dict[str, str]], path_a: str, path_b: str) -> dict[str, str] | None:
    return next((r for r in rows if r["path_a"] == path_a and r["path_b"] == path_b), None)


@pytest.mark.parametrize("name", ["hflip", "shift", "crop", "rotate", "darken"])
def test_each_twin_is_found_by_its_variant(
    default_pairs: list[dict[str, str]], dataset: Path, name: str
) -> None:
    row = _row(default_pairs, f"{name}.png", f"{name}_twin.png")
    assert row is not None, f"{name} twin not found: {default_pairs}"
    expected_method = _twins()[name][2]
    assert row["method"] == expected_method, row
    assert float(row["ssim"]) >= Settings().threshold
    # the reported value is skimage's SSIM of the canonical arrays as the variant transforms them
    variant = variants.variant_for(row["method"], row["alignment"])
    assert variant is not None and variant.alignment == row["alignment"]
    canonical_a = load_canonical(dataset / "train" / row["path_a"], size=DEFAULT_SIZE)
    canonical_b = load_canonical(dataset / "valid" / row["path_b"], size=DEFAULT_SIZE)
    a = canonical_to_float(variant.transform_a(canonical_a[np.newaxis])[0])
    b = canonical_to_float(variant.transform_b(canonical_b[np.newaxis])[0])
    assert float(row["ssim"]) == pytest.approx(
        structural_similarity(a, b, data_range=1.0), abs=1e-6
    )


def test_hard_negative_stays_unflagged(default_pairs: list[dict[str, str]]) -> None:
    flagged = {r["path_a"] for r in default_pairs} | {r["path_b"] for r in default_pairs}
    assert "negative.png" not in flagged
    # nothing but the planted pairs
    assert {(r["path_a"], r["path_b"]) for r in default_pairs} == {
        (f"{name}.png", f"{name}_twin.png") for name in _twins()
    }


def test_plain_finds_no_mirrored_twin(run_cli: RunCli, dataset: Path, tmp_path: Path) -> None:
    rows = _audit(run_cli, dataset, tmp_path / "out", "--variants", "plain")
    assert _row(rows, "hflip.png", "hflip_twin.png") is None
    assert all(r["method"] in ("ssim", "exact", "same_file") for r in rows)


def test_one_family_on_its_own(run_cli: RunCli, dataset: Path, tmp_path: Path) -> None:
    rows = _audit(run_cli, dataset, tmp_path / "out", "--variants", "hflip")
    row = _row(rows, "hflip.png", "hflip_twin.png")
    assert row is not None and row["method"] == "ssim_hflip"
    assert row["alignment"] == "B mirrored left-right"
    assert _row(rows, "shift.png", "shift_twin.png") is None


def test_unknown_variant_is_a_usage_error(run_cli: RunCli, dataset: Path, tmp_path: Path) -> None:
    completed = run_cli(
        "--train", dataset / "train", "--valid", dataset / "valid", "--out", tmp_path / "o",
        "--variants", "plain,sideways", "--quiet",
    )  # fmt: skip
    assert completed.returncode == 2
    assert "sideways" in completed.stderr


def test_colour_and_grayscale_copies_are_plain_twins(run_cli: RunCli, tmp_path: Path) -> None:
    colour = _window(_photo("coffee"), 40, 40)
    _save(colour, tmp_path / "train" / "colour.png")
    _save(np.asarray(Image.fromarray(colour).convert("L")), tmp_path / "valid" / "gray.png")
    _save(_window(_photo("coffee"), 250, 400), tmp_path / "valid" / "other.png")
    rows = _audit(run_cli, tmp_path, tmp_path / "out", "--variants", "plain")
    assert [(r["path_a"], r["path_b"], r["method"]) for r in rows] == [
        ("colour.png", "gray.png", "ssim")
    ]
    assert float(rows[0]["ssim"]) > 0.95


# --- the transforms themselves ------------------------------------------------------------------


def _stack(count: int = 5, side: int = 32, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(count, channels, side, side), dtype=np.uint8)


@pytest.mark.parametrize("family", sorted(variants.VARIANT_FAMILIES))
def test_transforms_are_deterministic_and_batch_independent(family: str) -> None:
    stack = _stack(channels=3)
    for variant in variants.VARIANT_FAMILIES[family]:
        side_a, side_b = variant.transform_a(stack), variant.transform_b(stack)
        assert side_a.dtype == side_b.dtype == np.uint8
        assert side_a.shape == side_b.shape and side_a.shape[:2] == stack.shape[:2]
        # one image alone gives the same bytes as inside a batch, and again on a second call
        assert np.array_equal(variant.transform_a(stack[2:3]), side_a[2:3])
        assert np.array_equal(variant.transform_b(stack), side_b)


def test_robust_grid_is_three_quarters_of_the_canonical_side() -> None:
    assert variants.COARSE(_stack(side=32)).shape[-2:] == (24, 24)
    assert variants.COARSE(_stack(side=64)).shape[-2:] == (48, 48)
    assert variants.COARSE(_stack(side=16)).shape[-2:] == (16, 16)


def test_mirror_and_flat_images() -> None:
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))[None, None]
    assert np.array_equal(variants.HFLIP.transform_b(ramp), ramp[..., ::-1])
    flat = np.full((2, 1, 32, 32), 40, dtype=np.uint8)
    flat[1] = 220
    # a blank frame is not re-toned to mid-grey: two blank frames of different greys differ
    toned = variants.TONE.transform_a(flat)
    assert toned[0].max() == 40 and toned[1].min() == 220
    for variant in variants.ROTATIONS + variants.SHIFTS + variants.CROPS:
        assert np.all(variant.transform_b(flat)[1] == 220)


def test_tone_removes_a_constant_offset() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, size=(1, 1, 32, 32), dtype=np.uint8)
    darker = (image.astype(int) - 25).astype(np.uint8)
    assert np.array_equal(variants.ToneMatch()(image), variants.ToneMatch()(darker))


def test_rotation_matches_a_turned_copy() -> None:
    photo = _photo("camera")
    original = load_canonical_array(_window(photo, 150, 150))
    turned = load_canonical_array(_turned(photo, 150, 150, variants.ROTATION))
    scores = [
        structural_similarity(
            v.transform_a(original)[0, 0], v.transform_b(turned)[0, 0], data_range=255
        )
        for v in variants.ROTATIONS
    ]
    assert scores[0] > 0.9 > scores[1]  # counter-clockwise first, as its alignment text says
    assert "counter-clockwise" in variants.ROTATIONS[0].alignment
    assert math.isclose(variants.ROTATION, 3.0)


def load_canonical_array(pixels: np.ndarray) -> np.ndarray:
    from leakcheck.images import to_canonical

    return to_canonical(pixels / 255.0, DEFAULT_SIZE)[np.newaxis]


def test_method_names_and_all() -> None:
    assert variants.METHODS == (
        "ssim", "ssim_hflip", "ssim_tone", "ssim_exposure", "ssim_shift", "ssim_crop",
        "ssim_rotate",
    )  # fmt: skip
    assert set(variants.DEFAULT_FAMILIES) <= set(variants.VARIANT_FAMILIES)
    assert Settings().variants == variants.DEFAULT_FAMILIES
    everything = variants.resolve_variants(["all"])
    assert everything[0] is variants.PLAIN
    assert len(everything) == sum(len(f) for f in variants.VARIANT_FAMILIES.values())


def test_a_pair_plain_ssim_flags_stays_plain(run_cli: RunCli, tmp_path: Path) -> None:
    """The tone variant scores a brighter copy higher than plain SSIM does, but plain SSIM already
    flags it: the row says ``ssim`` with the plain value."""
    original = _window(_photo("chelsea"), 100, 100)
    brighter = np.clip(original.astype(int) + 12, 0, 255).astype(np.uint8)
    _save(original, tmp_path / "train" / "a.png")
    _save(brighter, tmp_path / "valid" / "b.png")
    (row,) = _audit(run_cli, tmp_path, tmp_path / "out")
    assert row["method"] == "ssim" and row["alignment"] == ""
    a = canonical_to_float(load_canonical(tmp_path / "train" / "a.png", size=DEFAULT_SIZE))
    b = canonical_to_float(load_canonical(tmp_path / "valid" / "b.png", size=DEFAULT_SIZE))
    assert float(row["ssim"]) == pytest.approx(
        structural_similarity(a, b, data_range=1.0), abs=1e-6
    )


def test_floor_keeps_the_variant_that_reaches_the_threshold(
    run_cli: RunCli, dataset: Path, tmp_path: Path
) -> None:
    """With ``--floor`` the search collects lower scores too; a twin that only a robust variant
    brings over the threshold is still reported by that variant."""
    rows = _audit(run_cli, dataset, tmp_path / "out", "--floor", "0.3")
    row = _row(rows, "darken.png", "darken_twin.png")
    assert row is not None and row["method"] == "ssim_tone"
    assert float(row["ssim"]) >= Settings().threshold


def test_tone_alone_finds_a_darkened_copy(run_cli: RunCli, dataset: Path, tmp_path: Path) -> None:
    """``--variants tone`` on its own finds the darkened copy by matching means."""
    rows = _audit(run_cli, dataset, tmp_path / "out", "--variants", "tone")
    row = _row(rows, "darken.png", "darken_twin.png")
    assert row is not None and row["method"] == "ssim_tone"
    variant = variants.variant_for(row["method"], row["alignment"])
    a = canonical_to_float(
        variant.transform_a(load_canonical(dataset / "train" / "darken.png", size=32)[None])[0]
    )
    b = canonical_to_float(
        variant.transform_b(load_canonical(dataset / "valid" / "darken_twin.png", size=32)[None])[0]
    )
    assert float(row["ssim"]) == pytest.approx(
        structural_similarity(a, b, data_range=1.0), abs=1e-6
    )
