"""Compiled SSIM kernels: per-image statistics, the exact fused pair kernel, and the pruning bound.

This is the only module that uses numba. Everything works on *canonical* images: uint8 arrays of
shape ``(C, H, W)``; the SSIM of two canonical images ``x`` and ``y`` is
``skimage.metrics.structural_similarity(x/255, y/255, data_range=1)`` (averaged over channels), with
either skimage's default window (7×7 uniform, sample covariance) or the Gaussian window of Wang et
al. (11×11, σ = 1.5, population covariance).

How the work is split, following the per-image precompute trick:

* Per image, once: the local mean ``μ`` and standard deviation ``σ`` at every *valid* window
  position (skimage crops the borders, so only windows fully inside the image count). These
  ``M = C·(H−w+1)·(W−w+1)`` "terms" are stored in a fixed, data-driven order (most discriminative
  first) so that the pruning bound can stop early.
* Per pair: only the cross term ``Σxy`` over each window, then the SSIM formula. For the uniform
  window the window sums are exact integers (uint8 products over 49 pixels fit int32) and each
  variance comes from an exact integer numerator ``49·Σx² − (Σx)²``, so flat regions lose no
  digits to cancellation (the covariance's float64 rounding is ~1e-11 in units of 0‥255², against
  ``C2`` ≈ 58.5); the Gaussian window accumulates in float64.
* Every loop runs along a row of pixels or terms so that LLVM turns it into SIMD code (see
  ``_JIT``): this, not the number of operations, sets the speed at 64×64 and above.
* Pruning: by Cauchy–Schwarz ``σxy ≤ σx·σy``, so every window's term is bounded by
  ``b_p = l_p · (2σxσy + C2)/(σx² + σy² + C2)`` using per-image statistics alone, and
  ``b_p ∈ [0, 1]``. The pair's SSIM is at most ``1 − Σ_p(1 − b_p)/M``; the kernel accumulates
  that deficit in chunks and drops the pair as soon as it proves ``SSIM < T − 1e-9``. No pixel is
  read for a pruned pair, and a pair is only ever dropped on a proof, so the result equals the
  exhaustive one.

All arithmetic is done in units of the uint8 range (0‥255): SSIM is invariant to that scale as long
as ``C1 = (K1·255)²`` and ``C2 = (K2·255)²``.

References
----------
.. [1] Wang, Z., Bovik, A. C., Sheikh, H. R., & Simoncelli, E. P. (2004). Image quality
   assessment: From error visibility to structural similarity. IEEE Transactions on Image
   Processing, 13, 600-612. :DOI:`10.1109/TIP.2003.819861`
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

K1 = 0.01
K2 = 0.03
DATA_RANGE = 255.0
C1 = (K1 * DATA_RANGE) ** 2
C2 = (K2 * DATA_RANGE) ** 2
#: Slack of the pruning proof: a pair is dropped only when its upper bound is below T − this.
PRUNING_SLACK = 1e-9
#: Terms summed between two early-termination checks of the bound.
BOUND_CHUNK = 16
#: Bytes of B-side statistics processed together, so they stay in a core's L2 cache while
#: every A image of the tile passes over them (see :func:`b_block_size`).
B_BLOCK_BYTES = 256 * 1024

#: Options of every kernel. ``error_model="numpy"`` drops numba's Python-style division-by-zero
#: check, whose branch keeps LLVM from vectorising any loop that divides (4× on the SSIM formula
#: here); no kernel divides by a value that can be zero (SSIM denominators are >= C1·C2 > 0).
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
#: Sums may be reassociated into SIMD lanes (no other fast-math licence: no reciprocals).
_FAST_SUM = {"reassoc", "contract", "nsz"}

WINDOW_UNIFORM = 0
WINDOW_GAUSSIAN = 1


@dataclass(frozen=True)
class WindowSpec:
    """The SSIM window: side length, 1-D weights (separable), covariance normalisation."""

    kind: int
    size: int
    weights: np.ndarray  # 1-D float64, sums to 1; uniform: all 1/size
    cov_norm: float

    @property
    def radius(self) -> int:
        return (self.size - 1) // 2


def window_spec(name: str) -> WindowSpec:
    """Return skimage's window for ``name``: ``"uniform"`` (7×7, sample covariance) or
    ``"gaussian"`` (σ = 1.5 truncated at 3.5σ → 11 taps, population covariance)."""
    if name == "uniform":
        size = 7
        weights = np.full(size, 1.0 / size)
        n_points = size * size
        return WindowSpec(WINDOW_UNIFORM, size, weights, n_points / (n_points - 1))
    if name == "gaussian":
        sigma, truncate = 1.5, 3.5
        radius = int(truncate * sigma + 0.5)
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        phi = np.exp(-0.5 / (sigma * sigma) * x * x)
        return WindowSpec(WINDOW_GAUSSIAN, 2 * radius + 1, phi / phi.sum(), 1.0)
    raise ValueError(f"window must be 'uniform' or 'gaussian', got {name!r}")


def n_terms(shape: tuple[int, int, int], window: WindowSpec) -> int:
    """Number of (channel, valid window position) terms of a ``(C, H, W)`` image."""
    channels, height, width = shape
    if height < window.size or width < window.size:
        raise ValueError(
            f"images of {height}x{width} pixels are smaller than the {window.size}x{window.size} "
            "SSIM window; use a larger --size"
        )
    return channels * (height - window.size + 1) * (width - window.size + 1)


# ---------------------------------------------------------------------------------------------
# Per-image statistics
# ---------------------------------------------------------------------------------------------


@numba.njit(**_JIT, inline="always")
def _box_row(column: np.ndarray, size: int, out_w: int, row: np.ndarray) -> None:
    """``row[j] = Σ_{t<size} column[j + t]``: one row of window sums from column sums (SIMD over
    ``j``; integer sums stay exact)."""
    for j in range(out_w):
        row[j] = column[j]
    for t in range(1, size):
        for j in range(out_w):
            row[j] += column[j + t]


@numba.njit(**_JIT, inline="always")
def _weighted_row(column: np.ndarray, weights: np.ndarray, out_w: int, row: np.ndarray) -> None:
    """``row[j] = Σ_t weights[t]·column[j + t]``, summed in ``t`` order."""
    for j in range(out_w):
        row[j] = weights[0] * column[j]
    for t in range(1, weights.size):
        weight = weights[t]
        for j in range(out_w):
            row[j] += weight * column[j + t]


@numba.njit(**_JIT, inline="always")
def _weighted_columns(plane: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """``out[i, j] = Σ_t weights[t]·plane[i + t, j]`` for every valid ``i``, summed in ``t``
    order."""
    for i in range(out.shape[0]):
        for j in range(plane.shape[1]):
            out[i, j] = weights[0] * plane[i, j]
        for t in range(1, weights.size):
            weight = weights[t]
            for j in range(plane.shape[1]):
                out[i, j] += weight * plane[i + t, j]


@numba.njit(**_JIT, inline="always")
def _store_row(
    values: np.ndarray, out: np.ndarray, start: int, slot: np.ndarray, spatial: bool
) -> None:
    """``out[slot[start + j]] = values[j]`` (a contiguous copy when ``slot`` is the identity)."""
    if spatial:
        for j in range(values.size):
            out[start + j] = values[j]
    else:
        for j in range(values.size):
            out[slot[start + j]] = values[j]


@numba.njit(**_JIT)
def _statistics_kernel(
    pixels: np.ndarray,
    kind: int,
    weights: np.ndarray,
    cov_norm: float,
    slot: np.ndarray,
    mean_out: np.ndarray,
    std_out: np.ndarray,
) -> None:
    """Fill ``mean_out``/``std_out`` ``(n, M)``; spatial term ``p`` goes to column ``slot[p]``."""
    n_images, channels, height, width = pixels.shape
    size = weights.size
    out_h = height - size + 1
    out_w = width - size + 1
    n_points = size * size
    column_sum = np.empty(width, dtype=np.int32)
    column_square = np.empty(width, dtype=np.int32)
    row_sum = np.empty(out_w, dtype=np.int32)
    row_square = np.empty(out_w, dtype=np.int32)
    plane = np.empty((height, width))
    plane_square = np.empty((height, width))
    columns = np.empty((out_h, width))
    columns_square = np.empty((out_h, width))
    row_mean = np.empty(out_w)
    row_second = np.empty(out_w)
    for n in range(n_images):
        for c in range(channels):
            image = pixels[n, c]
            if kind == WINDOW_UNIFORM:
                for j in range(width):
                    column_sum[j] = 0
                    column_square[j] = 0
                for t in range(size):
                    for j in range(width):
                        v = np.int32(image[t, j])
                        column_sum[j] += v
                        column_square[j] += v * v
            else:
                for i in range(height):
                    for j in range(width):
                        v = np.float64(image[i, j])
                        plane[i, j] = v
                        plane_square[i, j] = v * v
                _weighted_columns(plane, weights, columns)
                _weighted_columns(plane_square, weights, columns_square)
            for i in range(out_h):
                row = c * out_h * out_w + i * out_w
                if kind == WINDOW_UNIFORM:
                    if i > 0:
                        for j in range(width):
                            enter = np.int32(image[i + size - 1, j])
                            leave = np.int32(image[i - 1, j])
                            column_sum[j] += enter - leave
                            column_square[j] += enter * enter - leave * leave
                    _box_row(column_sum, size, out_w, row_sum)
                    _box_row(column_square, size, out_w, row_square)
                    for j in range(out_w):
                        s = np.float64(row_sum[j])
                        # exact integer numerator (< 2⁵³): no cancellation error in flat regions
                        var = cov_norm * (n_points * np.float64(row_square[j]) - s * s)
                        mean_out[n, slot[row + j]] = s / n_points
                        std_out[n, slot[row + j]] = math.sqrt(max(var / (n_points * n_points), 0.0))
                else:
                    _weighted_row(columns[i], weights, out_w, row_mean)
                    _weighted_row(columns_square[i], weights, out_w, row_second)
                    for j in range(out_w):
                        m = row_mean[j]
                        var = cov_norm * (row_second[j] - m * m)
                        mean_out[n, slot[row + j]] = m
                        std_out[n, slot[row + j]] = math.sqrt(max(var, 0.0))


def inverse_permutation(order: np.ndarray) -> np.ndarray:
    """``slot`` with ``slot[order[k]] = k``: where each spatial term sits in term order."""
    slot = np.empty(order.size, dtype=np.int64)
    slot[order] = np.arange(order.size, dtype=np.int64)
    return slot


def image_statistics(
    pixels: np.ndarray, window: WindowSpec, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Local means and standard deviations of canonical images, one column per term.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (n, C, H, W)
        Canonical images.
    window : WindowSpec
        From :func:`window_spec`.
    order : ndarray of int64, shape (M,), optional
        Column ``k`` of the result holds spatial term ``order[k]`` (terms are numbered channel,
        row, column). Default: spatial order.

    Returns
    -------
    mean, std : ndarray of float64, shape (n, M)
        ``μ`` and ``σ`` (with the window's covariance normalisation) at every valid window
        position of every channel, in units of 0‥255.
    """
    slot, mean, std = empty_statistics(pixels, window, order)
    fill_statistics(pixels, window, slot, mean, std)
    return mean, std


