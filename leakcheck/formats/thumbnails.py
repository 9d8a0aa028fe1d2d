"""The pictures of ``report.html``: thumbnails, difference maps, pair cards, the score histogram.

Thumbnails are the decoded image (:func:`leakcheck.images.read_image`, so EXIF orientation, alpha
and 16-bit files look as leakcheck saw them) shrunk to fit a square of ``THUMBNAIL_SIDE`` pixels
and stored as JPEG. A difference map is ``|a - b|`` of the two canonical grayscale images at the
comparison size, after the transform named by the pair's ``method`` (a mirrored twin is compared
mirrored), drawn on a black-red-yellow-white heat scale and stored as PNG. Both are ``data:`` URIs.

Every failure to make an image is a :class:`ThumbnailError` with a short reason, and the card
shows a placeholder instead. Every user string in the HTML written here goes through
:func:`html.escape`.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from leakcheck.engine.variants import identity, variant_for
from leakcheck.images import load_canonical, read_image

#: Images with more pixels are decoded for thumbnails through the reduced canonical path.
LARGE_IMAGE_PIXELS = 16_000_000
ORIENTATION_TAG = 0x0112
#: Longest side of a thumbnail in pixels.
THUMBNAIL_SIDE = 128
THUMBNAIL_JPEG_QUALITY = 80
#: Difference maps are computed at the comparison size, or this size for ``--size native``.
DIFFERENCE_SIZE_FOR_NATIVE = 64
#: A difference of this much (of the full 0–1 range) or more is drawn white.
DIFFERENCE_FULL_SCALE = 0.25


class ThumbnailError(Exception):
    """An image for the report could not be made; ``str(error)`` is a short reason."""


def _data_uri(image: Image.Image, kind: str, **options: object) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{kind.lower()};base64,{encoded}"


def _stored_shape(file: str | Path) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF rotation applied), from the header only;
    ``(0, 0)`` when the header cannot be read (decoding will then say why)."""
    try:
        with Image.open(file) as probe:
            width, height = probe.size
            orientation = probe.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # any header problem is reported by the real decode
        return 0, 0
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _decode_for_thumbnail(file: str | Path, max_pixels: int | None, side: int) -> Image.Image:
    width, height = _stored_shape(file)
    if width * height <= LARGE_IMAGE_PIXELS:
        pixels = read_image(file, color="rgb", max_pixels=max_pixels)
        return Image.fromarray(np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8), "RGB")
    # A large image would cost 24 bytes a pixel as float RGB: take the canonical path instead,
    # which reduces JPEGs and 8-bit images while decoding, and restore the aspect ratio after.
    canonical = load_canonical(file, size=2 * side, color="rgb", max_pixels=max_pixels)
    square = Image.fromarray(np.ascontiguousarray(np.moveaxis(canonical, 0, -1)), "RGB")
    scale = 2 * side / max(width, height)
    return square.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS
    )


def thumbnail_data_uri(
    file: str | Path, *, max_pixels: int | None, side: int = THUMBNAIL_SIDE
) -> str:
    """A JPEG thumbnail of ``file`` whose longest side is at most ``side`` pixels."""
    try:
        image = _decode_for_thumbnail(file, max_pixels, side)
    except Exception as error:  # whatever goes wrong, the report shows a placeholder instead
        raise ThumbnailError(str(error) or type(error).__name__) from None
    image.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return _data_uri(image, "JPEG", quality=THUMBNAIL_JPEG_QUALITY, optimize=True)


