"""Robustness benchmark: does leakcheck find every twin a person would call a twin?

Builds a labelled benchmark from real photographs (those shipped with scikit-image and
scikit-learn, or any folder given with ``--photos``): several hundred distinct, non-overlapping
crops spread over ``train/valid/test``, a planted twin of some of them in another split for each
transform class below, and hard negatives (non-overlapping crops of the same photograph, other
people's faces, frames of the same texture). It then runs, on the same files and in the same
process,

* leakcheck at its defaults (``--variants`` and ``--size`` as shipped),
* the plain-SSIM engine (``--variants plain --size 64``), the baseline the defaults must beat,
* a perceptual-hash baseline (``imagehash.phash``, Hamming distance <= 10),

and prints precision, recall, F1, recall per transform, hard negatives flagged and wall time side
by side. Run it from the repository root::

    python benchmarks/robustness.py                 # the committed table (seed 0)
    python benchmarks/robustness.py --seed 7 --photos ~/Pictures --keep /tmp/bench

A pair counts as flagged when any method reports it (``exact``, ``same_file``, ``ssim`` or a
robust variant). Ground truth: each planted twin and its original are the positives; every other
cross-split pair is a negative, and "hard negatives" are the cross-split pairs of distinct crops
of one photograph and of two different faces.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, not an install

import leakcheck  # noqa: E402
from leakcheck.images import IMAGE_EXTENSIONS, read_image  # noqa: E402
from leakcheck.settings import DEFAULT_VARIANTS  # noqa: E402

SPLITS = ("train", "valid", "test")
SPLIT_SHARES = (0.6, 0.2, 0.2)
THRESHOLD = 0.9
#: The perceptual-hash baseline: imagehash's DCT hash, 64 bits, pairs within this distance.
PHASH_MAX_DISTANCE = 10

#: The transform classes of the issue, in table order.
TRANSFORMS = (
    "copy",
    "jpeg_q40",
    "jpeg_q75",
    "brightness_x1.3",
    "darken_25",
    "contrast_x0.7",
    "gamma_0.8",
    "noise_8",
    "blur_1px",
    "downscale_0.5",
    "upscale_1.5",
    "shift_4pct",
    "crop_90pct",
    "hflip",
    "grayscale",
    "rotate_3deg",
    "exif_rotated",
    "alpha_channel",
    "png16",
)
#: Transforms that need a colour original.
COLOUR_ONLY = {"grayscale"}

#: Side of a crop is drawn in this range (pixels); each crop sits in a cell 1.15 times larger
#: (room for shifted and rotated re-captures), cells never overlap.
CROP_SIDE = (64, 96)
CELL_MARGIN = 1.15
MAX_CROPS_PER_PHOTO = 40
FACES = 60


# --- sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    name: str
    pixels: np.ndarray  # uint8, (H, W) or (H, W, 3)


def shipped_photos() -> list[Photo]:
    """Natural photographs shipped inside scikit-image and scikit-learn (no download).

    Synthetic images (checkerboard, colour wheel, logo, binary shapes) are left out, and so are
    duplicates (``cat`` is ``chelsea``; the stereo pair's right frame is a near-twin of its left).
    """
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    names = (
        "astronaut", "brick", "camera", "chelsea", "cell", "clock", "coffee", "coins", "grass",
        "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina",
        "rocket", "text",
    )  # fmt: skip
    photos = [Photo(name, _as_uint8(getattr(data, name)())) for name in names]
    photos.append(Photo("motorcycle", _as_uint8(data.stereo_motorcycle()[0])))
    sample = load_sample_images()
    for filename, image in zip(sample.filenames, sample.images, strict=True):
        photos.append(Photo(Path(filename).stem, _as_uint8(image)))
    return photos


def folder_photos(folder: Path) -> list[Photo]:
    """Every image file in ``folder`` (recursively), decoded with leakcheck's rules."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    photos = []
    for path in files:
        image = read_image(path, color="rgb")
        rgb = _as_uint8(image)
        if np.ptp(rgb.astype(int) - rgb[..., :1], axis=None) == 0:
            rgb = rgb[..., 0]  # a gray photo stays gray
        photos.append(Photo(path.stem, rgb))
    return photos


def shipped_faces(count: int, rng: np.random.Generator) -> list[Photo]:
    """Different people's faces: scikit-image's LFW subset (25x25, the first 100 are faces)."""
    import skimage.data as data

    faces = data.lfw_subset()[:100]
    chosen = np.sort(rng.choice(len(faces), size=min(count, len(faces)), replace=False))
    return [Photo(f"face{k:03d}", _as_uint8(faces[k])) for k in chosen]


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)