def empty_statistics(
    pixels: np.ndarray, window: WindowSpec, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the arguments of :func:`image_statistics`; return ``slot`` (spatial term → column)
    and the uninitialised ``mean`` and ``std`` arrays."""
    if pixels.dtype != np.uint8 or pixels.ndim != 4:
        raise ValueError(
            f"pixels must be uint8 of shape (n, C, H, W), got {pixels.dtype} {pixels.shape}"
        )
    m = n_terms(pixels.shape[1:], window)
    if order is None:
        order = np.arange(m, dtype=np.int64)
    if order.shape != (m,):
        raise ValueError(f"order must have one entry per term ({m}), got shape {order.shape}")
    return (
        inverse_permutation(order),
        np.empty((pixels.shape[0], m)),
        np.empty((pixels.shape[0], m)),
    )


def fill_statistics(
    pixels: np.ndarray, window: WindowSpec, slot: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> None:
    """Write the statistics of ``pixels`` into ``mean`` and ``std`` (rows may be slices of
    larger arrays: threads fill disjoint rows; the kernel releases the GIL)."""
    if pixels.shape[0]:
        _statistics_kernel(
            np.ascontiguousarray(pixels), window.kind, window.weights, window.cov_norm, slot,
            mean, std,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Pair kernels
# ---------------------------------------------------------------------------------------------


@numba.njit(**_JIT)
def _cross_sums_uniform(
    x: np.ndarray,
    y: np.ndarray,
    size: int,
    slot: np.ndarray,
    spatial: bool,
    column: np.ndarray,
    row_sums: np.ndarray,
    out: np.ndarray,
) -> None:
    """Exact ``Σxy`` over every valid window of every channel; spatial term p → ``out[slot[p]]``.

    Products of uint8 pixels summed over at most 11×11 windows stay below 2³¹, so int32 is exact
    and every loop runs along a pixel row (SIMD lanes). ``spatial``: ``slot`` is the identity.
    """
    channels, height, width = x.shape
    out_h = height - size + 1
    out_w = row_sums.size
    for c in range(channels):
        for j in range(width):
            column[j] = 0
        for t in range(size):
            for j in range(width):
                column[j] += np.int32(x[c, t, j]) * np.int32(y[c, t, j])
        for i in range(out_h):
            if i > 0:
                enter = i + size - 1
                for j in range(width):
                    column[j] += np.int32(x[c, enter, j]) * np.int32(y[c, enter, j]) - (
                        np.int32(x[c, i - 1, j]) * np.int32(y[c, i - 1, j])
                    )
            _box_row(column, size, out_w, row_sums)
            _store_row(row_sums, out, (c * out_h + i) * out_w, slot, spatial)


@numba.njit(**_JIT)
def _cross_means_gaussian(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    slot: np.ndarray,
    spatial: bool,
    product: np.ndarray,
    columns: np.ndarray,
    row_means: np.ndarray,
    out: np.ndarray,
) -> None:
    """Gaussian-weighted ``E[xy]`` over every valid window (float64); term p → ``out[slot[p]]``.

    Separable: the taps down the columns, then along the rows, each loop along a pixel row.
    """
    channels, height, width = x.shape
    out_h = columns.shape[0]
    out_w = row_means.size
    for c in range(channels):
        for i in range(height):
            for j in range(width):
                product[i, j] = np.float64(np.int32(x[c, i, j]) * np.int32(y[c, i, j]))
        _weighted_columns(product, weights, columns)
        for i in range(out_h):
            _weighted_row(columns[i], weights, out_w, row_means)
            _store_row(row_means, out, (c * out_h + i) * out_w, slot, spatial)


@numba.njit(**_JIT, inline="always")
def _term_fraction(
    mx: float, my: float, sdx: float, sdy: float, cross_mean: float, cov_norm: float
) -> tuple[float, float]:
    """Numerator and denominator of one window's SSIM term."""
    cov = cov_norm * (cross_mean - mx * my)
    numerator = (2.0 * mx * my + C1) * (2.0 * cov + C2)
    denominator = (mx * mx + my * my + C1) * (sdx * sdx + sdy * sdy + C2)
    return numerator, denominator


@numba.njit(**_JIT, inline="always")
def _bound_fraction(mx: float, my: float, sx: float, sy: float) -> tuple[float, float]:
    """Numerator and denominator of one window's Cauchy–Schwarz bound ``b_p`` (σxy ≤ σxσy)."""
    numerator = (2.0 * mx * my + C1) * (2.0 * sx * sy + C2)
    denominator = (mx * mx + my * my + C1) * (sx * sx + sy * sy + C2)
    return numerator, denominator


@numba.njit(**_JIT, fastmath=_FAST_SUM)
def _ssim_from_terms(
    mean_x: np.ndarray,
    std_x: np.ndarray,
    mean_y: np.ndarray,
    std_y: np.ndarray,
    cross: np.ndarray,
    cross_scale: float,
    cov_norm: float,
) -> float:
    """Mean of the SSIM map given ``E[xy] = cross·cross_scale`` per term (one term order).

    Division is the bottleneck, so two terms share one: ``n1/d1 + n2/d2 = (n1·d2 + n2·d1)/(d1·d2)``
    (denominators are >= C1·C2 and <= ~1e21, far from float64's limits). Term ``k`` is paired
    with ``k + M/2`` so that both halves are read contiguously into SIMD lanes; ``reassoc`` lets
    the sum be split across lanes (a fixed order for a given build, so a pair's value never
    depends on tiling or jobs).
    """
    m = mean_x.size
    half = m // 2
    total = 0.0
    for k in range(half):
        n1, d1 = _term_fraction(
            mean_x[k], mean_y[k], std_x[k], std_y[k], cross[k] * cross_scale, cov_norm
        )
        h = k + half
        n2, d2 = _term_fraction(
            mean_x[h], mean_y[h], std_x[h], std_y[h], cross[h] * cross_scale, cov_norm
        )
        total += (n1 * d2 + n2 * d1) / (d1 * d2)
    if m % 2:
        k = m - 1
        n1, d1 = _term_fraction(
            mean_x[k], mean_y[k], std_x[k], std_y[k], cross[k] * cross_scale, cov_norm
        )
        total += n1 / d1
    return total / m


@numba.njit(**_JIT)
def _exact_pair(
    x: np.ndarray,
    y: np.ndarray,
    mean_x: np.ndarray,
    std_x: np.ndarray,
    mean_y: np.ndarray,
    std_y: np.ndarray,
    slot: np.ndarray,
    spatial: bool,
    kind: int,
    weights: np.ndarray,
    cov_norm: float,
    scratch: tuple,
) -> float:
    """Exact SSIM of one pair; statistics are in term order, ``slot`` maps spatial → term
    (``spatial``: it is the identity).

    ``scratch`` comes from :func:`_scratch`, allocated once per tile rather than once per pair.
    """
    column_int, row_int, product, column_float, row_float, cross = scratch
    if kind == WINDOW_UNIFORM:
        _cross_sums_uniform(x, y, weights.size, slot, spatial, column_int, row_int, cross)
        cross_scale = 1.0 / (weights.size * weights.size)
    else:
        _cross_means_gaussian(x, y, weights, slot, spatial, product, column_float, row_float, cross)
        cross_scale = 1.0
    return _ssim_from_terms(mean_x, std_x, mean_y, std_y, cross, cross_scale, cov_norm)


@numba.njit(**_JIT, fastmath=_FAST_SUM)
def _bound_survives(
    mean_x: np.ndarray,
    std_x: np.ndarray,
    mean_y: np.ndarray,
    std_y: np.ndarray,
    budget: float,
) -> bool:
    """True unless the Cauchy–Schwarz deficit proves the pair's SSIM below the threshold.

    ``budget`` is ``(1 − T + slack)·M``; the deficit ``Σ(1 − b_p)`` is summed chunk by chunk in
    term order and the pair is dropped as soon as it exceeds the budget. Two terms share one
    division as in :func:`_ssim_from_terms` (term ``k`` with ``k + BOUND_CHUNK/2`` of its chunk);
    the reordering and rounding this allows (~1e-16 per term) are far below the slack.
    """
    m = mean_x.size
    half = BOUND_CHUNK // 2
    deficit = 0.0
    k0 = 0
    while k0 + BOUND_CHUNK <= m:
        chunk = 0.0
        for k in range(k0, k0 + half):
            h = k + half
            n1, d1 = _bound_fraction(mean_x[k], mean_y[k], std_x[k], std_y[k])
            n2, d2 = _bound_fraction(mean_x[h], mean_y[h], std_x[h], std_y[h])
            chunk += 2.0 - (n1 * d2 + n2 * d1) / (d1 * d2)
        deficit += chunk
        if deficit > budget:
            return False
        k0 += BOUND_CHUNK
    for k in range(k0, m):
        n1, d1 = _bound_fraction(mean_x[k], mean_y[k], std_x[k], std_y[k])
        deficit += 1.0 - n1 / d1
    return deficit <= budget


def b_block_size(n_terms: int, pixels_per_image: int) -> int:
    """B images per block: as many as fit :data:`B_BLOCK_BYTES` (between 8 and 128)."""
    row_bytes = 16 * n_terms + pixels_per_image  # float64 mean and std per term, uint8 pixels
    return int(min(128, max(8, B_BLOCK_BYTES // row_bytes)))


@numba.njit(**_JIT)
def _scratch(height: int, width: int, window_size: int, m: int) -> tuple:
    """Per-tile work arrays of :func:`_exact_pair`: integer column and row sums (uniform
    window), the product plane and column/row sums (Gaussian window), the cross terms."""
    out_h = max(height - window_size + 1, 1)
    out_w = max(width - window_size + 1, 1)
    return (
        np.empty(width, dtype=np.int32),
        np.empty(out_w, dtype=np.int32),
        np.empty((height, width)),
        np.empty((out_h, width)),
        np.empty(out_w),
        np.empty(m),
    )


@numba.njit(**_JIT)
def _is_identity(slot: np.ndarray) -> bool:
    return bool((slot == np.arange(slot.size)).all())


@numba.njit(**_JIT)
def search_block(
    pixels_a: np.ndarray,
    mean_a: np.ndarray,
    std_a: np.ndarray,
    content_a: np.ndarray,
    offset_a: int,
    pixels_b: np.ndarray,
    mean_b: np.ndarray,
    std_b: np.ndarray,
    content_b: np.ndarray,
    offset_b: int,
    slot: np.ndarray,
    kind: int,
    weights: np.ndarray,
    cov_norm: float,
    threshold: float,
    prune: bool,
    upper_only: bool,
    b_block: int,
    out_a: np.ndarray,
    out_b: np.ndarray,
    out_ssim: np.ndarray,
) -> tuple[int, int, int, bool]:
    """Every pair of block A × block B whose SSIM is >= ``threshold``.

    Statistics are in term order and ``slot`` maps spatial terms to it. Pairs
    with equal ``content`` ids (identical canonical pixels) are skipped: they are exact twins, reported without SSIM. With ``upper_only`` (one split against
    itself) only pairs with ``offset_a + i < offset_b + j`` are visited.

    Returns ``(hits, pruned, computed, overflow)``; ``overflow`` means the output arrays were too
    small and the block must be run again with larger ones.
    """
    n_a = pixels_a.shape[0]
    n_b = pixels_b.shape[0]
    m = slot.size
    budget = (1.0 - threshold + PRUNING_SLACK) * m
    use_bound = prune and budget < m  # the deficit never exceeds M: T <= 0 cannot prune
    scratch = _scratch(pixels_a.shape[2], pixels_a.shape[3], weights.size, m)
    spatial = _is_identity(slot)
    capacity = out_a.size
    hits = 0
    pruned = 0
    computed = 0
    for b0 in range(0, n_b, b_block):
        b1 = min(b0 + b_block, n_b)
        for i in range(n_a):
            for j in range(b0, b1):
                if upper_only and offset_a + i >= offset_b + j:
                    continue
                if content_a[i] == content_b[j]:
                    continue
                if use_bound and not _bound_survives(
                    mean_a[i], std_a[i], mean_b[j], std_b[j], budget
                ):
                    pruned += 1
                    continue
                computed += 1
                value = _exact_pair(
                    pixels_a[i], pixels_b[j], mean_a[i], std_a[i], mean_b[j], std_b[j],
                    slot, spatial, kind, weights, cov_norm, scratch,
                )  # fmt: skip
                if value >= threshold:
                    if hits >= capacity:
                        return hits, pruned, computed, True
                    out_a[hits] = i
                    out_b[hits] = j
                    out_ssim[hits] = value
                    hits += 1
    return hits, pruned, computed, False


@numba.njit(**_JIT)
def pair_values(
    pixels_a: np.ndarray,
    mean_a: np.ndarray,
    std_a: np.ndarray,
    pixels_b: np.ndarray,
    mean_b: np.ndarray,
    std_b: np.ndarray,
    index_a: np.ndarray,
    index_b: np.ndarray,
    slot: np.ndarray,
    kind: int,
    weights: np.ndarray,
    cov_norm: float,
) -> np.ndarray:
    """Exact SSIM of the listed pairs ``(index_a[k], index_b[k])``."""
    m = slot.size
    scratch = _scratch(pixels_a.shape[2], pixels_a.shape[3], weights.size, m)
    spatial = _is_identity(slot)
    out = np.empty(index_a.size)
    for k in range(index_a.size):
        i = index_a[k]
        j = index_b[k]
        out[k] = _exact_pair(
            pixels_a[i], pixels_b[j], mean_a[i], std_a[i], mean_b[j], std_b[j],
            slot, spatial, kind, weights, cov_norm, scratch,
        )  # fmt: skip
    return out


@numba.njit(**_JIT)
def expected_deficit(
    mean_a: np.ndarray, std_a: np.ndarray, mean_b: np.ndarray, std_b: np.ndarray, seed: int
) -> np.ndarray:
    """Mean per-term bound deficit ``1 − b_p`` over sampled pairs (spatial order).

    Used only to choose the order in which the pruning bound visits terms: the terms that most
    often separate two images come first, so non-twins are rejected after few terms.
    """
    np.random.seed(seed)
    m = mean_a.shape[1]
    out = np.zeros(m)
    samples = min(512, mean_a.shape[0] * mean_b.shape[0])
    for _ in range(samples):
        i = np.random.randint(mean_a.shape[0])
        j = np.random.randint(mean_b.shape[0])
        for k in range(m):
            mx = mean_a[i, k]
            my = mean_b[j, k]
            sx = std_a[i, k]
            sy = std_b[j, k]
            numerator = (2.0 * mx * my + C1) * (2.0 * sx * sy + C2)
            denominator = (mx * mx + my * my + C1) * (sx * sx + sy * sy + C2)
            out[k] += 1.0 - numerator / denominator
    return out / max(samples, 1)