def _transforms_of(method: str, alignment: str = "") -> tuple:
    """The (side A, side B) transforms of the variant that produced a pair (``method`` and
    ``alignment`` together: a family holds variants in several directions)."""
    variant = variant_for(method, alignment)
    return (identity, identity) if variant is None else (variant.transform_a, variant.transform_b)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 on a black → red → yellow → white scale."""
    v = np.clip(values, 0.0, 1.0)
    red = np.clip(3.0 * v, 0.0, 1.0)
    green = np.clip(3.0 * v - 1.0, 0.0, 1.0)
    blue = np.clip(3.0 * v - 2.0, 0.0, 1.0)
    return np.rint(np.stack([red, green, blue], axis=-1) * 255.0).astype(np.uint8)


def canonical_gray(file: str | Path, *, size: int | None, max_pixels: int | None) -> np.ndarray:
    """The canonical grayscale array of ``file`` at ``size`` (``None``: a small default size)."""
    try:
        return load_canonical(
            file, size=size or DIFFERENCE_SIZE_FOR_NATIVE, color="gray", max_pixels=max_pixels
        )
    except Exception as error:  # whatever goes wrong, the report shows a placeholder instead
        raise ThumbnailError(str(error) or type(error).__name__) from None


def difference_data_uri(
    canonical_a: np.ndarray, canonical_b: np.ndarray, *, method: str, alignment: str = ""
) -> tuple[str, float]:
    """A PNG heat map of ``|a - b|`` of two canonical arrays, and the largest difference (0–1).

    The arrays are transformed like the variant named by ``method`` first. The colour scale is the
    same for every pair (white at ``DIFFERENCE_FULL_SCALE``), so maps can be compared with each
    other. The map keeps the comparison size; the page scales it up.
    """
    transform_a, transform_b = _transforms_of(method, alignment)
    a = transform_a(canonical_a[np.newaxis])[0, 0].astype(np.float64) / 255.0
    b = transform_b(canonical_b[np.newaxis])[0, 0].astype(np.float64) / 255.0
    difference = np.abs(a - b)
    image = Image.fromarray(heat_colours(difference / DIFFERENCE_FULL_SCALE), "RGB")
    return _data_uri(image, "PNG"), float(difference.max())


# -- the images of one pair -------------------------------------------------------------------


def _figure(image: str | ThumbnailError, caption: str, alt: str, css: str = "") -> str:
    """A figure with a data: image, or a placeholder that says why there is none."""
    if isinstance(image, ThumbnailError):
        inner = f'<div class="placeholder">no preview: {escape(str(image))}</div>'
    else:
        extra = f' class="{css}" width="{THUMBNAIL_SIDE}" height="{THUMBNAIL_SIDE}"' if css else ""
        inner = f'<img src="{image}" alt="{escape(alt)}"{extra}>'
    return f"<figure>{inner}<figcaption>{escape(caption)}</figcaption></figure>"


class PairImages:
    """Thumbnails and difference maps of pairs; each file is decoded for a thumbnail once."""

    def __init__(self, *, size: int | None, max_pixels: int | None) -> None:
        self.size = size
        self.max_pixels = max_pixels
        self._thumbnails: dict[str, str | ThumbnailError] = {}
        self._canonical: dict[str, np.ndarray | ThumbnailError] = {}

    def thumbnail(self, file: str) -> str | ThumbnailError:
        if file not in self._thumbnails:
            try:
                self._thumbnails[file] = thumbnail_data_uri(file, max_pixels=self.max_pixels)
            except ThumbnailError as error:
                self._thumbnails[file] = error
        return self._thumbnails[file]

    def canonical(self, file: str) -> np.ndarray | ThumbnailError:
        if file not in self._canonical:
            try:
                self._canonical[file] = canonical_gray(
                    file, size=self.size, max_pixels=self.max_pixels
                )
            except ThumbnailError as error:
                self._canonical[file] = error
        return self._canonical[file]

    def difference(
        self, file_a: str, file_b: str, method: str, alignment: str = ""
    ) -> tuple[str, float]:
        canonical_a, canonical_b = self.canonical(file_a), self.canonical(file_b)
        for canonical in (canonical_a, canonical_b):
            if isinstance(canonical, ThumbnailError):
                raise canonical
        return difference_data_uri(canonical_a, canonical_b, method=method, alignment=alignment)

    def strip_html(
        self, file_a: str, file_b: str, *, method: str, alignment: str = "",
        caption_a: str, alt_a: str, caption_b: str, alt_b: str,
    ) -> str:  # fmt: skip
        """Thumbnail A, thumbnail B and their difference map, as HTML (captions escaped here)."""
        caption = "|A−B| at comparison size"
        difference: str | ThumbnailError
        try:
            difference, largest = self.difference(file_a, file_b, method, alignment)
            caption = f"|A−B|, largest {largest:.0%}" if largest > 0 else "|A−B|: identical"
        except ThumbnailError as error:
            difference = error
        return (
            '<div class="images">'
            + _figure(self.thumbnail(file_a), caption_a, alt_a)
            + _figure(self.thumbnail(file_b), caption_b, alt_b)
            + _figure(difference, caption, "difference map", css="diff")
            + "</div>"
        )


# -- one pair as a card -----------------------------------------------------------------------


@dataclass(frozen=True)
class PairView:
    """One pair as the page shows it; ``rank`` is its 1-based place in ``pairs.csv``."""

    rank: int
    group: str
    split_a: str
    path_a: str
    label_a: str
    file_a: str
    split_b: str
    path_b: str
    label_b: str
    file_b: str
    ssim: float
    method: str
    alignment: str
    accepted: bool

    @property
    def label_noise(self) -> bool:
        return bool(self.label_a) and bool(self.label_b) and self.label_a != self.label_b


def _text(value: object) -> str:
    """A table value as text: NaN and None are empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def pair_views(
    pairs: pd.DataFrame, group_of: dict[tuple[str, str], str], images: pd.DataFrame
) -> list[PairView]:
    keys = zip(images["split"].tolist(), images["path"].tolist(), strict=True)
    files = dict(zip(keys, images["file"].tolist(), strict=True))
    alignments = pairs["alignment"].tolist() if "alignment" in pairs else [""] * len(pairs)
    views = []
    for rank, (row, alignment) in enumerate(
        zip(pairs.itertuples(index=False), alignments, strict=True), start=1
    ):
        key_a, key_b = (row.split_a, row.path_a), (row.split_b, row.path_b)
        views.append(
            PairView(
                rank=rank,
                group=group_of.get(key_a, ""),
                split_a=row.split_a,
                path_a=row.path_a,
                label_a=_text(row.label_a),
                file_a=files.get(key_a, ""),
                split_b=row.split_b,
                path_b=row.path_b,
                label_b=_text(row.label_b),
                file_b=files.get(key_b, ""),
                ssim=float(row.ssim),
                method=_text(row.method),
                alignment=_text(alignment),
                accepted=bool(row.accepted),
            )
        )
    return views


