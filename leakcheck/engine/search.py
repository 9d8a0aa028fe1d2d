"""Threshold search over every pair of two image sets: tiles, pruning, joblib dispatch.

The work is cut into tiles of A-rows × B-columns. Each tile ships only compact per-image arrays
(uint8 canonical pixels, float64 μ/σ per term) and returns the few pairs at or above the
threshold, so memory is O(images + hits), never O(pairs). Tiles are run through joblib: the
default ``threading`` backend shares the arrays without copies (the numba kernels release the
GIL); ``loky`` memory-maps them; ``dask`` or ``ray`` ship them to a cluster. The tile a pair falls
in never changes its value, so results are identical whatever the backend, ``jobs`` or tile size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import joblib
import numpy as np

from leakcheck.engine import kernels
from leakcheck.engine.backends import parallel_backend_argument
from leakcheck.engine.kernels import WindowSpec

#: A-side rows per tile; B-side columns per tile. Tiles of this size take ~0.1-1 s each.
TILE_ROWS = 256
TILE_COLUMNS = 8192
#: Tiles per worker at least, where the sides allow it (load balance), and the smallest tile side
#: made to get there.
TILES_PER_WORKER = 4
MIN_TILE_SIDE = 32
#: Fewest images per thread when statistics are computed in parallel.
STATISTICS_CHUNK = 256
#: Hits a tile may return before it is re-run with room for all of its pairs.
INITIAL_HIT_CAPACITY = 1 << 16


@dataclass(frozen=True)
class ImageSet:
    """Compact per-image arrays of one side of a search.

    Attributes
    ----------
    pixels : ndarray of uint8, shape (n, C, H, W)
        Canonical images.
    mean, std : ndarray of float64, shape (n, M)
        Local statistics, columns in the search's term order.
    content : ndarray of int64, shape (n,)
        Content ids: equal ids mean identical canonical pixels (those pairs are exact twins and
        are not searched).
    """

    pixels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    content: np.ndarray

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes + self.mean.nbytes + self.std.nbytes + self.content.nbytes)

    def rows(self, start: int, stop: int) -> ImageSet:
        return ImageSet(
            self.pixels[start:stop],
            self.mean[start:stop],
            self.std[start:stop],
            self.content[start:stop],
        )


@dataclass(frozen=True)
class SearchCounts:
    """How many pairs a search visited, dropped by proof, and computed exactly."""

    pairs_total: int = 0
    pairs_pruned: int = 0
    pairs_computed: int = 0

    def __add__(self, other: SearchCounts) -> SearchCounts:
        return SearchCounts(
            self.pairs_total + other.pairs_total,
            self.pairs_pruned + other.pairs_pruned,
            self.pairs_computed + other.pairs_computed,
        )


@dataclass(frozen=True)
class PairHits:
    """Pairs at or above a threshold: indices into side A and side B, and their exact SSIM."""

    index_a: np.ndarray
    index_b: np.ndarray
    ssim: np.ndarray

    def __len__(self) -> int:
        return int(self.index_a.size)

    @staticmethod
    def concatenate(parts: list[PairHits]) -> PairHits:
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return PairHits(empty, empty.copy(), np.empty(0))
        return PairHits(
            np.concatenate([p.index_a for p in parts]),
            np.concatenate([p.index_b for p in parts]),
            np.concatenate([p.ssim for p in parts]),
        )

    def sorted(self) -> PairHits:
        """Sorted by SSIM descending, then indices: a canonical order independent of tiling."""
        order = np.lexsort((self.index_b, self.index_a, -self.ssim))
        return PairHits(self.index_a[order], self.index_b[order], self.ssim[order])


def choose_term_order(
    mean_a: np.ndarray, std_a: np.ndarray, mean_b: np.ndarray, std_b: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Order of terms for the pruning bound: largest expected deficit first.

    Only speed depends on the order; results do not. Statistics must be in spatial order.
    """
    if mean_a.shape[0] == 0 or mean_b.shape[0] == 0:
        return np.arange(mean_a.shape[1], dtype=np.int64)
    deficit = kernels.expected_deficit(mean_a, std_a, mean_b, std_b, seed)
    return np.argsort(-deficit, kind="stable").astype(np.int64)


