"""``leakcheck place NEW_DIR --train … --valid … --test …``, then ``apply --yes``, then an audit.

Real split folders (classes ``a`` and ``b``) of distinct textured crops of the ``skimage.data``
photos, and a folder of new images with planted cases:

* ``a/twin_of_train.png`` — a near-identical copy of a train image → train;
* ``b/twin_of_test.png`` — a near-identical copy of a test image → test;
* ``a/between.png`` — the middle of three stepping stones (a crop, then one and two stripes of it
  replaced by another crop) whose first is in train and last in valid (those two are *not*
  near-twins of each other) → a conflict, exit code 1;
* ``b/group_1.png``, ``b/group_2.png`` — the last two stepping stones of a chain whose first is in
  valid: only ``group_1`` is a near-twin of the valid image, but the two go to valid together;
* ``a/pair_1.png``, ``a/pair_2.png`` — near-twins of each other and of nothing else → one split;
* eight free images, four per class → spread to keep the split proportions.

After ``apply --yes`` a fresh audit of the splits must be clean: the placement introduced no leak.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import _run_cli, distinct_indices, photo_crop, read_csv_rows, save_png

from leakcheck.cli import main as leakcheck_main
from leakcheck.settings import Settings
from leakcheck.workflows.place import place_images

THRESHOLD = 0.9
SPLIT_SIZES = {"train": 8, "valid": 4, "test": 4}
FREE = 8


#: Where the two stripes of the stepping stones are (columns of a 48-pixel crop).
STRIPES = ((6, 12), (30, 36))


def _stone(base: np.ndarray, patch: np.ndarray, weights: tuple[float, float]) -> np.ndarray:
    """``base`` with its two stripes blended towards ``patch`` by the given weights."""
    out = base.astype(float)
    for (left, right), weight in zip(STRIPES, weights, strict=True):
        out[:, left:right] = (1 - weight) * out[:, left:right] + weight * patch[:, left:right]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _engine_scores(groups: dict[str, list[np.ndarray]], folder: Path) -> dict[tuple, float]:
    """Best SSIM over the default variants, as the audit computes it, of every cross-group pair."""
    from leakcheck import audit

    for name, images in groups.items():
        for k, rgb in enumerate(images):
            save_png(rgb, folder / name / f"{k:03d}.png")
    pairs = audit({name: folder / name for name in groups}, threshold=-1.0, cache=False).pairs
    return {
        (row.split_a, int(row.path_a[:3]), row.split_b, int(row.path_b[:3])): row.ssim
        for row in pairs.itertuples(index=False)
    }


def _stepping_stones(start: int, patch: int, scratch: Path) -> list[np.ndarray]:
    """Frames F0, F1, F2: F1 blends one stripe of F0 towards another crop, F2 a second one too.

    Neighbours are near-twins, F0 and F2 are not. The blend weights are chosen on the scores of
    the real engine with the default settings (robust variants included; a global tone or
    exposure change cannot undo a local one), with margins around the threshold.
    """
    base, other = photo_crop(start), photo_crop(patch)
    weights = np.round(np.arange(0.02, 1.001, 0.02), 2)
    first = _engine_scores(
        {"f0": [base], "f1": [_stone(base, other, (w, 0.0)) for w in weights]},
        scratch / f"{start}-first",
    )
    near = {w: first[("f0", 0, "f1", k)] for k, w in enumerate(weights)}
    usable = [w for w in weights if near[w] >= THRESHOLD + 0.01] or [weights[0]]
    first_weight = min(usable, key=lambda w: abs(near[w] - (THRESHOLD + 0.025)))
    stones = [base, _stone(base, other, (first_weight, 0.0))]
    candidates = [_stone(base, other, (first_weight, w)) for w in weights]
    second = _engine_scores(
        {"f0": [stones[0]], "f1": [stones[1]], "f2": candidates}, scratch / f"{start}-second"
    )
    best, margin = None, 0.0
    for k in range(len(weights)):
        near_margin = second[("f1", 0, "f2", k)] - (THRESHOLD + 0.01)
        far_margin = (THRESHOLD - 0.02) - second[("f0", 0, "f2", k)]
        if min(near_margin, far_margin) >= margin:
            best, margin = k, min(near_margin, far_margin)
    assert best is not None, f"no stepping stones between crops {start} and {patch}"
    assert second[("f0", 0, "f1", 0)] >= THRESHOLD + 0.01
    return [*stones, candidates[best]]


def _near_copy(rgb: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 1.5, rgb.shape)
    return np.clip(np.rint(rgb.astype(float) + 4 + noise), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("place")
    scratch = root / "scratch"
    scratch.mkdir()
    crops = iter(distinct_indices(40))
    for split, size in SPLIT_SIZES.items():
        for k in range(size):
            save_png(photo_crop(next(crops)), root / split / "ab"[k % 2] / f"{split}_{k}.png")
    train_image = np.asarray(_load(root / "train/a/train_0.png"))
    test_image = np.asarray(_load(root / "test/b/test_1.png"))
    conflict = _stepping_stones(next(crops), next(crops), scratch)
    save_png(conflict[0], root / "train/a/stone_first.png")
    save_png(conflict[2], root / "valid/a/stone_last.png")
    group = _stepping_stones(next(crops), next(crops), scratch)
    save_png(group[0], root / "valid/b/group_anchor.png")
    new = root / "new"
    save_png(_near_copy(train_image, 1), new / "a/twin_of_train.png")
    save_png(_near_copy(test_image, 2), new / "b/twin_of_test.png")
    save_png(conflict[1], new / "a/between.png")
    save_png(group[1], new / "b/group_1.png")
    save_png(group[2], new / "b/group_2.png")
    pair = photo_crop(next(crops))
    save_png(pair, new / "a/pair_1.png")
    save_png(_near_copy(pair, 3), new / "a/pair_2.png")
    for k in range(FREE):
        save_png(photo_crop(next(crops)), new / "ab"[k % 2] / f"free_{k}.png")
    return root


def _load(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _split_args(root: Path) -> list[object]:
    return ["--train", root / "train", "--valid", root / "valid", "--test", root / "test"]


@pytest.fixture(scope="module")
def placed(dataset: Path) -> tuple[object, dict[str, dict[str, str]], dict]:
    out = dataset / "placement"
    done = _run_cli("place", dataset / "new", *_split_args(dataset), "--out", out)
    header, rows = read_csv_rows(out / "placement.csv")
    assert header[:6] == ["path", "split", "reason", "twin_split", "twin_path", "ssim"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return done, {row["path"]: row for row in rows}, summary


def test_twins_go_to_their_twins_split(placed) -> None:
    done, rows, _ = placed
    assert rows["a/twin_of_train.png"]["split"] == "train"
    assert rows["a/twin_of_train.png"]["twin_path"] == "a/train_0.png"
    assert float(rows["a/twin_of_train.png"]["ssim"]) >= THRESHOLD
    assert rows["b/twin_of_test.png"]["split"] == "test"
    assert rows["b/twin_of_test.png"]["twin_split"] == "test"
    assert rows["b/twin_of_test.png"]["reason"].startswith("twin")


def test_new_twin_groups_stay_together(placed) -> None:
    _, rows, _ = placed
    assert rows["b/group_1.png"]["split"] == rows["b/group_2.png"]["split"] == "valid"
    assert rows["b/group_1.png"]["twin_path"] == "b/group_anchor.png"
    assert rows["b/group_2.png"]["reason"].startswith("group")
    assert rows["b/group_1.png"]["group"] == rows["b/group_2.png"]["group"] != ""
    assert rows["a/pair_1.png"]["split"] == rows["a/pair_2.png"]["split"] != ""
    assert rows["a/pair_1.png"]["twin_split"] == ""


def test_cross_split_conflict_is_reported_with_exit_1(placed) -> None:
    done, rows, summary = placed
    assert done.returncode == 1, done.stderr
    conflict = rows["a/between.png"]
    assert conflict["split"] == "" and conflict["reason"].startswith("conflict")
    assert "train/a/stone_first.png" in conflict["reason"]
    assert "valid/a/stone_last.png" in conflict["reason"]
    assert [path for path, row in rows.items() if row["split"] == ""] == ["a/between.png"]
    assert summary["conflicts"] == 1 and summary["exit_code"] == 1
    assert "CONFLICT" in done.stdout


def test_free_images_keep_the_split_proportions(placed) -> None:
    _, rows, summary = placed
    free = [row for path, row in rows.items() if row["reason"].startswith("free")]
    assert len(free) == FREE + 2
    total_before = sum(info["images"] for info in summary["splits"].values())
    total_after = sum(info["images_after"] for info in summary["splits"].values())
    assert total_after == total_before + len(rows) - 1
    for name, info in summary["splits"].items():
        assert abs(info["share_after"] - info["share_before"]) <= 2 / total_after, name
    for label in "ab":
        per_split = {name: 0 for name in SPLIT_SIZES}
        for path, row in rows.items():
            if path.startswith(f"{label}/") and row["split"]:
                per_split[row["split"]] += 1
        assert all(count >= 1 for count in per_split.values()), (label, per_split)


def test_summary_is_what_apply_reads(placed, dataset: Path) -> None:
    _, _, summary = placed
    assert summary["new_dir"] == str((dataset / "new").resolve())
    for name in SPLIT_SIZES:
        assert summary["splits"][name]["root"] == str((dataset / name).resolve())


def test_placement_is_deterministic(placed, dataset: Path) -> None:
    _, rows, _ = placed
    again = place_images(
        dataset / "new",
        {name: dataset / name for name in SPLIT_SIZES},
        settings=Settings(threshold=THRESHOLD),
    )
    assert dict(zip(again.placement["path"], again.placement["split"], strict=True)) == {
        path: row["split"] for path, row in rows.items()
    }


def test_apply_then_a_fresh_audit_finds_no_leak(placed, dataset: Path) -> None:
    _, rows, _ = placed
    applied = _run_cli("apply", dataset / "placement", "--yes")
    assert applied.returncode == 0, applied.stderr
    for path, row in rows.items():
        copied = dataset / row["split"] / path if row["split"] else None
        if copied is not None:
            assert copied.read_bytes() == (dataset / "new" / path).read_bytes()
    assert not (dataset / "train/a/between.png").exists()
    assert not (dataset / "valid/a/between.png").exists()
    assert (dataset / "new/a/between.png").exists()  # copies, never moves
    audit = [*map(str, _split_args(dataset)), "--out", str(dataset / "audit"), "--quiet"]
    assert leakcheck_main(audit) == 0
    _, pairs = read_csv_rows(dataset / "audit" / "pairs.csv")
    assert pairs == []


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("missing", "is not a folder"),
        ("empty", "has no image files"),
        ("train/inside", "nested"),
    ],
)
def test_usage_errors_exit_2(
    new: str, message: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    folder = {"missing": tmp_path / "missing", "empty": tmp_path / "empty"}.get(new)
    if folder is None:
        folder = dataset / new
        save_png(photo_crop(1), folder / "x.png")
    argv = ["place", str(folder), *map(str, _split_args(dataset)), "--out", str(tmp_path / "o")]
    try:
        assert leakcheck_main(argv) == 2
    finally:
        if new == "train/inside":
            (folder / "x.png").unlink()
            folder.rmdir()
    assert message in capsys.readouterr().err