def _strip(view: PairView, images: PairImages) -> str:
    return images.strip_html(
        view.file_a, view.file_b, method=view.method, alignment=view.alignment,
        caption_a=f"A · {view.split_a}", alt_a=f"A: {view.split_a}/{view.path_a}",
        caption_b=f"B · {view.split_b}", alt_b=f"B: {view.split_b}/{view.path_b}",
    )  # fmt: skip


def pair_row(view: PairView, images: PairImages | None) -> str:
    """One pair: its thumbnails and difference map (unless ``images`` is None) and details."""
    classes = ["pair"] + ["noise"] * view.label_noise + ["accepted"] * view.accepted
    badges = []
    if view.accepted:
        badges.append('<span class="badge accepted">accepted (baseline)</span>')
    if view.label_noise:
        badges.append(
            '<span class="badge noise">label noise: the twins have different labels</span>'
        )
    method = f"method <code>{escape(view.method)}</code>"
    if view.alignment:
        method += f", alignment: {escape(view.alignment)}"
    return (
        f'<div class="{" ".join(classes)}">'
        + (_strip(view, images) if images is not None else "")
        + f'<div class="details"><p class="score">SSIM {view.ssim:.5f} <small>pair #{view.rank}'
        f" &middot; {method}</small></p>{''.join(badges)}<dl>"
        f"<dt>A</dt><dd>{escape(view.split_a)} / <code>{escape(view.path_a)}</code></dd>"
        f"<dt>label A</dt><dd>{escape(view.label_a) or '&mdash;'}</dd>"
        f"<dt>B</dt><dd>{escape(view.split_b)} / <code>{escape(view.path_b)}</code></dd>"
        f"<dt>label B</dt><dd>{escape(view.label_b) or '&mdash;'}</dd>"
        "</dl></div></div>\n"
    )


