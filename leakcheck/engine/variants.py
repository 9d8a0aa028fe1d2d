"""Robust variants: transforms applied before the exact SSIM, each with its ``method`` name.

A variant is a pair of transforms of canonical stacks ``(n, C, H, W)`` uint8 → ``(n, C, h, w)``
uint8: one for side A of a comparison (the earlier split), one for side B. Both sides of one
variant give the same shape, which may be smaller than the canonical one. The engine runs the same
exact, pruned search on the transformed stacks, so the reported ``ssim`` is always a real SSIM
(skimage's, with the configured window) of the two images *as transformed*, and ``method`` (plus
``alignment``) says which variant matched. Every transform is deterministic: fixed arithmetic on
the canonical pixels, no randomness, no dependence on the other images.

Families (``--variants`` names; measured in ``benchmarks/robustness.py``, see its README; all
are on by default, ``all`` names every one):

``plain`` → ``ssim``
    The canonical arrays as they are.
``hflip`` → ``ssim_hflip``
    B mirrored left-right.
``tone`` → ``ssim_tone``
    Both images with their mean moved to mid-grey (a constant offset, darkening or brightening
    no longer lowers the luminance term); near-flat images are moved less (below).
``exposure`` → ``ssim_exposure``
    One side brightened ×1.3 and clipped at white, as an over-exposed copy is: the highlights the
    copy lost are then lost on both sides. Two variants (A brightened, or B). (A darkened copy
    needs no such variant: ``tone`` finds it; a darker twin variant was measured and dropped,
    it rescued one twin in 900 for two more searches.)
``shift`` → ``ssim_shift``
    The overlap of two images shifted by ``SHIFT`` (4 %) of their width and height: A's window
    ``[d, 1]`` against B's ``[0, 1 − d]`` per axis, for the four diagonal directions.
``crop`` → ``ssim_crop``
    The centre ``CROP`` (90 %) of each side of one image against the whole other image (two
    variants: the crop on side A, or on side B).
``rotate`` → ``ssim_rotate``
    B turned by ±``ROTATION`` (3°) about its centre; both sides keep the centre square that stays
    inside the turned image.

The geometric variants (``shift``, ``crop``, ``rotate``) compare at ``ROBUST_SCALE`` (3/4) of the
canonical size, 24×24 at the default 32: the coarser grid absorbs what an alignment cannot make
exact (the twin's shift rounded to whole pixels of its own file, interpolation), and costs less.
Resampling is anti-aliased (each output pixel averages ``SUPERSAMPLING``² bilinear samples of its
footprint) and done in integer fixed point, so it is exact and batch-independent. ``hflip``,
``tone`` and ``exposure`` keep the canonical grid: their alignment is exact, and a coarser grid
would only make look-alikes score higher (measured on Fashion-MNIST).

A pair several variants find is reported by the first of them (in the order above) whose SSIM
reaches the audit threshold: a pair plain SSIM already flags stays ``ssim``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from leakcheck.settings import DEFAULT_VARIANTS, SettingsError

Transform = Callable[[np.ndarray], np.ndarray]

#: Side of the robust variants' comparison grid, relative to the canonical side.
ROBUST_SCALE = 0.75
#: Smallest robust grid: the 7×7 window (11×11 Gaussian) must fit with room to spare.
ROBUST_MIN_SIDE = 16
#: Shift of the ``shift`` family, as a fraction of the width and height.
SHIFT = 0.04
#: Fraction of each side kept by the ``crop`` family.
CROP = 0.90
#: Angle of the ``rotate`` family, in degrees.
ROTATION = 3.0
#: Brightness factor of the ``exposure`` family (an over-exposed copy).
EXPOSURE_GAIN = 1.3
#: ``tone``: an image whose standard deviation is below this (grey levels) is moved towards
#: mid-grey only in proportion, so two blank frames of different greys stay different.
TONE_FLAT_STD = 8.0
TONE_MID_GREY = 128.0
#: Bilinear samples per output pixel and axis when resampling.
SUPERSAMPLING = 3
#: Images resampled at a time (bounds the working memory; fastest around this size).
CHUNK_IMAGES = 1024
#: Resampling weights are integers in units of 2**-WEIGHT_BITS.
WEIGHT_BITS = 14
WEIGHT_ONE = 1 << WEIGHT_BITS


def identity(pixels: np.ndarray) -> np.ndarray:
    return pixels


def horizontal_flip(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels[..., ::-1])


def robust_side(canonical_side: int) -> int:
    """Side of a robust variant's grid for a canonical side (24 for 32, 48 for 64)."""
    return max(min(canonical_side, ROBUST_MIN_SIDE), int(round(canonical_side * ROBUST_SCALE)))


