"""Decode image files into float arrays, and float arrays into canonical uint8 arrays.

Decoding (:func:`read_image`) follows the "Reading images" contract of ``docs/product.md``: files
are decoded by content with Pillow, EXIF orientation is applied, animated and multi-page files use
their first frame, alpha and palette transparency are composited over white, 16-bit samples are
divided by 65535, 32-bit integer and float samples are scaled by their own minimum and maximum, and
grayscale is scikit-image's luminance (``rgb2gray`` weights) of the float RGB values. Every failure
to decode a file is an :class:`ImageReadError` whose message is a short reason without the path.

Canonical arrays (:func:`to_canonical`) are what leakcheck compares: uint8, channel first,
``(C, H, W)``, resized to ``size x size`` (aspect not kept) and quantised with ``round(x * 255)``.

Resizing: Pillow's LANCZOS resampling of each channel as a float32 ``"F"`` image, with
``reducing_gap=3`` (an exact integer box reduction first while the image stays at least three
times the target size). Pillow widens the filter support by the scale factor, so downscaling is
anti-aliased, and the result is deterministic. Measured on one 512x512 photo (astronaut, 2 vCPU),
resizing to 64x64, gray / rgb: ``skimage.transform.resize(anti_aliasing=True)`` 11.1 / 34.2 ms;
Pillow LANCZOS (chosen) 1.6 / 6.2 ms; Pillow BOX 0.4 / 1.6 ms. BOX aliases at non-integer factors
(a one-pixel checkerboard 256 -> 100 ripples by +-14 grey levels; LANCZOS +-2), so LANCZOS it is.
On a 4000x3000 photo the reducing gap takes the resize from 72 ms to 7 ms.

:func:`load_canonical` is ``to_canonical(read_image(...))`` with two shortcuts for large files when a
size is given: JPEGs are decoded with DCT scaling (``Image.draft``) and 8-bit L/RGB images are
box-reduced (``Image.reduce``) before the float conversion, both only down to three times the
target size, and the final resize starts from the exact box the image covers (through every EXIF
orientation), as Pillow's own ``thumbnail`` does. Both are deterministic and anti-aliased; the
canonical array differs from the unshortened path by under one grey level on average (at most a
few). Whole file to 64x64 gray: a 512x512 JPEG 3.0 ms (15.3 ms with skimage's resize), a 512x512
PNG 12.3 ms (PNG decoding dominates), a 4000x3000 JPEG 19 ms instead of 315 ms.
"""

from __future__ import annotations

import contextlib
import re
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import ExifTags, Image, ImageOps

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "canonical_to_float",
    "load_canonical",
    "read_image",
    "to_canonical",
]

#: File extensions (lower case, with the dot) that leakcheck audits.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)

#: Pillow's decompression-bomb limit when this module was imported (89,478,485 pixels).
DEFAULT_MAX_PIXELS: int | None = Image.MAX_IMAGE_PIXELS

#: scikit-image's ``rgb2gray`` weights (ITU-R BT.709 luma), applied to float RGB in [0, 1].
LUMINANCE_WEIGHTS: tuple[float, float, float] = (0.2125, 0.7154, 0.0721)

#: The SSIM window (up to 11x11 for the Gaussian one) must fit in a canonical image.
MIN_CANONICAL_SIZE = 11

_COLOR_MODES = ("gray", "rgb")
_REDUCING_GAP = 3
_REASON_MAX_CHARS = 200


class ImageReadError(Exception):
    """A file could not be decoded into an image.

    ``str(error)`` is a short one-line reason without the path, for example
    ``"empty file (0 bytes)"`` or ``"not an image (cannot identify image file)"``.
    """


