"""Approximate search (shortlist + exact verification + recall estimate) and backends beyond
threads: loky processes and a real Dask cluster on loopback give identical pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import leakcheck
from leakcheck.engine import kernels
from leakcheck.engine.approximate import (
    ApproximateSettings,
    approximate_search,
    normalised,
    thumbnails,
)
from leakcheck.engine.compare import term_order
from leakcheck.engine.search import prepare_image_set, search_pairs


def _crops(count: int, side: int, seed: int) -> np.ndarray:
    """Real photographic texture: random crops of skimage's camera and astronaut photos."""
    from skimage import color, data, transform

    photos = [
        data.camera() / 255.0,
        color.rgb2gray(data.astronaut()),
        color.rgb2gray(data.coffee()),
    ]
    rng = np.random.default_rng(seed)
    out = np.empty((count, 1, side, side), dtype=np.uint8)
    for k in range(count):
        photo = photos[k % len(photos)]
        extent = int(rng.integers(side, 200))
        top = int(rng.integers(0, photo.shape[0] - extent))
        left = int(rng.integers(0, photo.shape[1] - extent))
        crop = transform.resize(photo[top : top + extent, left : left + extent], (side, side))
        out[k, 0] = np.round(crop * 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def image_sets() -> tuple:
    rng = np.random.default_rng(3)
    b = _crops(400, 32, seed=1)
    a = _crops(120, 32, seed=2)
    # plant near-twins: noisy and brightened copies of B images in A
    for k in range(40):
        source = b[k * 7].astype(int)
        twin = source + rng.integers(-6, 7, source.shape) if k % 2 else source * 1.1 + 5
        a[k] = np.clip(np.round(twin), 0, 255).astype(np.uint8)
    window = kernels.window_spec("uniform")
    order = term_order(np.concatenate([a, b]), window)
    set_a = prepare_image_set(a, np.arange(len(a)) + 10_000, window, order)
    set_b = prepare_image_set(b, np.arange(len(b)), window, order)
    return set_a, set_b, order, window


def test_thumbnails_are_block_means_and_normalised_rows_unit_vectors() -> None:
    pixels = _crops(5, 37, seed=0)
    features = thumbnails(pixels)
    assert features.shape == (5, 256)
    assert np.allclose(features.mean(axis=1), pixels.mean(axis=(1, 2, 3)) / 255, atol=0.02)
    unit = normalised(features)
    assert np.allclose(unit.mean(axis=1), 0, atol=1e-6)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("threshold", [0.8, 0.9])
def test_approximate_finds_a_subset_of_the_exact_pairs_with_exact_values(
    image_sets: tuple, threshold: float
) -> None:
    set_a, set_b, order, window = image_sets
    exact, _ = search_pairs(set_a, set_b, order=order, window=window, threshold=threshold)
    approx, counts, estimate = approximate_search(
        set_a, set_b, order=order, window=window, threshold=threshold,
        settings=ApproximateSettings(recall_sample_rows=60),
    )  # fmt: skip
    truth = {
        (int(i), int(j)): v
        for i, j, v in zip(exact.index_a, exact.index_b, exact.ssim, strict=True)
    }
    found = {
        (int(i), int(j)): v
        for i, j, v in zip(approx.index_a, approx.index_b, approx.ssim, strict=True)
    }
    assert len(truth) >= 20
    assert set(found) <= set(truth)  # never a false positive
    assert all(found[key] == truth[key] for key in found)  # verified values are exact
    assert len(found) / len(truth) >= 0.95
    assert counts.pairs_computed < counts.pairs_total / 3  # the shortlist is short
    assert estimate.sample_rows == 60
    assert estimate.true_pairs > 0 and estimate.recall is not None
    assert estimate.recall == estimate.found_pairs / estimate.true_pairs


def test_a_too_short_shortlist_reports_low_recall(image_sets: tuple) -> None:
    set_a, set_b, order, window = image_sets
    _, _, estimate = approximate_search(
        set_a, set_b, order=order, window=window, threshold=0.8,
        settings=ApproximateSettings(
            candidate_floor=1.1, radius_factor=0.0, top_k=0, recall_sample_rows=120
        ),
    )  # fmt: skip
    assert estimate.true_pairs > 0
    assert estimate.recall == 0.0


def _folders(tmp_path: Path, image_sets: tuple) -> dict[str, Path]:
    set_a, set_b, *_ = image_sets
    splits = {"train": tmp_path / "train", "test": tmp_path / "test"}
    for name, image_set in (("train", set_b), ("test", set_a)):
        splits[name].mkdir()
        for k, pixels in enumerate(image_set.pixels[:, 0]):
            Image.fromarray(pixels).save(splits[name] / f"{k:03d}.png")
    return splits


def test_cli_approximate_mode_reports_recall_and_min_recall_fails(
    tmp_path: Path, image_sets: tuple
) -> None:
    splits = _folders(tmp_path, image_sets)
    base = [
        sys.executable, "-m", "leakcheck", "--train", str(splits["train"]),
        "--test", str(splits["test"]), "--size", "native", "--quiet", "--format", "csv,json",
        "--search", "approximate", "--threshold", "0.8",
    ]  # fmt: skip
    run = subprocess.run([*base, "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert 0.9 <= summary["recall_estimate"] <= 1.0
    assert summary["recall_sample"]["true_pairs"] > 0
    # an impossible requirement turns the estimate into a failure
    strict = subprocess.run(
        [*base, "--out", str(tmp_path / "b"), "--min-recall", "1.01"],
        capture_output=True,
        text=True,
    )
    assert strict.returncode == 2, strict.stderr


def _pairs(result: leakcheck.AuditResult) -> list[tuple]:
    return list(
        result.pairs[["split_a", "path_a", "split_b", "path_b", "ssim"]].itertuples(index=False)
    )


def test_loky_backend_gives_identical_pairs(tmp_path: Path, image_sets: tuple) -> None:
    splits = _folders(tmp_path, image_sets)
    options = dict(size=None, threshold=0.8, cache=False)
    threads = leakcheck.audit(splits, backend="threading", jobs=2, **options)
    processes = leakcheck.audit(splits, backend="loky", jobs=2, **options)
    single = leakcheck.audit(splits, backend="threading", jobs=1, **options)
    assert len(threads.pairs) >= 20
    assert _pairs(threads) == _pairs(processes) == _pairs(single)


def test_dask_cluster_on_loopback_gives_identical_pairs(tmp_path: Path, image_sets: tuple) -> None:
    distributed = pytest.importorskip("distributed", reason="dask extra not installed")
    from leakcheck.engine.backends import joblib_backend

    splits = _folders(tmp_path, image_sets)
    options = dict(size=None, threshold=0.8, cache=False)
    local = leakcheck.audit(splits, jobs=2, **options)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )  # fmt: skip
    try:
        with joblib_backend("dask", cluster.scheduler_address):
            remote = leakcheck.audit(splits, backend="dask", jobs=-1, **options)
        # the workers really ran tiles: their logs mention the task function
        with distributed.Client(cluster.scheduler_address) as client:
            ran = client.run(
                lambda dask_worker: len(dask_worker.data) + dask_worker.state.executed_count
            )  # noqa: E501
    finally:
        cluster.close()
    assert _pairs(remote) == _pairs(local)
    assert sum(ran.values()) > 0
