"""Write real image files, odd but valid or broken, from one uint8 RGB array.

Used by the tests of ``leakcheck.images`` and by end-to-end tests of the whole tool::

    from image_factory import VALID_KINDS, sample_rgb, write_variant

    path = write_variant("exif_rotated_jpeg", sample_rgb(), tmp_path / "photo")

Every valid kind decodes (with leakcheck's rules) to an image close to ``rgb`` itself, except
``float_tiff``, whose values are scaled by their own minimum and maximum when read. The file's
suffix is chosen by the kind (``write_variant`` replaces the suffix of ``path``), and the path
actually written is returned.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

#: Odd-but-valid files: each decodes to (nearly) the input image.
VALID_KINDS: tuple[str, ...] = (
    "png",
    "jpeg",
    "cmyk_jpeg",
    "png16",
    "palette_png",
    "la_png",
    "rgba_png",
    "exif_rotated_jpeg",
    "animated_gif",
    "multipage_tiff",
    "bmp",
    "webp",
    "float_tiff",
    "png_named_jpg",
)

#: Files that must be refused with ``ImageReadError``.
BROKEN_KINDS: tuple[str, ...] = (
    "zero_byte",
    "truncated_png",
    "truncated_jpeg",
    "random_bytes_png",
    "text_named_jpg",
)

VARIANT_KINDS: tuple[str, ...] = VALID_KINDS + BROKEN_KINDS

#: The suffix each kind is written with.
SUFFIXES: dict[str, str] = {
    "png": ".png",
    "jpeg": ".jpg",
    "cmyk_jpeg": ".jpg",
    "png16": ".png",
    "palette_png": ".png",
    "la_png": ".png",
    "rgba_png": ".png",
    "exif_rotated_jpeg": ".jpeg",
    "animated_gif": ".gif",
    "multipage_tiff": ".tif",
    "bmp": ".bmp",
    "webp": ".webp",
    "float_tiff": ".tiff",
    "png_named_jpg": ".jpg",
    "zero_byte": ".png",
    "truncated_png": ".png",
    "truncated_jpeg": ".jpg",
    "random_bytes_png": ".png",
    "text_named_jpg": ".jpg",
}

_EXIF_ORIENTATION = 0x0112
# Orientation 6: the viewer rotates the stored pixels 90 degrees clockwise to display them.
_ROTATE_CLOCKWISE = 6
_JPEG_QUALITY = 95


def sample_rgb(height: int = 96, width: int = 128, offset: int = 0) -> np.ndarray:
    """A non-square uint8 RGB crop of ``skimage.data.astronaut()`` (512x512).

    ``offset`` shifts the crop diagonally, so different offsets give different images.
    """
    from skimage import data

    photo = data.astronaut()
    top, left = 100 + offset, 150 + offset
    if top + height > photo.shape[0] or left + width > photo.shape[1]:
        raise ValueError(f"crop {height}x{width} at offset {offset} does not fit in 512x512")
    return np.ascontiguousarray(photo[top : top + height, left : left + width])


def luminance(rgb: np.ndarray) -> np.ndarray:
    """scikit-image's ``rgb2gray`` of a uint8 RGB array, float64 in [0, 1]."""
    return (rgb / 255.0) @ np.array([0.2125, 0.7154, 0.0721])


def write_variant(kind: str, rgb: np.ndarray, path: Path) -> Path:
    """Write ``rgb`` (uint8, shape (H, W, 3)) as a file of the given kind.

    Parameters
    ----------
    kind : str
        One of :data:`VARIANT_KINDS`.
    rgb : ndarray of uint8
        The image, shape ``(H, W, 3)``.
    path : Path
        Where to write; its suffix is replaced by ``SUFFIXES[kind]``. Parent folders are created.

    Returns
    -------
    Path
        The file written.
    """
    if kind not in SUFFIXES:
        raise ValueError(f"unknown kind {kind!r}; choose from {VARIANT_KINDS}")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
    path = Path(path)
    path = path.with_name(path.name.removesuffix(path.suffix) + SUFFIXES[kind])
    path.parent.mkdir(parents=True, exist_ok=True)
    _WRITERS[kind](rgb, path)
    return path


def write_large_bilevel_png(path: Path, width: int, height: int) -> Path:
    """Write a 1-bit PNG, left half black and right half white, that is tiny on disk.

    For pixel-limit tests: a 13500x13300 file (about twice Pillow's decompression-bomb limit) is a
    few tens of kilobytes and is written in a fraction of a second, because the rows are encoded
    here directly (Pillow would first build the whole image in memory).
    """
    if width < 2 or height < 1:
        raise ValueError(f"need width >= 2 and height >= 1, got {width}x{height}")
    bits = np.zeros(width, dtype=np.uint8)
    bits[width // 2 :] = 1
    row = b"\x00" + np.packbits(bits).tobytes()  # filter type 0 ("None"), then the packed bits
    compressor = zlib.compressobj(9)
    pixel_data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixel_data)
        + _png_chunk(b"IEND", b"")
    )
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _image(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb)


def _write_png(rgb: np.ndarray, path: Path) -> None:
    _image(rgb).save(path, format="PNG")


def _write_jpeg(rgb: np.ndarray, path: Path) -> None:
    _image(rgb).save(path, format="JPEG", quality=_JPEG_QUALITY)