# --- geometric resampling ---------------------------------------------------------------------


@dataclass(frozen=True)
class Resample:
    """Anti-aliased affine resampling of each image onto a ``ROBUST_SCALE`` grid.

    Output pixel centres, in coordinates centred on the image and scaled to [-1/2, 1/2], are
    mapped to input coordinates by ``input = zoom · R(angle) · M · output + offset``, where ``M``
    mirrors left-right when ``mirror`` is set. ``offset`` is (down, right) as fractions of the
    height and width. Samples outside the image repeat its edge. Identical calls give identical
    bytes: the weights are fixed per shape and applied in a fixed order.
    """

    zoom: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0  # degrees, counter-clockwise as displayed
    mirror: bool = False
    _tables: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        n, channels, height, width = pixels.shape
        side_h, side_w = robust_side(height), robust_side(width)
        matrix = self._matrix(height, width, side_h, side_w)
        out = np.empty((n, channels, side_h, side_w), dtype=np.uint8)
        flat_in = pixels.reshape(n * channels, height * width)
        flat_out = out.reshape(n * channels, side_h * side_w)
        for start in range(0, n * channels, CHUNK_IMAGES):
            block = flat_in[start : start + CHUNK_IMAGES].T.astype(np.int32)
            # integer weights: exact sums, so the result never depends on batch or order
            total = matrix @ block
            flat_out[start : start + CHUNK_IMAGES] = ((total + WEIGHT_ONE // 2) >> WEIGHT_BITS).T
        return out

    def _matrix(self, height: int, width: int, side_h: int, side_w: int) -> sparse.csr_matrix:
        key = (height, width, side_h, side_w)
        with self._lock:
            if key not in self._tables:
                self._tables[key] = self._build(height, width, side_h, side_w)
            return self._tables[key]

    def _build(self, height: int, width: int, side_h: int, side_w: int) -> sparse.csr_matrix:
        """Sparse (output pixels × input pixels) weights: the mean of bilinear samples."""
        q = SUPERSAMPLING
        sub = (np.arange(q) + 0.5) / q
        # output sample positions, centred coordinates in [-1/2, 1/2]
        ys = ((np.arange(side_h)[:, None] + sub[None, :]) / side_h - 0.5).ravel()
        xs = ((np.arange(side_w)[:, None] + sub[None, :]) / side_w - 0.5).ravel()
        grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
        if self.mirror:
            grid_x = -grid_x
        theta = math.radians(self.angle)
        cos, sin = math.cos(theta), math.sin(theta)
        # counter-clockwise as displayed (y points down): input = R · output
        in_x = self.zoom * (cos * grid_x + sin * grid_y) + self.offset[1]
        in_y = self.zoom * (-sin * grid_x + cos * grid_y) + self.offset[0]
        # to input pixel coordinates (pixel centres at integers), edge repeated
        py = np.clip((in_y + 0.5) * height - 0.5, 0.0, height - 1.0)
        px = np.clip((in_x + 0.5) * width - 0.5, 0.0, width - 1.0)
        y0 = np.minimum(np.floor(py).astype(np.int64), height - 2 if height > 1 else 0)
        x0 = np.minimum(np.floor(px).astype(np.int64), width - 2 if width > 1 else 0)
        fy, fx = py - y0, px - x0
        y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
        # which output pixel each sample belongs to
        out_row = (np.arange(side_h * q) // q)[:, None]
        out_col = (np.arange(side_w * q) // q)[None, :]
        out_index = np.broadcast_to(out_row * side_w + out_col, grid_y.shape)
        rows, cols, weights = [], [], []
        for yy, xx, ww in (
            (y0, x0, (1 - fy) * (1 - fx)),
            (y0, x1, (1 - fy) * fx),
            (y1, x0, fy * (1 - fx)),
            (y1, x1, fy * fx),
        ):
            rows.append(out_index.ravel())
            cols.append((yy * width + xx).ravel())
            weights.append(ww.ravel() / (q * q))
        matrix = sparse.coo_matrix(
            (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
            shape=(side_h * side_w, height * width),
        ).tocsr()  # duplicates summed once, here, in a fixed order
        return _fixed_point(matrix)


def _fixed_point(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Weights in units of ``2**-WEIGHT_BITS``, each row summing to exactly one unit, so that a
    flat image stays flat and every output is an exact integer sum."""
    units = np.round(matrix.data * WEIGHT_ONE).astype(np.int64)
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        if hi > lo:
            largest = lo + int(np.argmax(units[lo:hi]))
            units[largest] += WEIGHT_ONE - units[lo:hi].sum()
    fixed = sparse.csr_matrix((units.astype(np.int32), matrix.indices, matrix.indptr), matrix.shape)
    return fixed


def _quantise(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 255.0)).astype(np.uint8)


# --- tone ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToneMatch:
    """Move each image's mean (per channel) to mid-grey: ``x − w·(μ − 128)``.

    ``w = min(1, σ / TONE_FLAT_STD)``: textured images are fully centred, near-flat ones only in
    proportion to their contrast. Values are clipped to 0–255 and rounded.
    """

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        n, channels = pixels.shape[:2]
        flat = pixels.reshape(n * channels, -1)
        out = np.empty_like(flat)
        levels = np.arange(256, dtype=np.float64)
        for start in range(0, flat.shape[0], CHUNK_IMAGES):
            block = flat[start : start + CHUNK_IMAGES]
            wide = block.astype(np.int64)
            # exact integer sums: an image always gets the same table, whatever the batch
            mean = wide.sum(axis=1) / block.shape[1]
            mean_square = (wide * wide).sum(axis=1) / block.shape[1]
            std = np.sqrt(np.maximum(mean_square - mean * mean, 0.0))
            weight = np.minimum(1.0, std / TONE_FLAT_STD)
            tables = _quantise(levels[None, :] - (weight * (mean - TONE_MID_GREY))[:, None])
            rows = np.arange(block.shape[0], dtype=np.int64)[:, None] * 256
            out[start : start + CHUNK_IMAGES] = tables.ravel()[rows + wide]
        return out.reshape(pixels.shape)


@dataclass(frozen=True)
class Exposure:
    """``x · gain + offset``, clipped to 0–255: what an over- or under-exposed copy did to its
    highlights or shadows, done to the other image too so that the clipped parts match."""

    gain: float = 1.0
    offset: float = 0.0

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        table = _quantise(np.arange(256, dtype=np.float64) * self.gain + self.offset)
        return table[pixels]


# --- variants --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of comparing: ``method`` names it in ``pairs.csv``; ``alignment`` describes it."""

    method: str
    transform_a: Transform = identity
    transform_b: Transform = identity
    alignment: str = ""


PLAIN = Variant("ssim")

#: The robust grid without any other change.
COARSE = Resample()

HFLIP = Variant("ssim_hflip", identity, horizontal_flip, "B mirrored left-right")

_TONE = ToneMatch()
TONE = Variant("ssim_tone", _TONE, _TONE, "both means moved to mid-grey")

_BRIGHTENED = Exposure(gain=EXPOSURE_GAIN)
EXPOSURE = (
    Variant("ssim_exposure", _BRIGHTENED, identity, f"A brightened x{EXPOSURE_GAIN:g}, clipped"),
    Variant("ssim_exposure", identity, _BRIGHTENED, f"B brightened x{EXPOSURE_GAIN:g}, clipped"),
)


def _shift_variant(down: int, right: int) -> Variant:
    """A's window ``[d, 1]`` against B's ``[0, 1 − d]`` along each axis (a sign of −1 swaps
    them): the overlap when B shows A's content moved up (``down=1``) and left (``right=1``)."""
    zoom = 1.0 - SHIFT
    a_offset = (down * SHIFT / 2, right * SHIFT / 2)
    b_offset = (-down * SHIFT / 2, -right * SHIFT / 2)
    vertical = "up" if down == 1 else "down"
    horizontal = "left" if right == 1 else "right"
    text = f"B is A moved {vertical} and {horizontal} by {SHIFT:.0%}; overlap compared"
    return Variant(
        "ssim_shift",
        Resample(zoom=zoom, offset=a_offset),
        Resample(zoom=zoom, offset=b_offset),
        text,
    )


SHIFTS = tuple(_shift_variant(down, right) for down in (1, -1) for right in (1, -1))

_CENTRE = Resample(zoom=CROP)
CROPS = (
    Variant("ssim_crop", _CENTRE, COARSE, f"centre {CROP:.0%} of A against all of B"),
    Variant("ssim_crop", COARSE, _CENTRE, f"all of A against centre {CROP:.0%} of B"),
)

#: The largest centred square inside a square turned by ROTATION degrees.
_INSIDE = 1.0 / (math.cos(math.radians(ROTATION)) + math.sin(math.radians(ROTATION)))
ROTATIONS = tuple(
    Variant(
        "ssim_rotate",
        Resample(zoom=_INSIDE),
        Resample(zoom=_INSIDE, angle=sign * ROTATION),
        f"B is A turned {ROTATION:g} degrees {turn}; centre {_INSIDE:.0%} compared",
    )
    for sign, turn in ((1, "counter-clockwise"), (-1, "clockwise"))
)

#: Variant families by their ``--variants`` name; each name may stand for several variants.
VARIANT_FAMILIES: dict[str, tuple[Variant, ...]] = {
    "plain": (PLAIN,),
    "hflip": (HFLIP,),
    "tone": (TONE,),
    "exposure": EXPOSURE,
    "shift": SHIFTS,
    "crop": CROPS,
    "rotate": ROTATIONS,
}
#: Every family; ``--variants all`` is the same.
ALL_VARIANTS = tuple(VARIANT_FAMILIES)
#: The families an audit tries unless told otherwise (defined in ``settings``).
DEFAULT_FAMILIES = DEFAULT_VARIANTS

#: Method names, for ``product.md`` and for users filtering ``pairs.csv``.
METHODS = tuple(dict.fromkeys(v.method for family in VARIANT_FAMILIES.values() for v in family))


def resolve_variants(names: Sequence[str]) -> tuple[Variant, ...]:
    """``("plain", "hflip")`` → the variants to run, plain first; unknown names are refused.

    ``"all"`` stands for every family.
    """
    names = [family for name in names for family in (ALL_VARIANTS if name == "all" else (name,))]
    unknown = [name for name in names if name not in VARIANT_FAMILIES]
    if unknown:
        raise SettingsError(
            f"unknown variant(s) {unknown}; choose from {sorted(VARIANT_FAMILIES)} or 'all'"
        )
    chosen: list[Variant] = [PLAIN]
    for name in names:
        for variant in VARIANT_FAMILIES[name]:
            if variant not in chosen:
                chosen.append(variant)
    return tuple(chosen)


def variant_for(method: str, alignment: str = "") -> Variant | None:
    """The variant that produced a ``pairs.csv`` row (``method`` and ``alignment`` columns)."""
    candidates = [v for family in VARIANT_FAMILIES.values() for v in family if v.method == method]
    for variant in candidates:
        if variant.alignment == alignment:
            return variant
    return candidates[0] if candidates else None
