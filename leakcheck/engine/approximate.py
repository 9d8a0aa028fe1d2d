"""Approximate threshold search for very large splits (``--search approximate``).

1. Shortlist: every image becomes a small thumbnail (block means of its canonical array).
   Blocked float32 matrix products give, for every thumbnail pair, both the Pearson correlation
   (which sees structure whatever the brightness) and the mean squared difference (which sees
   nearly flat images, whose correlation is noise). A pair is a candidate when its correlation
   reaches ``candidate_floor``, its mean squared difference is within ``radius_factor·(1 − T)``,
   or it is among the ``top_k`` of its row in a block by either measure.
2. Verification: candidates get their exact SSIM; only those >= the threshold are kept, so there
   are no false positives — only misses.
3. Recall estimate: a random sample of A rows is searched exactly (pruned, provably complete);
   the estimate is the share of those rows' true pairs that step 1–2 found.

Unlike the default exact mode this can miss pairs; ``summary.json`` says how many it is likely to
have missed, and ``--min-recall`` turns a low estimate into a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from leakcheck.engine.kernels import WindowSpec
from leakcheck.engine.search import ImageSet, PairHits, SearchCounts, pair_ssim, search_pairs

THUMBNAIL_SIDE = 16
ROW_BLOCK = 1024
COLUMN_BLOCK = 8192


@dataclass(frozen=True)
class ApproximateSettings:
    """Knobs of the shortlist; the defaults were chosen on Fashion-MNIST (benchmarks/)."""

    candidate_floor: float = 0.7
    radius_factor: float = 0.25
    top_k: int = 32
    recall_sample_rows: int = 200
    seed: int = 0


@dataclass(frozen=True)
class RecallEstimate:
    """Recall of the shortlist measured on ``sample_rows`` A rows searched exactly."""

    recall: float | None  # None when the sampled rows have no true pair at all
    sample_rows: int
    true_pairs: int
    found_pairs: int


def thumbnails(pixels: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """Block-mean thumbnails in [0, 1], float32, shape (n, C·side·side)."""
    n, channels, height, width = pixels.shape
    rows = np.linspace(0, height, side + 1).astype(int)
    cols = np.linspace(0, width, side + 1).astype(int)
    # block sums through cumulative sums: exact block means for any image size
    summed = np.zeros((n, channels, height + 1, width + 1), dtype=np.float64)
    summed[:, :, 1:, 1:] = pixels.astype(np.float64).cumsum(axis=2).cumsum(axis=3)
    blocks = (
        summed[:, :, rows[1:], :][:, :, :, cols[1:]]
        - summed[:, :, rows[:-1], :][:, :, :, cols[1:]]
        - summed[:, :, rows[1:], :][:, :, :, cols[:-1]]
        + summed[:, :, rows[:-1], :][:, :, :, cols[:-1]]
    )
    area = np.outer(np.diff(rows), np.diff(cols)).astype(np.float64)
    return (blocks / area / 255.0).reshape(n, -1).astype(np.float32)


def normalised(features: np.ndarray) -> np.ndarray:
    """Centred, unit-norm rows: their dot products are Pearson correlations."""
    centred = features - features.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.where(norms > 0, norms, 1.0)


def _top_k_mask(score: np.ndarray, k: int) -> np.ndarray:
    """True at the ``k`` largest finite scores of every row."""
    k = min(k, score.shape[1])
    mask = np.zeros(score.shape, dtype=bool)
    if k > 0:
        best = np.argpartition(-score, k - 1, axis=1)[:, :k]
        np.put_along_axis(mask, best, True, axis=1)
    return mask & np.isfinite(score)


def _shortlist(
    features_a: np.ndarray,
    features_b: np.ndarray,
    upper_only: bool,
    threshold: float,
    settings: ApproximateSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (indices into A and B) from blocked products of thumbnails."""
    unit_a, unit_b = normalised(features_a), normalised(features_b)
    squares_a = (features_a.astype(np.float64) ** 2).sum(axis=1)
    squares_b = (features_b.astype(np.float64) ** 2).sum(axis=1)
    radius = settings.radius_factor * max(1.0 - threshold, 0.0) * features_a.shape[1]
    found_a: list[np.ndarray] = []
    found_b: list[np.ndarray] = []
    for a0 in range(0, features_a.shape[0], ROW_BLOCK):
        a1 = min(a0 + ROW_BLOCK, features_a.shape[0])
        for b0 in range(0, features_b.shape[0], COLUMN_BLOCK):
            b1 = min(b0 + COLUMN_BLOCK, features_b.shape[0])
            if upper_only and b1 <= a0 + 1:
                continue
            correlation = unit_a[a0:a1] @ unit_b[b0:b1].T
            distance = (
                squares_a[a0:a1, None]
                + squares_b[None, b0:b1]
                - 2.0 * (features_a[a0:a1] @ features_b[b0:b1].T)
            )
            if upper_only:
                below = np.arange(b0, b1)[None, :] <= np.arange(a0, a1)[:, None]
                correlation[below] = -np.inf
                distance[below] = np.inf
            keep = (correlation >= settings.candidate_floor) | (distance <= radius)
            keep |= _top_k_mask(correlation, settings.top_k)
            keep |= _top_k_mask(-distance, settings.top_k)
            i, j = np.nonzero(keep)
            found_a.append(i + a0)
            found_b.append(j + b0)
    if not found_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_a).astype(np.int64), np.concatenate(found_b).astype(np.int64)