def prepare_image_set(
    pixels: np.ndarray,
    content: np.ndarray,
    window: WindowSpec,
    order: np.ndarray,
    *,
    jobs: int = 1,
) -> ImageSet:
    """Compute the statistics of ``pixels`` in ``order`` (on ``jobs`` threads) and bundle them as
    an :class:`ImageSet`."""
    pixels = np.ascontiguousarray(pixels)
    slot, mean, std = kernels.empty_statistics(pixels, window, order)
    parts = max(1, min(joblib.effective_n_jobs(jobs), len(pixels) // STATISTICS_CHUNK))
    joblib.Parallel(n_jobs=parts, backend="threading")(
        joblib.delayed(kernels.fill_statistics)(
            pixels[start:stop], window, slot, mean[start:stop], std[start:stop]
        )
        for start, stop in _even_bounds(len(pixels), parts)
    )
    return ImageSet(pixels, mean, std, np.asarray(content, dtype=np.int64))


def _search_tile(
    a: ImageSet,
    offset_a: int,
    b: ImageSet,
    offset_b: int,
    order: np.ndarray,
    window: WindowSpec,
    threshold: float,
    prune: bool,
    upper_only: bool,
) -> tuple[PairHits, SearchCounts]:
    """Run one tile; indices in the result are global (offsets added)."""
    n_a, n_b = len(a), len(b)
    if upper_only:
        n_pairs = sum(max(0, n_b - max(0, offset_a + i + 1 - offset_b)) for i in range(n_a))
    else:
        n_pairs = n_a * n_b
    capacity = n_a * n_b if threshold <= 0 else min(n_a * n_b, INITIAL_HIT_CAPACITY)
    while True:
        out_a = np.empty(capacity, dtype=np.int64)
        out_b = np.empty(capacity, dtype=np.int64)
        out_ssim = np.empty(capacity)
        hits, pruned, computed, overflow = kernels.search_block(
            a.pixels, a.mean, a.std, a.content, offset_a,
            b.pixels, b.mean, b.std, b.content, offset_b,
            kernels.inverse_permutation(order), window.kind, window.weights, window.cov_norm,
            threshold, prune, upper_only,
            kernels.b_block_size(order.size, b.pixels[0].size if len(b) else 1),
            out_a, out_b, out_ssim,
        )  # fmt: skip
        if not overflow:
            break
        capacity = n_a * n_b
    result = PairHits(out_a[:hits] + offset_a, out_b[:hits] + offset_b, out_ssim[:hits].copy())
    return result, SearchCounts(n_pairs, pruned, computed)


def _even_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive ranges covering ``range(n)`` whose lengths differ by at most one."""
    edges = [n * k // parts for k in range(parts + 1)]
    return [(start, stop) for start, stop in zip(edges, edges[1:], strict=False) if stop > start]


def _tiles(
    n_a: int, n_b: int, upper_only: bool, rows: int, columns: int, min_tiles: int = 1
) -> Iterator[tuple[int, int, int, int]]:
    """Tiles of at most ``rows`` × ``columns``, of even sizes, and at least ``min_tiles`` of them
    where the sides allow (so that every worker gets a share: one tile of 8,192 columns and one
    of 1,808 would leave a core idle most of the time)."""
    row_parts = max(1, -(-n_a // rows))
    column_parts = max(1, -(-n_b // columns))
    if row_parts * column_parts < min_tiles:
        wanted = -(-min_tiles // row_parts)
        column_parts = max(column_parts, min(wanted, n_b // MIN_TILE_SIDE))
    if row_parts * column_parts < min_tiles:
        wanted = -(-min_tiles // column_parts)
        row_parts = max(row_parts, min(wanted, n_a // MIN_TILE_SIDE))
    for a0, a1 in _even_bounds(n_a, row_parts):
        for b0, b1 in _even_bounds(n_b, column_parts):
            if upper_only and b1 <= a0 + 1:
                continue  # tile entirely on or below the diagonal
            yield a0, a1, b0, b1


def search_pairs(
    a: ImageSet,
    b: ImageSet | None,
    *,
    order: np.ndarray,
    window: WindowSpec,
    threshold: float,
    prune: bool = True,
    jobs: int = -1,
    backend: str = "threading",
    tile_rows: int = TILE_ROWS,
    tile_columns: int = TILE_COLUMNS,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[PairHits, SearchCounts]:
    """Every pair (A image, B image) with SSIM >= ``threshold``, exactly.

    Parameters
    ----------
    a, b : ImageSet
        The two sides. ``b=None`` searches ``a`` against itself (each unordered pair once).
    order : ndarray of int64
        The term order both sets' statistics were computed in.
    window : WindowSpec
        The SSIM window.
    threshold : float
        Pairs with SSIM >= threshold are returned.
    prune : bool
        Use the exact Cauchy–Schwarz bound to skip pairs that cannot reach the threshold. The
        result is the same either way; ``False`` exists for benchmarks and tests.
    jobs, backend : int, str
        joblib's ``n_jobs`` and backend name (any registered backend: ``threading``, ``loky``,
        ``dask``, ``ray``…).
    tile_rows, tile_columns : int
        Tile shape. Results do not depend on it.
    on_progress : callable, optional
        Called with the number of pairs each finished tile covered.

    Returns
    -------
    hits : PairHits
        Sorted by SSIM descending, then indices.
    counts : SearchCounts
    """
    if tile_rows < 1 or tile_columns < 1:
        raise ValueError(f"tile sizes must be positive, got {tile_rows}x{tile_columns}")
    upper_only = b is None
    side_b = a if b is None else b
    if a.mean.shape[1] != side_b.mean.shape[1]:
        raise ValueError(
            f"the two sets have different term counts ({a.mean.shape[1]} vs "
            f"{side_b.mean.shape[1]}): canonical images must share one shape"
        )
    workers = joblib.effective_n_jobs(jobs) if backend != "sequential" else 1
    tiles = list(
        _tiles(len(a), len(side_b), upper_only, tile_rows, tile_columns, TILES_PER_WORKER * workers)
    )
    tasks = (
        joblib.delayed(_search_tile)(
            a.rows(a0, a1),
            a0,
            side_b.rows(b0, b1),
            b0,
            order,
            window,
            threshold,
            prune,
            upper_only,
        )  # fmt: skip
        for a0, a1, b0, b1 in tiles
    )
    parts: list[PairHits] = []
    counts = SearchCounts()
    if not tiles:
        return PairHits.concatenate(parts), counts
    n_jobs = 1 if len(tiles) == 1 else jobs
    with joblib.Parallel(
        n_jobs=n_jobs,
        backend=parallel_backend_argument(backend),
        return_as="generator_unordered",
    ) as run:
        for hits, tile_counts in run(tasks):
            parts.append(hits)
            counts = counts + tile_counts
            if on_progress is not None:
                on_progress(tile_counts.pairs_total)
    return PairHits.concatenate(parts).sorted(), counts


def pair_ssim(
    a: ImageSet,
    b: ImageSet,
    index_a: np.ndarray,
    index_b: np.ndarray,
    *,
    order: np.ndarray,
    window: WindowSpec,
) -> np.ndarray:
    """Exact SSIM of the listed pairs (no threshold, no pruning)."""
    return kernels.pair_values(
        a.pixels, a.mean, a.std, b.pixels, b.mean, b.std,
        np.asarray(index_a, dtype=np.int64), np.asarray(index_b, dtype=np.int64),
        kernels.inverse_permutation(order), window.kind, window.weights, window.cov_norm,
    )  # fmt: skip
