"""Pruned search == exhaustive search, on 10,000 train × 2,000 test Fashion-MNIST images.

The exhaustive side computes every pair's exact SSIM (no bound at all) once and filters it at each
threshold; the pruned side runs the normal threshold search. The two hit lists must be identical
(same pairs, same values); the script exits 1 otherwise. Also prints how much pruning saved.

    python benchmarks/pruning_exactness.py [--train 10000 --test 2000]
    python benchmarks/pruning_exactness.py --within --train 10000   # one split against itself
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.common import load_fashion_mnist
from leakcheck.engine import kernels
from leakcheck.engine.compare import term_order
from leakcheck.engine.search import prepare_image_set, search_pairs

THRESHOLDS = (0.80, 0.90, 0.95)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--window", default="uniform", choices=["uniform", "gaussian"])
    parser.add_argument("--within", action="store_true", help="train against itself")
    arguments = parser.parse_args()
    train, _ = load_fashion_mnist("train")
    test, _ = load_fashion_mnist("t10k")
    a = test[: arguments.test, None]
    b = train[: arguments.train, None]
    window = kernels.window_spec(arguments.window)
    order = term_order(np.concatenate([a, b]), window)
    set_a = prepare_image_set(a, np.arange(len(a)) + len(b), window, order)
    set_b = prepare_image_set(b, np.arange(len(b)), window, order)
    search_pairs(set_a.rows(0, 2), set_b.rows(0, 2), order=order, window=window, threshold=0.5)
    if arguments.within:
        # every unordered pair of the train images once (the search's own upper triangle)
        set_a, set_b = set_b, None

    start = time.perf_counter()
    exhaustive, counts = search_pairs(
        set_a, set_b, order=order, window=window, threshold=min(THRESHOLDS), prune=False
    )
    exhaustive_seconds = time.perf_counter() - start
    shape = (
        f"{len(b):,} train within" if arguments.within else f"{len(a):,} test x {len(b):,} train"
    )
    print(
        f"{shape} = {counts.pairs_total:,} pairs, window "
        f"{arguments.window}; exhaustive: every pair computed in {exhaustive_seconds:.1f} s"
    )
    print(f"{'T':>5} {'exhaustive':>10} {'pruned':>8} {'identical':>9} {'computed':>11} "
          f"{'pruned %':>9} {'pruned s':>9} {'speed-up':>8}")  # fmt: skip
    all_identical = True
    for threshold in THRESHOLDS:
        keep = exhaustive.ssim >= threshold
        expected = {
            (int(i), int(j)): float(v)
            for i, j, v in zip(
                exhaustive.index_a[keep],
                exhaustive.index_b[keep],
                exhaustive.ssim[keep],
                strict=True,
            )  # fmt: skip
        }
        start = time.perf_counter()
        pruned, pruned_counts = search_pairs(
            set_a, set_b, order=order, window=window, threshold=threshold
        )
        seconds = time.perf_counter() - start
        found = {
            (int(i), int(j)): float(v)
            for i, j, v in zip(pruned.index_a, pruned.index_b, pruned.ssim, strict=True)
        }
        identical = found == expected
        all_identical &= identical
        share = pruned_counts.pairs_pruned / pruned_counts.pairs_total
        print(
            f"{threshold:>5.2f} {len(expected):>10,} {len(found):>8,} {str(identical):>9} "
            f"{pruned_counts.pairs_computed:>11,} {share:>8.3%} {seconds:>9.1f} "
            f"{exhaustive_seconds / seconds:>7.1f}x",
            flush=True,
        )
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