def _gray(pixels: np.ndarray) -> np.ndarray:
    """Luminance in [0, 1] with scikit-image's weights (what leakcheck compares)."""
    values = pixels.astype(np.float64) / 255.0
    if values.ndim == 3:
        values = values @ np.array([0.2125, 0.7154, 0.0721])
    return values


def _informative(crop: np.ndarray) -> bool:
    """Leave out flat crops (black sky, retina surround): two of them are twins for anyone."""
    gray = _gray(crop)
    if gray.std() < 0.03:
        return False
    h, w = (gray.shape[0] // 8) * 8, (gray.shape[1] // 8) * 8
    blocks = gray[:h, :w].reshape(h // 8, 8, w // 8, 8).std(axis=(1, 3))
    return float((blocks < 0.01).mean()) <= 0.6


# --- the benchmark ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Crop:
    """A distinct crop: ``photo`` name, its cell (for re-captures) and its window."""

    photo: Photo
    family: str  # hard negatives share a family: the photograph, or "faces"
    top: int
    left: int
    side_h: int
    side_w: int

    @property
    def pixels(self) -> np.ndarray:
        return self.photo.pixels[
            self.top : self.top + self.side_h, self.left : self.left + self.side_w
        ]


@dataclass
class Benchmark:
    root: Path
    #: (split, file name) → item id; items are crops (ids < n_crops) and twins
    items: dict[tuple[str, str], int] = field(default_factory=dict)
    #: item id → crop index (a twin's original crop)
    crop_of: dict[int, int] = field(default_factory=dict)
    #: item id → family
    family_of: dict[int, str] = field(default_factory=dict)
    #: planted positives: (original item, twin item) → transform
    positives: dict[tuple[int, int], str] = field(default_factory=dict)

    def split_of(self, item: int) -> str:
        return next(split for (split, _), i in self.items.items() if i == item)


def grid_crops(photo: Photo, rng: np.random.Generator) -> list[Crop]:
    """Non-overlapping crops of one photograph, each centred in its own cell."""
    height, width = photo.pixels.shape[:2]
    side = int(rng.integers(CROP_SIDE[0], CROP_SIDE[1] + 1))
    cell = int(np.ceil(side * CELL_MARGIN))
    crops = []
    for row in range(height // cell):
        for column in range(width // cell):
            aspect = rng.uniform(0.8, 1.25)
            side_h = min(cell - 8, int(round(side * min(1.0, aspect))))
            side_w = min(cell - 8, int(round(side * min(1.0, 1.0 / aspect))))
            top = row * cell + (cell - side_h) // 2
            left = column * cell + (cell - side_w) // 2
            crop = Crop(photo, photo.name, top, left, side_h, side_w)
            if _informative(crop.pixels):
                crops.append(crop)
    rng.shuffle(crops)
    return crops[:MAX_CROPS_PER_PHOTO]


def face_crops(faces: list[Photo]) -> list[Crop]:
    return [Crop(face, "faces", 0, 0, *face.pixels.shape[:2]) for face in faces]


def build_benchmark(
    root: Path,
    photos: list[Photo],
    faces: list[Photo],
    seed: int,
    twins_per_transform: int,
    style: str = "recapture",
) -> Benchmark:
    """Write the benchmark's files under ``root/{train,valid,test}`` and return its labels."""
    rng = np.random.default_rng(seed)
    crops = [c for photo in photos for c in grid_crops(photo, rng)] + face_crops(faces)
    bench = Benchmark(root)
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
    names = iter(rng.permutation(100_000))
    splits = rng.choice(len(SPLITS), size=len(crops), p=SPLIT_SHARES)
    for index, crop in enumerate(crops):
        split = SPLITS[splits[index]]
        name = f"{next(names):05d}.png"
        Image.fromarray(crop.pixels).save(root / split / name)
        bench.items[(split, name)] = index
        bench.crop_of[index] = index
        bench.family_of[index] = crop.family
    # Twins: photo crops only (faces stay as hard negatives), each crop at most one twin.
    photo_crops = [i for i, c in enumerate(crops) if c.family != "faces"]
    colour = [i for i in photo_crops if crops[i].photo.pixels.ndim == 3]
    available = set(photo_crops)
    # every class gets the same number of twins, and a tenth of the crops stay unpaired
    quota = min(twins_per_transform, int(0.9 * len(photo_crops)) // len(TRANSFORMS))
    order = sorted(TRANSFORMS, key=lambda name: name not in COLOUR_ONLY)  # colour ones first
    for transform in order:
        pool = [i for i in (colour if transform in COLOUR_ONLY else photo_crops) if i in available]
        chosen = rng.choice(pool, size=min(quota, len(pool)), replace=False)
        for index in chosen:
            available.discard(int(index))
            base_split = SPLITS[splits[index]]
            twin_split = rng.choice([s for s in SPLITS if s != base_split])
            data, suffix = make_twin(transform, crops[int(index)], rng, style)
            name = f"{next(names):05d}{suffix}"
            (root / twin_split / name).write_bytes(data)
            item = len(bench.crop_of)
            bench.items[(str(twin_split), name)] = item
            bench.crop_of[item] = int(index)
            bench.family_of[item] = crops[int(index)].family
            bench.positives[(int(index), item)] = transform
    return bench


# --- transforms (each returns the file's bytes and suffix) ------------------------------------


def _encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png(pixels: np.ndarray) -> tuple[bytes, str]:
    return _encode(Image.fromarray(np.ascontiguousarray(pixels))), ".png"


def _clip(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0, 255)).astype(np.uint8)


def _recapture(crop: Crop, shift_y: int, shift_x: int, angle: float = 0.0) -> np.ndarray:
    """The same window of the photograph moved by a few pixels and/or turned about its centre:
    a re-capture of the scene (new content enters at the edges, no black corners)."""
    photo = crop.photo.pixels
    top, left = crop.top + shift_y, crop.left + shift_x
    if angle == 0.0:
        return photo[top : top + crop.side_h, left : left + crop.side_w]
    pad = int(np.ceil(0.1 * max(crop.side_h, crop.side_w)))
    y0, x0 = max(0, top - pad), max(0, left - pad)
    region = photo[y0 : top + crop.side_h + pad, x0 : left + crop.side_w + pad]
    centre = (left - x0 + crop.side_w / 2, top - y0 + crop.side_h / 2)
    turned = Image.fromarray(region).rotate(angle, Image.Resampling.BICUBIC, center=centre)
    turned_pixels = np.asarray(turned)
    return turned_pixels[top - y0 : top - y0 + crop.side_h, left - x0 : left - x0 + crop.side_w]


def _in_canvas(pixels: np.ndarray, shift_y: int, shift_x: int, angle: float = 0.0) -> np.ndarray:
    """The crop itself moved or turned inside its own frame; the uncovered part is black."""
    if angle:
        return np.asarray(Image.fromarray(pixels).rotate(angle, Image.Resampling.BICUBIC))
    moved = np.zeros_like(pixels)
    h, w = pixels.shape[:2]
    src_y, dst_y = (
        (slice(shift_y, h), slice(0, h - shift_y))
        if shift_y >= 0
        else (slice(0, h + shift_y), slice(-shift_y, h))
    )
    src_x, dst_x = (
        (slice(shift_x, w), slice(0, w - shift_x))
        if shift_x >= 0
        else (slice(0, w + shift_x), slice(-shift_x, w))
    )
    moved[dst_y, dst_x] = pixels[src_y, src_x]
    return moved


def make_twin(
    name: str, crop: Crop, rng: np.random.Generator, style: str = "recapture"
) -> tuple[bytes, str]:
    """Apply transform ``name`` to ``crop``; returns the twin file's bytes and suffix.

    ``style`` decides how shifts and rotations are made: ``recapture`` (default) takes the same
    scene again, moved or turned (new content enters at the edges); ``canvas`` moves or turns
    the crop inside its own frame and leaves the uncovered part black.
    """
    geometric = (
        _recapture
        if style == "recapture"
        else (lambda c, dy, dx, angle=0.0: _in_canvas(c.pixels, dy, dx, angle))
    )
    pixels = crop.pixels
    values = pixels.astype(np.float64)
    image = Image.fromarray(pixels)
    h, w = pixels.shape[:2]
    if name == "copy":
        return _png(pixels)
    if name in ("jpeg_q40", "jpeg_q75"):
        return _encode(image, "JPEG", quality=int(name[-2:])), ".jpg"
    if name == "brightness_x1.3":
        return _png(_clip(values * 1.3))
    if name == "darken_25":
        return _png(_clip(values - 25))
    if name == "contrast_x0.7":
        mean = _gray(pixels).mean() * 255.0
        return _png(_clip(mean + 0.7 * (values - mean)))
    if name == "gamma_0.8":
        return _png(_clip(255.0 * (values / 255.0) ** 0.8))
    if name == "noise_8":
        return _png(_clip(values + rng.normal(0.0, 8.0, size=values.shape)))
    if name == "blur_1px":
        sigma = (1.0, 1.0, 0.0) if values.ndim == 3 else 1.0
        return _png(_clip(ndimage.gaussian_filter(values, sigma)))
    if name == "downscale_0.5":
        small = image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS)
        return _encode(small), ".png"
    if name == "upscale_1.5":
        big = image.resize((int(round(w * 1.5)), int(round(h * 1.5))), Image.Resampling.BICUBIC)
        return _encode(big), ".png"
    if name == "shift_4pct":
        dy, dx = (int(round(0.04 * s)) * int(rng.choice([-1, 1])) for s in (h, w))
        return _png(geometric(crop, dy, dx))
    if name == "crop_90pct":
        ch, cw = int(round(0.9 * h)), int(round(0.9 * w))
        top, left = (h - ch) // 2, (w - cw) // 2
        return _png(pixels[top : top + ch, left : left + cw])
    if name == "hflip":
        return _png(pixels[:, ::-1])
    if name == "grayscale":
        return _encode(image.convert("L")), ".png"
    if name == "rotate_3deg":
        return _png(geometric(crop, 0, 0, angle=3.0 * float(rng.choice([-1, 1]))))
    if name == "exif_rotated":
        stored = image.transpose(Image.Transpose.ROTATE_90)  # viewer turns it back (tag 6)
        exif = Image.Exif()
        exif[0x0112] = 6
        return _encode(stored, "JPEG", quality=95, exif=exif), ".jpg"
    if name == "alpha_channel":
        alpha = np.full((h, w, 1), 255, np.uint8)
        rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
        return _png(np.concatenate([rgb, alpha], axis=2))
    if name == "png16":
        gray16 = np.round(_gray(pixels) * 65535.0).astype(np.uint16)
        return _encode(Image.fromarray(gray16)), ".png"
    raise ValueError(f"unknown transform {name!r}")


# --- running the contenders -------------------------------------------------------------------


@dataclass
class Outcome:
    """What one contender flagged, and how long it took."""

    name: str
    flagged: dict[tuple[int, int], str]  # unordered item pair → method
    seconds: float


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def run_leakcheck(
    bench: Benchmark, name: str, variants: Iterable[str] | None, size: int | None
) -> Outcome:
    """One audit of the benchmark's folders, no cache; ``None`` means the shipped default."""
    options: dict[str, object] = {"labels": "none", "cache": False, "threshold": THRESHOLD}
    if variants is not None:
        options["variants"] = tuple(variants)
    if size is not None:
        options["size"] = size
    splits = {split: bench.root / split for split in SPLITS}
    start = time.perf_counter()
    result = leakcheck.audit(splits, **options)
    seconds = time.perf_counter() - start
    flagged = {}
    for row in result.pairs.itertuples(index=False):
        a = bench.items[(row.split_a, row.path_a)]
        b = bench.items[(row.split_b, row.path_b)]
        flagged[_pair(a, b)] = str(row.method)
    return Outcome(name, flagged, seconds)


def warm_up(root: Path, variants: Iterable[str] | None, size: int | None) -> None:
    """Compile the kernels (numba) outside the timed runs, on two images per split."""
    small = root / "warm-up"
    for split in SPLITS:
        (small / split).mkdir(parents=True, exist_ok=True)
        for k, source in enumerate(sorted((root / split).glob("*.png"))[:2]):
            shutil.copy(source, small / split / f"{k}.png")
    bench = Benchmark(small)
    for split in SPLITS:
        for path in sorted((small / split).iterdir()):
            bench.items[(split, path.name)] = len(bench.items)
    run_leakcheck(bench, "warm-up", variants, size)
    shutil.rmtree(small)


def run_phash(bench: Benchmark) -> Outcome:
    """imagehash's pHash of each file's luminance (decoded like leakcheck decodes it, so EXIF,
    alpha and 16-bit files are fair), every cross-split pair within the Hamming distance."""
    import imagehash

    start = time.perf_counter()
    keys = sorted(bench.items)
    bits = []
    for split, name in keys:
        gray = read_image(bench.root / split / name, color="gray")
        image = Image.fromarray(np.round(gray * 255.0).astype(np.uint8))
        bits.append(imagehash.phash(image).hash.ravel())
    matrix = np.asarray(bits, dtype=np.int32)
    distance = matrix @ (1 - matrix).T + (1 - matrix) @ matrix.T
    split_of = np.array([SPLITS.index(split) for split, _ in keys])
    close = np.argwhere((distance <= PHASH_MAX_DISTANCE) & (split_of[:, None] < split_of[None, :]))
    flagged = {
        _pair(bench.items[keys[i]], bench.items[keys[j]]): "phash" for i, j in close.tolist()
    }
    return Outcome(f"phash <= {PHASH_MAX_DISTANCE}", flagged, time.perf_counter() - start)


# --- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float
    per_transform: dict[str, float]
    false_positives: int
    hard_negatives_flagged: int
    seconds: float


def score(bench: Benchmark, outcome: Outcome) -> Score:
    positives = {_pair(*pair): transform for pair, transform in bench.positives.items()}
    flagged = set(outcome.flagged)
    hits = flagged & set(positives)
    false = flagged - set(positives)
    hard = [pair for pair in false if bench.family_of[pair[0]] == bench.family_of[pair[1]]]
    precision = len(hits) / len(flagged) if flagged else 1.0
    recall = len(hits) / len(positives)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_transform = {}
    for transform in TRANSFORMS:
        pairs = [pair for pair, name in positives.items() if name == transform]
        if pairs:
            per_transform[transform] = sum(pair in flagged for pair in pairs) / len(pairs)
    return Score(precision, recall, f1, per_transform, len(false), len(hard), outcome.seconds)


def hard_negative_count(bench: Benchmark) -> int:
    """Cross-split pairs of two distinct crops of one photograph, or of two different faces."""
    by_family: dict[str, dict[str, int]] = {}
    for (split, _), item in bench.items.items():
        if bench.crop_of[item] == item:  # originals only; twins add more of the same
            family = by_family.setdefault(bench.family_of[item], {})
            family[split] = family.get(split, 0) + 1
    return sum(
        counts.get(a, 0) * counts.get(b, 0)
        for counts in by_family.values()
        for i, a in enumerate(SPLITS)
        for b in SPLITS[i + 1 :]
    )


def format_table(bench: Benchmark, outcomes: list[Outcome]) -> str:
    """A Markdown table: one column per contender."""
    scores = [score(bench, outcome) for outcome in outcomes]
    plain_seconds = next(
        (s.seconds for o, s in zip(outcomes, scores, strict=True) if o.name.startswith("plain")),
        None,
    )
    header = "| | " + " | ".join(o.name for o in outcomes) + " |"
    lines = [header, "|---" * (len(outcomes) + 1) + "|"]

    def row(label: str, cells: Iterable[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("precision", (f"{s.precision:.3f}" for s in scores))
    row("recall", (f"{s.recall:.3f}" for s in scores))
    row("F1", (f"{s.f1:.3f}" for s in scores))
    row("false positives (all)", (str(s.false_positives) for s in scores))
    row("hard negatives flagged", (str(s.hard_negatives_flagged) for s in scores))
    row("wall time (s)", (f"{s.seconds:.2f}" for s in scores))
    if plain_seconds:
        row("× plain SSIM time", (f"{s.seconds / plain_seconds:.2f}" for s in scores))
    for transform in TRANSFORMS:
        if transform in scores[0].per_transform:
            count = sum(1 for name in bench.positives.values() if name == transform)
            row(
                f"recall: {transform} ({count})",
                (f"{s.per_transform[transform]:.2f}" for s in scores),
            )
    return "\n".join(lines)


def describe(bench: Benchmark) -> str:
    originals = [i for i in bench.crop_of if bench.crop_of[i] == i]
    families = {bench.family_of[i] for i in originals}
    per_split = {s: sum(1 for split, _ in bench.items if split == s) for s in SPLITS}
    return (
        f"{len(bench.items)} files ({', '.join(f'{s} {n}' for s, n in per_split.items())}): "
        f"{len(originals)} distinct crops from {len(families)} sources, "
        f"{len(bench.positives)} planted twins, {hard_negative_count(bench)} hard-negative pairs"
    )


# --- cost on Fashion-MNIST ---------------------------------------------------------------------


def fashion_mnist_cost(n_test: int, n_train: int, jobs: int = -1) -> str:
    """The search over ``n_test`` test × ``n_train`` train Fashion-MNIST images through the engine
    (``compare_records``, as an audit runs it), for plain SSIM at the native 28×28 (the
    performance benchmark's setting), at 64 (the old default), at 32, and at the defaults. Prints
    seconds (canonical arrays made outside the timing) and pairs >= 0.9 by ``method``."""
    from benchmarks.common import load_fashion_mnist
    from leakcheck.engine.compare import compare_records
    from leakcheck.engine.variants import resolve_variants
    from leakcheck.images import to_canonical
    from leakcheck.sources import ImageRecord

    test = load_fashion_mnist("t10k")[0][:n_test]
    train = load_fashion_mnist("train")[0][:n_train]
    records = [ImageRecord("test", f"{k}", f"test/{k}") for k in range(len(test))]
    records += [ImageRecord("train", f"{k}", f"train/{k}") for k in range(len(train))]
    images = np.concatenate([test, train])
    lines = [
        f"Fashion-MNIST, {n_test} test × {n_train} train images "
        f"({n_test * n_train:,} pairs), threshold {THRESHOLD}",
        "",
        "| setting | search (s) | × plain native | × plain@64 | pairs >= 0.9 | by method |",
        "|---|---|---|---|---|---|",
    ]
    settings = [
        ("plain, native 28", None, ("plain",)),
        ("plain@64", 64, ("plain",)),
        ("plain@32", 32, ("plain",)),
        ("defaults (@32)", 32, DEFAULT_VARIANTS),
    ]
    seconds: dict[str, float] = {}
    for name, size, families in settings:
        if size is None:
            pixels = images[:, None].copy()
        else:
            pixels = np.stack([to_canonical(image / 255.0, size) for image in images])
        start = time.perf_counter()
        comparison = compare_records(
            records, pixels, ["test", "train"], threshold=THRESHOLD,
            variants=resolve_variants(families), jobs=jobs,
        )  # fmt: skip
        seconds[name] = time.perf_counter() - start
        methods: dict[str, int] = {}
        for method in comparison.cross.method:
            methods[str(method)] = methods.get(str(method), 0) + 1
        native, old = seconds["plain, native 28"], seconds.get("plain@64")
        by_method = ", ".join(f"{m} {n}" for m, n in sorted(methods.items(), key=lambda x: -x[1]))
        lines.append(
            f"| {name} | {seconds[name]:.1f} | {seconds[name] / native:.2f} | "
            f"{seconds[name] / old:.2f} | {len(comparison.cross)} | {by_method} |"
            if old
            else f"| {name} | {seconds[name]:.1f} | 1.00 | – | {len(comparison.cross)} | "
            f"{by_method} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------


def parse_contender(text: str) -> tuple[str, tuple[str, ...] | None, int | None]:
    """``"plain@64"`` → ("plain@64", ("plain",), 64); ``"default"`` → shipped defaults;
    ``"default-hflip"`` → the shipped defaults without the ``hflip`` family."""
    if text == "default":
        return "leakcheck (defaults)", None, None
    if text.startswith("default-"):
        dropped = text.removeprefix("default-")
        return f"defaults − {dropped}", tuple(f for f in DEFAULT_VARIANTS if f != dropped), None
    variants, _, size = text.partition("@")
    return text, tuple(variants.split("+")), int(size) if size else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", type=Path, help="use these photographs instead of the shipped")
    parser.add_argument("--faces", type=int, default=FACES, help="LFW faces as hard negatives")
    parser.add_argument("--twins", type=int, default=16, help="planted twins per transform")
    parser.add_argument(
        "--contenders",
        default="default,plain@64",
        help="comma-separated: 'default' or VARIANT+VARIANT@SIZE (e.g. plain+hflip@32)",
    )
    parser.add_argument(
        "--style",
        choices=("recapture", "canvas"),
        default="recapture",
        help="shifted/rotated twins: the scene taken again, or the crop moved in its frame",
    )
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also run the defaults without each robust family in turn",
    )
    parser.add_argument("--no-phash", action="store_true")
    parser.add_argument(
        "--fashion-mnist",
        type=int,
        metavar="N_TEST",
        help="instead: the search cost on N_TEST Fashion-MNIST test images × 60,000 train",
    )
    parser.add_argument("--keep", type=Path, help="write the benchmark here and keep it")
    args = parser.parse_args(argv)
    if args.fashion_mnist:
        print(fashion_mnist_cost(args.fashion_mnist, 60_000))
        return 0

    rng = np.random.default_rng(args.seed)
    photos = folder_photos(args.photos) if args.photos else shipped_photos()
    faces = shipped_faces(args.faces, rng) if args.faces else []
    workdir = Path(tempfile.mkdtemp(prefix="leakcheck-robustness-"))
    root = args.keep or workdir / "data"
    try:
        if root.exists():
            shutil.rmtree(root)
        bench = build_benchmark(root, photos, faces, args.seed, args.twins, args.style)
        print(describe(bench))
        outcomes = []
        contenders = args.contenders.split(",")
        if args.ablation:
            contenders += [f"default-{family}" for family in DEFAULT_VARIANTS[1:]]
        for text in contenders:
            name, variants, size = parse_contender(text.strip())
            warm_up(root, variants, size)
            outcomes.append(run_leakcheck(bench, name, variants, size))
        if not args.no_phash:
            outcomes.append(run_phash(bench))
        print(format_table(bench, outcomes))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
