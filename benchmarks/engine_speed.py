"""Engine pairs/s against a loop over skimage.metrics.structural_similarity, on the same pairs.

Every pair is computed (no pruning) so that the two sides do the same work. leakcheck runs on all
cores through joblib; the skimage loop runs in one process, as a user's script would.

    python benchmarks/engine_speed.py            # 28² (Fashion-MNIST, 60,000 train images on one
                                                 # side), 64² (10,000 photo crops), 128² crops
    python benchmarks/engine_speed.py --quick    # smaller B sides, for a smoke run
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from skimage.metrics import structural_similarity

from benchmarks.common import load_fashion_mnist, photo_crops
from leakcheck.engine import kernels
from leakcheck.engine.search import prepare_image_set, search_pairs


def engine_rate(
    side_a: np.ndarray, side_b: np.ndarray, window_name: str
) -> tuple[float, float, int]:
    """Pairs/s of the exact engine over side_a × side_b: with the per-image statistics counted
    in, and for the pair stage alone."""
    window = kernels.window_spec(window_name)
    a = side_a[:, None]
    b = side_b[:, None]
    order = np.arange(kernels.n_terms(a.shape[1:], window), dtype=np.int64)
    start = time.perf_counter()
    set_a = prepare_image_set(a, np.arange(len(a)) + len(b), window, order, jobs=-1)
    set_b = prepare_image_set(b, np.arange(len(b)), window, order, jobs=-1)
    statistics_done = time.perf_counter()
    hits, counts = search_pairs(
        set_a, set_b, order=order, window=window, threshold=-1.0, prune=False, jobs=-1
    )
    end = time.perf_counter()
    assert counts.pairs_computed == len(a) * len(b) == len(hits)
    pairs = counts.pairs_computed
    return pairs / (end - start), pairs / (end - statistics_done), pairs


def skimage_rate(side_a: np.ndarray, side_b: np.ndarray, window_name: str, pairs: int) -> float:
    """Pairs/s of a single-process skimage loop over the first ``pairs`` pairs."""
    options: dict = {"data_range": 1.0}
    if window_name == "gaussian":
        options.update(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    a = side_a.astype(np.float64) / 255
    b = side_b.astype(np.float64) / 255
    structural_similarity(a[0], b[0], **options)  # skimage loads its modules lazily: not timed
    done = 0
    start = time.perf_counter()
    for i in range(len(a)):
        for j in range(len(b)):
            structural_similarity(a[i], b[j], **options)
            done += 1
            if done >= pairs:
                return done / (time.perf_counter() - start)
    return done / (time.perf_counter() - start)


def check_agreement(side_a: np.ndarray, side_b: np.ndarray, window_name: str) -> float:
    """Largest |leakcheck − skimage| over a few pairs (the oracle check, in the same run)."""
    window = kernels.window_spec(window_name)
    a, b = side_a[:3, None], side_b[:50, None]
    order = np.arange(kernels.n_terms(a.shape[1:], window), dtype=np.int64)
    set_a = prepare_image_set(a, np.arange(3) + 1000, window, order)
    set_b = prepare_image_set(b, np.arange(50), window, order)
    hits, _ = search_pairs(set_a, set_b, order=order, window=window, threshold=-1.0, prune=False)
    options: dict = {"data_range": 1.0}
    if window_name == "gaussian":
        options.update(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    worst = 0.0
    for i, j, value in zip(hits.index_a, hits.index_b, hits.ssim, strict=True):
        reference = structural_similarity(side_a[i] / 255.0, side_b[j] / 255.0, **options)
        worst = max(worst, abs(value - reference))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller B sides")
    arguments = parser.parse_args()
    train, _ = load_fashion_mnist("train")
    test, _ = load_fashion_mnist("t10k")
    cases = [
        ("28x28 Fashion-MNIST", test[:64], train[: 6000 if arguments.quick else 60000], 3000),
        ("64x64 photo crops", photo_crops(24, 64, seed=1),
         photo_crops(2000 if arguments.quick else 10000, 64, seed=2), 1500),
        ("128x128 photo crops", photo_crops(8, 128, seed=3),
         photo_crops(500 if arguments.quick else 2000, 128, seed=4), 500),
    ]  # fmt: skip
    # compile the kernels before timing
    engine_rate(test[:2], train[:2], "uniform")
    engine_rate(test[:2], train[:2], "gaussian")
    print(f"cores: {os.cpu_count()}; leakcheck on all cores (joblib threads), skimage one process")
    print(
        f"{'case':<22} {'window':<9} {'B side':>7} {'pairs':>10} {'leakcheck/s':>12} "
        f"{'skimage/s':>10} {'ratio':>7} {'pair stage/s':>13} {'ratio':>7} {'max |diff|':>10}"
    )
    for name, side_a, side_b, skimage_pairs in cases:
        for window_name in ("uniform", "gaussian"):
            ours, pair_stage, pairs = engine_rate(side_a, side_b, window_name)
            theirs = skimage_rate(side_a, side_b, window_name, skimage_pairs)
            worst = check_agreement(side_a, side_b, window_name)
            print(
                f"{name:<22} {window_name:<9} {len(side_b):>7} {pairs:>10,} {ours:>12,.0f} "
                f"{theirs:>10,.0f} {ours / theirs:>6.1f}x {pair_stage:>13,.0f} "
                f"{pair_stage / theirs:>6.1f}x {worst:>10.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