class _PillowPixelLimit:
    """Lifts Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` while at least one read needs it.

    Pillow has no per-call limit: ``Image.open``, TIFF loading, GIF frames and cropping all read the
    module global, and raise ``DecompressionBombError`` above twice its value. A user who passes a
    ``max_pixels`` above Pillow's default has asked for larger images, so only those reads lift the
    global, and they put it back in a ``finally``. Reads run in threads (the default joblib backend),
    so a counter under a lock makes the first reader save the value and the last one restore it;
    saving and restoring per call would race and could leave the limit lifted. Reads with the
    default limit never touch the global. While lifted, other Pillow users in this process are not
    protected by Pillow's check; ``read_image`` itself always checks ``max_pixels`` first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0
        self._saved: int | None = None

    @contextlib.contextmanager
    def lifted(self) -> Iterator[None]:
        with self._lock:
            if self._readers == 0:
                self._saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1
                if self._readers == 0:
                    Image.MAX_IMAGE_PIXELS = self._saved


_PILLOW_PIXEL_LIMIT = _PillowPixelLimit()


def read_image(
    path: Path | str,
    *,
    color: str = "gray",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file into a float64 array in [0, 1].

    Parameters
    ----------
    path : Path or str
        The file. Its content decides the format, not its extension.
    color : {"gray", "rgb"}, optional
        ``"gray"`` gives luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (scikit-image's
        ``rgb2gray``); ``"rgb"`` gives three channels (a gray image is replicated).
    max_pixels : int or None, optional
        Refuse images with more than this many pixels (width x height, read from the header
        before any pixel is decoded). Defaults to Pillow's ``Image.MAX_IMAGE_PIXELS``; ``None``
        means no limit.

    Returns
    -------
    image : ndarray of float64
        Shape ``(H, W)`` for ``color="gray"``, ``(H, W, 3)`` for ``color="rgb"``.

    Raises
    ------
    ImageReadError
        The file is empty, not an image, truncated, corrupt, unreadable or too large.
    ValueError
        ``color`` or ``max_pixels`` is invalid.

    Examples
    --------
    >>> from leakcheck.images import read_image
    >>> image = read_image("photo.jpg", color="rgb")  # doctest: +SKIP
    >>> image.shape, image.dtype  # doctest: +SKIP
    ((480, 640, 3), dtype('float64'))
    """
    _check_color(color)
    _check_max_pixels(max_pixels)
    image, _ = _read(Path(path), color=color, max_pixels=max_pixels, target_size=None)
    return image


def to_canonical(image: np.ndarray, size: int | None) -> np.ndarray:
    """Resize a float image and quantise it to leakcheck's canonical uint8 array.

    Parameters
    ----------
    image : ndarray of float
        Values in [0, 1], shape ``(H, W)`` or ``(H, W, 3)``, as returned by :func:`read_image`.
    size : int or None
        Side of the square result in pixels (>= 11; the aspect ratio is not kept), or ``None`` to
        keep the native size. Downscaling is anti-aliased (Pillow LANCZOS, see the module notes).

    Returns
    -------
    canonical : ndarray of uint8
        C-contiguous, channel first: ``(1, H, W)`` for a gray image, ``(3, H, W)`` for RGB, with
        ``H = W = size`` unless ``size`` is ``None``. Values are ``round(x * 255)``.

    Examples
    --------
    >>> import numpy as np
    >>> to_canonical(np.full((40, 30), 0.5), 16).shape
    (1, 16, 16)
    """
    _check_float_image(image)
    _check_size(size)
    return _to_canonical(image, size, box=None)