def approximate_search(
    a: ImageSet,
    b: ImageSet | None,
    *,
    order: np.ndarray,
    window: WindowSpec,
    threshold: float,
    jobs: int = -1,
    backend: str = "threading",
    settings: ApproximateSettings | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[PairHits, SearchCounts, RecallEstimate]:
    """Shortlist + exact verification + recall estimate (see the module docstring)."""
    settings = settings or ApproximateSettings()
    upper_only = b is None
    side_b = a if b is None else b
    index_a, index_b = _shortlist(
        thumbnails(a.pixels), thumbnails(side_b.pixels), upper_only, threshold, settings
    )
    same_content = a.content[index_a] == side_b.content[index_b]
    index_a, index_b = index_a[~same_content], index_b[~same_content]
    values = pair_ssim(a, side_b, index_a, index_b, order=order, window=window)
    keep = values >= threshold
    hits = PairHits(index_a[keep], index_b[keep], values[keep]).sorted()
    n_pairs = len(a) * (len(a) - 1) // 2 if upper_only else len(a) * len(side_b)
    if on_progress is not None:
        on_progress(n_pairs)
    counts = SearchCounts(n_pairs, n_pairs - int(index_a.size), int(index_a.size))
    estimate = _estimate_recall(a, b, hits, order, window, threshold, jobs, backend, settings)
    return hits, counts, estimate


def _estimate_recall(
    a: ImageSet,
    b: ImageSet | None,
    hits: PairHits,
    order: np.ndarray,
    window: WindowSpec,
    threshold: float,
    jobs: int,
    backend: str,
    settings: ApproximateSettings,
) -> RecallEstimate:
    rng = np.random.default_rng(settings.seed)
    take = min(settings.recall_sample_rows, len(a))
    rows = np.sort(rng.choice(len(a), size=take, replace=False))
    side_b = a if b is None else b
    truth, _ = search_pairs(
        a.rows(0, 0) if take == 0 else _take(a, rows), side_b, order=order, window=window,
        threshold=threshold, jobs=jobs, backend=backend,
    )  # fmt: skip
    true_pairs = {(int(rows[i]), int(j)) for i, j in zip(truth.index_a, truth.index_b, strict=True)}
    if b is None:
        # the exact rows were searched against every column; keep each unordered pair once
        true_pairs = {
            (min(i, j), max(i, j)) for i, j in true_pairs if i != j and a.content[i] != a.content[j]
        }
        found = {(min(i, j), max(i, j)) for i, j in zip(hits.index_a, hits.index_b, strict=True)}
        sampled = set(rows.tolist())
        found = {pair for pair in found if pair[0] in sampled or pair[1] in sampled}
    else:
        found = {(int(i), int(j)) for i, j in zip(hits.index_a, hits.index_b, strict=True)}
    matched = len(true_pairs & found)
    recall = matched / len(true_pairs) if true_pairs else None
    return RecallEstimate(recall, int(take), len(true_pairs), matched)


def _take(image_set: ImageSet, rows: np.ndarray) -> ImageSet:
    return ImageSet(
        image_set.pixels[rows], image_set.mean[rows], image_set.std[rows], image_set.content[rows]
    )


def combine_estimates(estimates: list[RecallEstimate]) -> RecallEstimate:
    """Pool the per-split-pair estimates: matched / true over all sampled rows."""
    true_pairs = sum(e.true_pairs for e in estimates)
    found = sum(e.found_pairs for e in estimates)
    return RecallEstimate(
        found / true_pairs if true_pairs else None,
        sum(e.sample_rows for e in estimates),
        true_pairs,
        found,
    )
