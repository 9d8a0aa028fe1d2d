"""Decoding real image files and building canonical arrays (``leakcheck.images``).

Every test writes real files with Pillow into ``tmp_path`` and reads them back with leakcheck.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from image_factory import (
    BROKEN_KINDS,
    VALID_KINDS,
    luminance,
    sample_rgb,
    write_large_bilevel_png,
    write_variant,
)
from PIL import Image
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from leakcheck.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageReadError,
    canonical_to_float,
    load_canonical,
    read_image,
    to_canonical,
)

# Kinds stored as a single gray channel: in RGB they read as the luminance replicated.
GRAY_KINDS = {"png16", "la_png", "float_tiff"}
# Lossy kinds (JPEG, WebP, the 256-colour GIF and palette) stay within this mean difference; a
# wrong orientation, scaling, compositing or frame is off by 0.05 to 0.5.
MEAN_ABS_TOLERANCE = 0.012


@pytest.fixture(scope="module")
def reference_rgb() -> np.ndarray:
    """A non-square photo crop squeezed into grey levels 50..203.

    Non-square, so an unrotated EXIF image has the wrong shape; not spanning 0..255, so an image
    wrongly scaled by its own minimum and maximum comes out visibly different.
    """
    rgb = sample_rgb(96, 128)
    return np.round(rgb * 0.6 + 50).astype(np.uint8)


def expected_gray(kind: str, rgb: np.ndarray) -> np.ndarray:
    gray = luminance(rgb)
    if kind == "float_tiff":
        return (gray - gray.min()) / (gray.max() - gray.min())
    return gray


def expected_rgb(kind: str, rgb: np.ndarray) -> np.ndarray:
    if kind in GRAY_KINDS:
        return np.repeat(expected_gray(kind, rgb)[..., np.newaxis], 3, axis=-1)
    return rgb / 255.0


def test_image_extensions_are_lower_case_with_dot() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"} == IMAGE_EXTENSIONS


# --- odd but valid files ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", VALID_KINDS)
def test_valid_kind_reads_close_to_the_image_in_gray(
    kind: str, reference_rgb: np.ndarray, tmp_path: Path
) -> None:
    path = write_variant(kind, reference_rgb, tmp_path / "image")
    image = read_image(path)
    expected = expected_gray(kind, reference_rgb)
    assert image.dtype == np.float64
    assert image.shape == expected.shape
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert np.abs(image - expected).mean() < MEAN_ABS_TOLERANCE


@pytest.mark.parametrize("kind", VALID_KINDS)
def test_valid_kind_reads_close_to_the_image_in_rgb(
    kind: str, reference_rgb: np.ndarray, tmp_path: Path
) -> None:
    path = write_variant(kind, reference_rgb, tmp_path / "image")
    image = read_image(path, color="rgb")
    expected = expected_rgb(kind, reference_rgb)
    assert image.dtype == np.float64
    assert image.shape == expected.shape
    assert np.abs(image - expected).mean() < 2 * MEAN_ABS_TOLERANCE


# a float TIFF is scaled by its own range, so it is brighter than the PNG by design (its own
# test below checks that scaling)
@pytest.mark.parametrize("kind", [kind for kind in VALID_KINDS if kind != "float_tiff"])
def test_valid_kind_canonical_is_a_near_twin_of_the_plain_png(
    kind: str, reference_rgb: np.ndarray, tmp_path: Path
) -> None:
    plain = load_canonical(write_variant("png", reference_rgb, tmp_path / "plain"), size=64)
    variant = load_canonical(write_variant(kind, reference_rgb, tmp_path / "variant"), size=64)
    ssim = structural_similarity(
        canonical_to_float(plain), canonical_to_float(variant), data_range=1.0
    )
    assert ssim > 0.95


def test_exif_orientation_is_applied(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("exif_rotated_jpeg", reference_rgb, tmp_path / "rotated")
    with Image.open(path) as stored:
        assert stored.size == (96, 128)  # stored rotated: width and height swapped
    image = read_image(path)
    assert image.shape == (96, 128)
    assert np.abs(image - luminance(reference_rgb)).mean() < MEAN_ABS_TOLERANCE


def test_broken_exif_does_not_refuse_the_pixels(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    for number, exif in enumerate(
        [b"Exif\x00\x00garbage", b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x05"]
    ):
        path = tmp_path / f"broken_exif_{number}.jpg"
        Image.fromarray(reference_rgb).save(path, quality=95, exif=exif)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about the corrupt EXIF block
            image = read_image(path)
        assert np.abs(image - luminance(reference_rgb)).mean() < MEAN_ABS_TOLERANCE


def test_animated_and_multipage_files_use_the_first_frame(
    reference_rgb: np.ndarray, tmp_path: Path
) -> None:
    negative_flipped = luminance(255 - reference_rgb[::-1])
    for kind in ("animated_gif", "multipage_tiff"):
        path = write_variant(kind, reference_rgb, tmp_path / kind)
        with Image.open(path) as stored:
            assert stored.n_frames == 2
        image = read_image(path)
        assert np.abs(image - luminance(reference_rgb)).mean() < MEAN_ABS_TOLERANCE
        assert np.abs(image - negative_flipped).mean() > 0.1


def test_png_content_with_jpg_name_is_decoded(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("png_named_jpg", reference_rgb, tmp_path / "photo")
    assert path.suffix == ".jpg"
    np.testing.assert_array_equal(read_image(path, color="rgb"), reference_rgb / 255.0)


# --- modes and scaling -----------------------------------------------------------------------


def test_gray_is_skimage_luminance_of_float_rgb(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("png", reference_rgb, tmp_path / "plain")
    np.testing.assert_allclose(
        read_image(path), rgb2gray(reference_rgb / 255.0), rtol=0, atol=1e-12
    )


def test_gray_weights_of_pure_primaries(tmp_path: Path) -> None:
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    Image.fromarray(primaries).save(tmp_path / "primaries.png")
    gray = read_image(tmp_path / "primaries.png")
    np.testing.assert_allclose(gray[0], [0.2125, 0.7154, 0.0721, 1.0], atol=1e-12)


def test_16_bit_png_is_divided_by_65535_not_by_its_range(tmp_path: Path) -> None:
    values = np.array([[1000, 20000], [30000, 40000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as stored:
        assert stored.mode.startswith("I")
    np.testing.assert_allclose(read_image(tmp_path / "deep.png"), values / 65535.0, atol=1e-12)


def test_constant_16_bit_png_keeps_its_level(tmp_path: Path) -> None:
    Image.fromarray(np.full((20, 20), 128 * 257, dtype=np.uint16)).save(tmp_path / "flat.png")
    np.testing.assert_allclose(read_image(tmp_path / "flat.png"), 128 / 255.0, atol=1e-12)


def test_16_bit_tiff_is_divided_by_65535(tmp_path: Path) -> None:
    values = np.array([[0, 1000], [30000, 50000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.tif")
    np.testing.assert_allclose(read_image(tmp_path / "deep.tif"), values / 65535.0, atol=1e-12)


def test_32_bit_integer_tiff_is_scaled_by_its_range(tmp_path: Path) -> None:
    values = np.array([[1000, 2000], [3000, 5000]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "int.tif")
    with Image.open(tmp_path / "int.tif") as stored:
        assert stored.mode == "I"
    np.testing.assert_allclose(read_image(tmp_path / "int.tif"), [[0, 0.25], [0.5, 1.0]])


def test_float_tiff_is_scaled_by_its_range_and_constant_gives_zeros(tmp_path: Path) -> None:
    values = np.array([[-2.0, 0.0], [2.0, 6.0]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "float.tif")
    np.testing.assert_allclose(read_image(tmp_path / "float.tif"), [[0, 0.25], [0.5, 1.0]])
    Image.fromarray(np.full((8, 8), 3.5, np.float32)).save(tmp_path / "flat.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "flat.tif"), np.zeros((8, 8)))


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red 200, green and blue 0
    rgba[:, 0, 3] = 0  # transparent
    rgba[:, 1, 3] = 102  # 40 % opaque
    rgba[:, 2, 3] = 255  # opaque
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    image = read_image(tmp_path / "alpha.png", color="rgb")
    alpha = 102 / 255.0
    np.testing.assert_allclose(image[0, 0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(image[0, 1], [200 / 255 * alpha + 1 - alpha, 1 - alpha, 1 - alpha])
    np.testing.assert_allclose(image[0, 2], [200 / 255, 0.0, 0.0])


def test_la_is_composited_over_white(tmp_path: Path) -> None:
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[..., 0] = 30
    la[0, :, 1] = 0
    la[1, :, 1] = 255
    Image.fromarray(la).save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), [[1.0, 1.0], [30 / 255, 30 / 255]])


def test_palette_transparency_is_composited_over_white(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices).convert("P")
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.save(tmp_path / "palette.png", transparency=0)
    gray = read_image(tmp_path / "palette.png")
    dark = luminance(np.array([10, 20, 30], dtype=np.uint8))
    np.testing.assert_allclose(gray, [[1.0, dark], [dark, 1.0]])


def test_one_bit_and_cmyk_and_ycbcr_modes(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    bits = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    Image.fromarray(bits).convert("1").save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read_image(tmp_path / "bits.png"), bits / 255.0)
    for mode in ("CMYK", "YCbCr"):
        path = tmp_path / f"{mode}.tif"
        Image.fromarray(reference_rgb).convert(mode).save(path)
        rgb = read_image(path, color="rgb")
        assert np.abs(rgb - reference_rgb / 255.0).mean() < MEAN_ABS_TOLERANCE


# --- broken files ----------------------------------------------------------------------------

BROKEN_REASONS = {
    "zero_byte": "empty file (0 bytes)",
    "truncated_png": "truncated or corrupt image data",
    "truncated_jpeg": "truncated or corrupt image data",
    "random_bytes_png": "not an image",
    "text_named_jpg": "not an image",
}


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_broken_kind_raises_image_read_error_with_reason(
    kind: str, reference_rgb: np.ndarray, tmp_path: Path
) -> None:
    path = write_variant(kind, reference_rgb, tmp_path / "broken")
    for read in (read_image, lambda p: load_canonical(p, size=32)):
        with pytest.raises(ImageReadError) as caught:
            read(path)
        reason = str(caught.value)
        assert reason.startswith(BROKEN_REASONS[kind])
        assert "\n" not in reason
        assert str(path) not in reason and path.name not in reason


def test_missing_file_and_folder_raise_image_read_error(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="cannot read file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="cannot read file"):
        read_image(tmp_path)


# --- pixel limit -----------------------------------------------------------------------------


def test_max_pixels_refuses_from_the_header_before_decoding(
    reference_rgb: np.ndarray, tmp_path: Path
) -> None:
    # A 3000x3000 PNG cut right after its header: decoding it would fail as truncated, so the
    # "too large" answer proves that no pixel was decoded.
    big = np.tile(reference_rgb, (32, 24, 1))[:3000, :3000]
    path = tmp_path / "big.png"
    Image.fromarray(big).save(path)
    np.testing.assert_array_equal(read_image(path, max_pixels=9_000_000).shape, (3000, 3000))
    header_only = tmp_path / "header_only.png"
    header_only.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageReadError) as caught:
        read_image(header_only, max_pixels=1_000_000)
    assert str(caught.value) == (
        "image too large: 3000x3000 = 9,000,000 pixels > max_pixels 1,000,000"
    )
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(header_only, max_pixels=None)


def test_max_pixels_above_pillows_limit_decodes_without_touching_it(tmp_path: Path) -> None:
    # 179,550,000 pixels: more than twice Pillow's default, where Pillow itself raises.
    path = write_large_bilevel_png(tmp_path / "huge.png", 13_500, 13_300)
    assert path.stat().st_size < 200_000
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError, match=r"^image too large: 179,550,000 pixels > max_pixels"):
        load_canonical(path, size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        canonical = load_canonical(path, size=64, max_pixels=200_000_000)
    assert pillow_limit == Image.MAX_IMAGE_PIXELS
    assert canonical.shape == (1, 64, 64)
    assert canonical[0, :, :28].max() <= 2 and canonical[0, :, 36:].min() >= 253


def test_parallel_reads_restore_pillows_limit(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("png", reference_rgb, tmp_path / "plain")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    limits = [None, DEFAULT_MAX_PIXELS, 10**12] * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda limit: read_image(path, max_pixels=limit), limits))
    assert pillow_limit == Image.MAX_IMAGE_PIXELS
    assert all(np.array_equal(result, results[0]) for result in results)


@pytest.mark.parametrize("max_pixels", [0, -5, 1.5, True, "100"])
def test_invalid_max_pixels_is_a_value_error(max_pixels: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(tmp_path / "any.png", max_pixels=max_pixels)  # type: ignore[arg-type]


# --- file names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["фото 写真 ✓", "a,b, c", "comma,and 'quote'", "naïve café #1", "emoji 🐱 cat"]
)
def test_unicode_and_comma_file_names(name: str, reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("jpeg", reference_rgb, tmp_path / "sub, folder" / name)
    assert path.name == f"{name}.jpg"
    assert read_image(path).shape == (96, 128)
    assert read_image(str(path)).shape == (96, 128)


# --- canonical arrays ------------------------------------------------------------------------


@pytest.mark.parametrize(("color", "channels"), [("gray", 1), ("rgb", 3)])
@pytest.mark.parametrize("size", [64, 11, 200, None])
def test_canonical_shape_and_dtype(
    color: str, channels: int, size: int | None, reference_rgb: np.ndarray, tmp_path: Path
) -> None:
    path = write_variant("png", reference_rgb, tmp_path / "photo")
    canonical = load_canonical(path, size=size, color=color)
    height, width = (96, 128) if size is None else (size, size)
    assert canonical.shape == (channels, height, width)
    assert canonical.dtype == np.uint8
    assert canonical.flags.c_contiguous
    # The same up to the rounding of load_canonical's 8-bit box reduction.
    full = to_canonical(read_image(path, color=color), size)
    assert np.abs(canonical.astype(int) - full).max() <= 1


def test_native_canonical_is_the_quantised_image(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("png", reference_rgb, tmp_path / "plain")
    rgb = load_canonical(path, size=None, color="rgb")
    np.testing.assert_array_equal(rgb, np.moveaxis(reference_rgb, -1, 0))
    gray = load_canonical(path, size=None, color="gray")
    np.testing.assert_array_equal(gray[0], np.round(luminance(reference_rgb) * 255))


def test_canonical_to_float_round_trip(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("png", reference_rgb, tmp_path / "plain")
    for color, shape in (("gray", (64, 64)), ("rgb", (64, 64, 3))):
        canonical = load_canonical(path, size=64, color=color)
        image = canonical_to_float(canonical)
        assert image.shape == shape and image.dtype == np.float64
        np.testing.assert_array_equal(image * 255.0, np.moveaxis(canonical, 0, -1).squeeze())
        np.testing.assert_array_equal(to_canonical(image, None), canonical)
        channel_axis = -1 if color == "rgb" else None
        same = structural_similarity(image, image, data_range=1.0, channel_axis=channel_axis)
        assert same == pytest.approx(1.0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_load_canonical_of_a_large_jpeg_matches_the_full_decode(
    orientation: int, tmp_path: Path
) -> None:
    # load_canonical decodes this JPEG at 1/4 scale (DCT scaling) into a grid that rounds its size
    # up (1203 / 4 -> 301); tracking where the image ends through every EXIF orientation keeps it
    # within a grey level of the full decode, where ignoring it is off by two to three levels.
    photo = Image.fromarray(sample_rgb(400, 360)).resize((1203, 901), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo.save(tmp_path / "large.jpg", quality=92, exif=exif)
    for color, size in (("gray", 11), ("gray", 64), ("rgb", 64)):
        fast = load_canonical(tmp_path / "large.jpg", size=size, color=color).astype(float)
        full = to_canonical(read_image(tmp_path / "large.jpg", color=color), size).astype(float)
        assert np.abs(fast - full).mean() < 1.0
        assert np.abs(fast - full).max() <= 10


def test_load_canonical_is_deterministic(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("webp", reference_rgb, tmp_path / "photo")
    first = load_canonical(path, size=48, color="rgb")
    np.testing.assert_array_equal(first, load_canonical(path, size=48, color="rgb"))


def one_pixel_checkerboard(side: int) -> np.ndarray:
    return (np.indices((side, side)).sum(axis=0) % 2).astype(np.float64)


@pytest.mark.parametrize(("side", "size"), [(256, 64), (512, 64), (256, 100)])
def test_downscaling_is_anti_aliased(side: int, size: int) -> None:
    # Without anti-aliasing a 1-pixel checkerboard aliases into black and white blotches.
    canonical = to_canonical(one_pixel_checkerboard(side), size)
    assert canonical.shape == (1, size, size)
    assert canonical.min() >= 124 and canonical.max() <= 131
    assert canonical.std() < 2.0


def test_load_canonical_of_a_checkerboard_file_is_anti_aliased(tmp_path: Path) -> None:
    board = (one_pixel_checkerboard(1024) * 255).astype(np.uint8)
    Image.fromarray(board).save(tmp_path / "board.png")
    canonical = load_canonical(tmp_path / "board.png", size=64)
    assert canonical.min() >= 124 and canonical.max() <= 131


# --- argument checks -------------------------------------------------------------------------


def test_to_canonical_rejects_bad_input() -> None:
    good = np.full((20, 20), 0.5)
    with pytest.raises(TypeError, match="float"):
        to_canonical(np.zeros((20, 20), np.uint8), 16)
    with pytest.raises(ValueError, match=r"shape \(H, W\) or \(H, W, 3\)"):
        to_canonical(np.zeros((20, 20, 4)), 16)
    with pytest.raises(ValueError, match=r"shape \(H, W\) or \(H, W, 3\)"):
        to_canonical(np.zeros(20), 16)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_canonical(good * 3, 16)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_canonical(np.where(good > 0, np.nan, good), 16)
    for size in (10, 0, True, 16.0):
        with pytest.raises(ValueError, match="size"):
            to_canonical(good, size)  # type: ignore[arg-type]
    assert to_canonical(good, 11).shape == (1, 11, 11)
    assert to_canonical(good.astype(np.float32), None).shape == (1, 20, 20)


def test_canonical_to_float_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        canonical_to_float(np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match=r"\(1, H, W\) or \(3, H, W\)"):
        canonical_to_float(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(1, H, W\) or \(3, H, W\)"):
        canonical_to_float(np.zeros((2, 8, 8), np.uint8))


def test_invalid_color_is_a_value_error(reference_rgb: np.ndarray, tmp_path: Path) -> None:
    path = write_variant("png", reference_rgb, tmp_path / "plain")
    with pytest.raises(ValueError, match="color"):
        read_image(path, color="RGB")
    with pytest.raises(ValueError, match="color"):
        load_canonical(path, size=32, color="grey")