def load_canonical(
    path: Path | str,
    *,
    size: int | None,
    color: str = "gray",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode a file straight into its canonical array.

    The same as ``to_canonical(read_image(path, color=color, max_pixels=max_pixels), size)``,
    except that large JPEGs and 8-bit images are first reduced in Pillow to no less than three
    times ``size`` (see the module notes), which is much faster for photos.

    Parameters
    ----------
    path : Path or str
        The image file.
    size : int or None
        Side of the square canonical image (>= 11), or ``None`` for the native size.
    color : {"gray", "rgb"}, optional
        Colour mode, as in :func:`read_image`.
    max_pixels : int or None, optional
        Pixel limit, as in :func:`read_image`.

    Returns
    -------
    canonical : ndarray of uint8
        Shape ``(C, H, W)``, as in :func:`to_canonical`.

    Raises
    ------
    ImageReadError
        The file cannot be decoded (see :func:`read_image`).
    """
    _check_color(color)
    _check_max_pixels(max_pixels)
    _check_size(size)
    image, box = _read(Path(path), color=color, max_pixels=max_pixels, target_size=size)
    return _to_canonical(image, size, box=box)


def canonical_to_float(canonical: np.ndarray) -> np.ndarray:
    """Turn a canonical array into the float image that SSIM is computed on.

    This is exactly what is passed to ``skimage.metrics.structural_similarity(...,
    data_range=1.0)`` (with ``channel_axis=-1`` for RGB) when leakcheck's SSIM is checked.

    Parameters
    ----------
    canonical : ndarray of uint8
        Shape ``(1, H, W)`` or ``(3, H, W)``.

    Returns
    -------
    image : ndarray of float64
        ``canonical / 255``, shape ``(H, W)`` for one channel, ``(H, W, 3)`` for three.
    """
    if not isinstance(canonical, np.ndarray) or canonical.dtype != np.uint8:
        raise TypeError(f"canonical must be a uint8 ndarray, got {_describe(canonical)}")
    if canonical.ndim != 3 or canonical.shape[0] not in (1, 3):
        raise ValueError(
            f"canonical must have shape (1, H, W) or (3, H, W), got shape {canonical.shape}"
        )
    channels_last = canonical[0] if canonical.shape[0] == 1 else np.moveaxis(canonical, 0, -1)
    return np.ascontiguousarray(channels_last, dtype=np.float64) / 255.0


# --- argument checks -------------------------------------------------------------------------


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray of dtype {value.dtype} and shape {value.shape}"
    return type(value).__name__


def _check_color(color: str) -> None:
    if color not in _COLOR_MODES:
        raise ValueError(f"color must be one of {_COLOR_MODES}, got {color!r}")


def _check_max_pixels(max_pixels: int | None) -> None:
    if max_pixels is None:
        return
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels}")


def _check_size(size: int | None) -> None:
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ValueError(f"size must be an integer >= {MIN_CANONICAL_SIZE} or None, got {size!r}")
    if size < MIN_CANONICAL_SIZE:
        raise ValueError(
            f"size must be >= {MIN_CANONICAL_SIZE} so that the SSIM window fits, got {size}"
        )


def _check_float_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or not np.issubdtype(image.dtype, np.floating):
        raise TypeError(
            f"image must be a float ndarray in [0, 1] (as read_image returns), "
            f"got {_describe(image)}"
        )
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise ValueError(f"image must have shape (H, W) or (H, W, 3), got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image is empty, shape {image.shape}")
    low, high = image.min(), image.max()
    # Written so that NaN fails too.
    if not (low >= 0.0 and high <= 1.0):
        raise ValueError(f"image values must be finite and in [0, 1], got [{low}, {high}]")


# --- decoding --------------------------------------------------------------------------------


# A region (left, upper, right, lower) of a pixel grid, in pixels, as Pillow's resize takes it.
_Box = tuple[float, float, float, float]


class _Frame(NamedTuple):
    pixels: np.ndarray  # as numpy gets them from Pillow: uint8, uint16, int32 or float32
    mode: str  # L, LA, RGB, RGBA, I;16*, I or F
    bits: int | None  # unsigned bits per sample stored in the file, when it says so
    box: _Box | None  # where the whole image lies in ``pixels`` after a reduction, else None


def _read(
    path: Path, *, color: str, max_pixels: int | None, target_size: int | None
) -> tuple[np.ndarray, _Box | None]:
    """The float image, and the box to resize from when it was already reduced for a size."""
    needs_lift = max_pixels is None or (
        DEFAULT_MAX_PIXELS is not None and max_pixels > DEFAULT_MAX_PIXELS
    )
    lift = _PILLOW_PIXEL_LIMIT.lifted() if needs_lift else contextlib.nullcontext()
    with lift:
        frame = _decode_first_frame(path, max_pixels, target_size)
    values, alpha = _to_float(frame.pixels, frame.mode, frame.bits)
    if alpha is not None:
        # Over white: c * a + 1 * (1 - a).
        weight = alpha[..., np.newaxis] if values.ndim == 3 else alpha
        values = values * weight + (1.0 - weight)
    if color == "gray" and values.ndim == 3:
        values = values @ np.asarray(LUMINANCE_WEIGHTS, dtype=np.float64)
    elif color == "rgb" and values.ndim == 2:
        values = np.stack([values, values, values], axis=-1)
    # Compositing and the weights' sum can overshoot 1 by an ulp.
    return np.clip(values, 0.0, 1.0, out=values), frame.box


def _decode_first_frame(path: Path, max_pixels: int | None, target_size: int | None) -> _Frame:
    """The oriented first frame; reduced towards ``target_size`` when one is given."""
    try:
        with open(path, "rb") as file:
            header = file.read(32)
            if not header:
                raise ImageReadError("empty file (0 bytes)")
            file.seek(0)
            image = Image.open(file)
            _check_pixel_count(image.size, max_pixels)
            bits = _unsigned_bits_per_sample(image, header)
            box: _Box | None = None
            if target_size is not None:
                # JPEG only (None elsewhere): DCT scaling, never below the reducing gap. The
                # scaled grid rounds its size up, so the box says where the image really ends.
                side = _REDUCING_GAP * target_size
                drafted = image.draft(image.mode, (side, side))
                box = drafted[1] if drafted is not None else None
            image.load()
            orientation = _exif_orientation(image)
            if orientation != 1:
                stored_size = image.size
                ImageOps.exif_transpose(image, in_place=True)
                if box is not None:
                    box = _oriented_box(box, orientation, stored_size)
            image = _normalise_mode(image)
            if target_size is not None:
                image, box = _reduce(image, box, target_size)
            # Copy the pixels out while the file is still open.
            return _Frame(np.asarray(image), image.mode, bits, box)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageReadError(_bomb_reason(error, max_pixels)) from error
    except Image.UnidentifiedImageError as error:
        raise ImageReadError("not an image (cannot identify image file)") from error
    except MemoryError as error:
        raise ImageReadError("not enough memory to decode the image") from error
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise ImageReadError(f"cannot read file ({error.strerror})") from error
    except (
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        struct.error,
        IndexError,
        KeyError,
        TypeError,
        ZeroDivisionError,
        OverflowError,
    ) as error:
        raise ImageReadError(
            f"truncated or corrupt image data ({_one_line(error, path)})"
        ) from error
    except Exception as error:
        # A corrupt file can reach any code path in Pillow's plugins; the contract is that one bad
        # file is reported, never that it stops an audit of thousands.
        reason = _one_line(error, path)
        raise ImageReadError(f"cannot decode image ({type(error).__name__}: {reason})") from error


def _check_pixel_count(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            f"image too large: {width}x{height} = {width * height:,} pixels "
            f"> max_pixels {max_pixels:,}"
        )


def _bomb_reason(error: Exception, max_pixels: int | None) -> str:
    # Pillow refuses more than twice its own limit inside Image.open, before the size is known
    # to us, so the pixel count comes from its message.
    match = re.search(r"\((\d+) pixels\)", str(error))
    if match and max_pixels is not None and int(match.group(1)) > max_pixels:
        return f"image too large: {int(match.group(1)):,} pixels > max_pixels {max_pixels:,}"
    return f"image too large for Pillow's decompression-bomb limit ({_one_line(error, None)})"


def _one_line(error: BaseException, path: Path | None) -> str:
    reason = " ".join(str(error).split()) or type(error).__name__
    if path is not None:
        reason = reason.replace(str(path), "<file>")
    if len(reason) > _REASON_MAX_CHARS:
        reason = reason[: _REASON_MAX_CHARS - 3] + "..."
    return reason


def _unsigned_bits_per_sample(image: Image.Image, header: bytes) -> int | None:
    """Bits per sample stored in the file, when it says so and the samples are unsigned."""
    if image.format == "PNG" and header[12:16] == b"IHDR":
        # Signature (8), chunk length (4), "IHDR" (4), width (4), height (4), then bit depth.
        return header[24]
    if image.format == "TIFF":
        tags = image.tag_v2  # type: ignore[attr-defined]
        bits = tags.get(258)
        sample_format = tags.get(339, 1)
        if isinstance(bits, tuple):
            bits = bits[0] if bits else None
        if isinstance(sample_format, tuple):
            sample_format = sample_format[0] if sample_format else 1
        return int(bits) if bits is not None and sample_format == 1 else None
    return None


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Convert to one of L, LA, RGB, RGBA, I;16*, I or F, keeping alpha and transparency."""
    mode = image.mode
    has_transparency = image.info.get("transparency") is not None
    if mode in ("1", "L") and has_transparency:
        return image.convert("LA")
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        palette = image.palette
        palette_alpha = palette is not None and palette.mode == "RGBA"
        return image.convert("RGBA" if has_transparency or palette_alpha else "RGB")
    if mode == "RGB" and has_transparency:
        return image.convert("RGBA")
    if mode in ("PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    if mode in ("L", "LA", "RGB", "RGBA", "I", "F") or mode.startswith("I;16"):
        return image
    # CMYK (Pillow undoes Adobe's inversion), YCbCr, LAB, HSV, RGBX, ...
    return image.convert("RGB")


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 to 8); 1 when it is missing, invalid or unreadable."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, ValueError, SyntaxError, struct.error, KeyError, IndexError, TypeError):
        # Broken metadata is no reason to refuse pixels that decode.
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _oriented_box(box: _Box, orientation: int, stored_size: tuple[int, int]) -> _Box:
    """Where ``box`` of the stored pixel grid lies after ``exif_transpose`` of that grid."""
    left, upper, right, lower = box
    width, height = stored_size
    return {
        2: (width - right, upper, width - left, lower),  # mirrored left-right
        3: (width - right, height - lower, width - left, height - upper),  # rotated 180
        4: (left, height - lower, right, height - upper),  # mirrored top-bottom
        5: (upper, left, lower, right),  # transposed
        6: (height - lower, left, height - upper, right),  # rotated 90 clockwise
        7: (height - lower, width - right, height - upper, width - left),  # transversed
        8: (upper, width - right, lower, width - left),  # rotated 90 counter-clockwise
    }.get(orientation, box)


def _reduce(
    image: Image.Image, box: _Box | None, target_size: int
) -> tuple[Image.Image, _Box | None]:
    """Box-reduce an 8-bit image by whole factors, as Pillow's ``reducing_gap`` would."""
    # Only 8-bit modes without alpha: averaging before compositing would weigh the colours of
    # transparent pixels, and high-bit-depth modes must keep their precision.
    if image.mode not in ("L", "RGB"):
        return image, box
    left, upper, right, lower = box if box is not None else (0.0, 0.0, *image.size)
    factor_x = max(1, int((right - left) / target_size / _REDUCING_GAP))
    factor_y = max(1, int((lower - upper) / target_size / _REDUCING_GAP))
    if factor_x == factor_y == 1:
        return image, box
    # The reduced grid rounds its size up: the box keeps the exact geometry for the resize.
    reduced = image.reduce((factor_x, factor_y))
    return reduced, (left / factor_x, upper / factor_y, right / factor_x, lower / factor_y)


def _to_float(
    pixels: np.ndarray, mode: str, bits: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Float64 values in [0, 1] (2-D or RGB) and the alpha channel, if any."""
    if mode in ("L", "RGB"):
        return pixels / 255.0, None
    if mode == "LA":
        return pixels[..., 0] / 255.0, pixels[..., 1] / 255.0
    if mode == "RGBA":
        return pixels[..., :3] / 255.0, pixels[..., 3] / 255.0
    if mode.startswith("I;16") or (mode == "I" and bits == 16):
        return np.clip(pixels / 65535.0, 0.0, 1.0), None
    if mode in ("I", "F"):
        return _scale_by_range(pixels), None
    raise ImageReadError(f"unsupported image mode {mode!r}")


def _scale_by_range(pixels: np.ndarray) -> np.ndarray:
    """Map the finite minimum to 0 and maximum to 1; a constant image becomes all zeros."""
    values = pixels.astype(np.float64)
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    if not all_finite and not finite.any():
        return np.zeros_like(values)
    finite_values = values if all_finite else values[finite]
    low, high = finite_values.min(), finite_values.max()
    if high <= low:
        return np.zeros_like(values)
    scaled = (values - low) / (high - low)
    if not all_finite:
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


# --- resizing --------------------------------------------------------------------------------


def _to_canonical(image: np.ndarray, size: int | None, box: _Box | None) -> np.ndarray:
    channels = image[..., np.newaxis] if image.ndim == 2 else image
    if size is None:
        planes = np.moveaxis(channels, -1, 0)
    else:
        planes = np.stack(
            [_resize_plane(channels[..., c], size, box) for c in range(channels.shape[-1])]
        )
    quantised = np.round(np.clip(planes, 0.0, 1.0) * 255.0)
    return np.ascontiguousarray(quantised, dtype=np.uint8)


def _resize_plane(plane: np.ndarray, size: int, box: _Box | None) -> np.ndarray:
    """Anti-aliased resize of ``box`` of one channel to ``size x size`` (see the module notes)."""
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    resized = image.resize(
        (size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=float(_REDUCING_GAP)
    )
    return np.asarray(resized, dtype=np.float64)