def _write_cmyk_jpeg(rgb: np.ndarray, path: Path) -> None:
    _image(rgb).convert("CMYK").save(path, format="JPEG", quality=_JPEG_QUALITY)


def _write_png16(rgb: np.ndarray, path: Path) -> None:
    # 16-bit grayscale: the 8-bit luminance times 257, so that /65535 gives back luminance/255.
    gray16 = np.round(luminance(rgb) * 255.0).astype(np.uint16) * 257
    Image.fromarray(gray16).save(path, format="PNG")  # mode I;16, PNG bit depth 16


def _write_palette_png(rgb: np.ndarray, path: Path) -> None:
    # 255 colours from the image, plus one transparent palette entry no pixel uses: the file has
    # palette transparency (tRNS) without changing what is seen.
    palette_image = _image(rgb).quantize(colors=255, dither=Image.Dither.NONE)
    palette = palette_image.getpalette() or []
    palette = (palette + [0] * 768)[:768]
    palette[255 * 3 : 256 * 3] = [255, 0, 255]
    palette_image.putpalette(palette)
    palette_image.save(path, format="PNG", transparency=255)


def _write_la_png(rgb: np.ndarray, path: Path) -> None:
    gray = np.round(luminance(rgb) * 255.0).astype(np.uint8)
    alpha = np.full_like(gray, 255)
    Image.fromarray(np.stack([gray, alpha], axis=-1)).save(path, format="PNG")  # mode LA


def _write_rgba_png(rgb: np.ndarray, path: Path) -> None:
    alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1)).save(path, format="PNG")  # RGBA


def _write_exif_rotated_jpeg(rgb: np.ndarray, path: Path) -> None:
    # Stored rotated 90 degrees counter-clockwise; orientation 6 tells viewers (and
    # ImageOps.exif_transpose) to rotate it back clockwise.
    stored = _image(np.ascontiguousarray(np.rot90(rgb, k=1)))
    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = _ROTATE_CLOCKWISE
    stored.save(path, format="JPEG", quality=_JPEG_QUALITY, exif=exif)


def _second_frame(rgb: np.ndarray) -> Image.Image:
    # Clearly different from the first frame: the negative, flipped.
    return _image(np.ascontiguousarray(255 - rgb[::-1]))


def _write_animated_gif(rgb: np.ndarray, path: Path) -> None:
    _image(rgb).save(
        path,
        format="GIF",
        save_all=True,
        append_images=[_second_frame(rgb)],
        duration=100,
        loop=0,
    )


def _write_multipage_tiff(rgb: np.ndarray, path: Path) -> None:
    _image(rgb).save(path, format="TIFF", save_all=True, append_images=[_second_frame(rgb)])


def _write_bmp(rgb: np.ndarray, path: Path) -> None:
    _image(rgb).save(path, format="BMP")


def _write_webp(rgb: np.ndarray, path: Path) -> None:
    _image(rgb).save(path, format="WEBP", quality=95)


def _write_float_tiff(rgb: np.ndarray, path: Path) -> None:
    # Luminance in arbitrary float units (offset and scaled): readers scale by min and max.
    values = (luminance(rgb) * 1000.0 - 250.0).astype(np.float32)
    Image.fromarray(values).save(path, format="TIFF")  # mode F


def _write_zero_byte(rgb: np.ndarray, path: Path) -> None:
    path.write_bytes(b"")


def _encoded(rgb: np.ndarray, format: str) -> bytes:
    buffer = io.BytesIO()
    _image(rgb).save(buffer, format=format)
    return buffer.getvalue()


def _write_truncated_png(rgb: np.ndarray, path: Path) -> None:
    data = _encoded(rgb, "PNG")
    path.write_bytes(data[: len(data) // 2])


def _write_truncated_jpeg(rgb: np.ndarray, path: Path) -> None:
    data = _encoded(rgb, "JPEG")
    path.write_bytes(data[: len(data) // 2])


def _write_random_bytes_png(rgb: np.ndarray, path: Path) -> None:
    # Seeded from the image, so the same input always gives the same file. The fixed prefix keeps
    # the bytes from ever starting like a format with a weak signature (TGA, for one).
    seed = int(rgb.sum()) % (2**32)
    noise = np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path.write_bytes(b"not an image\n" + noise)


def _write_text_named_jpg(rgb: np.ndarray, path: Path) -> None:
    path.write_text("This is a text file, not a JPEG." + os.linesep, encoding="utf-8")


_WRITERS = {
    "png": _write_png,
    "jpeg": _write_jpeg,
    "cmyk_jpeg": _write_cmyk_jpeg,
    "png16": _write_png16,
    "palette_png": _write_palette_png,
    "la_png": _write_la_png,
    "rgba_png": _write_rgba_png,
    "exif_rotated_jpeg": _write_exif_rotated_jpeg,
    "animated_gif": _write_animated_gif,
    "multipage_tiff": _write_multipage_tiff,
    "bmp": _write_bmp,
    "webp": _write_webp,
    "float_tiff": _write_float_tiff,
    "png_named_jpg": _write_png,
    "zero_byte": _write_zero_byte,
    "truncated_png": _write_truncated_png,
    "truncated_jpeg": _write_truncated_jpeg,
    "random_bytes_png": _write_random_bytes_png,
    "text_named_jpg": _write_text_named_jpg,
}