# -- the score histogram -----------------------------------------------------------------------

_BIN_WIDTHS = (0.005, 0.01, 0.02, 0.025, 0.05, 0.1)
_MAX_BINS = 40


def histogram_bins(low: float) -> np.ndarray:
    """Bin edges from ``low`` (rounded down to a bin edge) to 1, with at most 40 round bins."""
    low = max(-1.0, min(low, 0.99))
    width = next((w for w in _BIN_WIDTHS if (1.0 - low) / w <= _MAX_BINS), _BIN_WIDTHS[-1])
    start = math.floor(round(low / width, 9)) * width
    count = max(1, round((1.0 - start) / width))
    return np.linspace(1.0 - count * width, 1.0, count + 1)


def _ticks(low: float, high: float) -> list[float]:
    """Round tick values between ``low`` and ``high``: at most 9 of them."""
    step = next((s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5) if (high - low) / s <= 8), 0.5)
    first = math.ceil(round(low / step, 9))
    last = math.floor(round(high / step, 9))
    return [k * step for k in range(first, last + 1)]


def histogram_svg(
    scores: np.ndarray, *, threshold: float, low: float, width: int = 640, height: int = 240
) -> str:
    """An inline SVG histogram of ``scores`` with the threshold as a dashed line.

    Bars at or above the threshold are red. Numbers only, so nothing needs escaping.
    """
    edges = histogram_bins(low)
    counts, _ = np.histogram(np.clip(scores, edges[0], 1.0), bins=edges)
    left, right, top, bottom = 44, 16, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    tallest = max(int(counts.max()) if len(counts) else 0, 1)

    def x_of(value: float) -> float:
        return left + (value - edges[0]) / (edges[-1] - edges[0]) * plot_w

    parts = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Histogram of best cross-split SSIM per image">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    for count, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True):
        bar_h = count / tallest * plot_h
        colour = "#d92d20" if (lo + hi) / 2 >= threshold else "#98a2b3"
        x0, x1 = x_of(lo), x_of(hi)
        parts.append(
            f'<rect x="{x0 + 1:.1f}" y="{top + plot_h - bar_h:.1f}" width="{max(x1 - x0 - 2, 1):.1f}" '
            f'height="{bar_h:.1f}" fill="{colour}"><title>{lo:.3f}–{hi:.3f}: {int(count)} '
            "image(s)</title></rect>"
        )
    axis_y = top + plot_h
    parts.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#1d2733"/>'
    )
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="#1d2733"/>')
    for value in (0, tallest):
        y = axis_y - value / tallest * plot_h
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    for tick in _ticks(edges[0], edges[-1]):
        parts.append(
            f'<text x="{x_of(tick):.1f}" y="{axis_y + 16}" text-anchor="middle">{tick:.2f}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">'
        "best cross-split SSIM of each image</text>"
    )
    if edges[0] <= threshold <= edges[-1]:
        x = x_of(threshold)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{axis_y}" stroke="#1d2733" '
            'stroke-width="2" stroke-dasharray="5,3"/>'
        )
        anchor = "end" if x > left + plot_w * 0.8 else "start"
        offset = -4 if anchor == "end" else 4
        parts.append(
            f'<text x="{x + offset:.1f}" y="{top - 8}" text-anchor="{anchor}">'
            f"threshold {threshold:g}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
