"""Build the demo dataset in ``sample_data/``: crops of scikit-image's photographs, planted twins.

Run from the repository root::

    python sample_data/make_sample_data.py            # rewrites sample_data/{train,valid,test}
    python sample_data/make_sample_data.py --out DIR  # writes the same files under DIR

The output is an ImageFolder tree, ``<split>/<label>/<photo>_<nn>.<ext>``, plus
``planted_twins.csv`` listing the cross-split near-twins planted on purpose. Everything else is a
crop that overlaps no other crop of its photograph by more than a sliver, except a few deliberate
look-alikes (a shifted crop of the same photograph in another split) that must *not* be flagged.

Every output is checked before it replaces the previous one: the files are written to a staging
folder, read back, canonicalised (grayscale, 64x64 with anti-aliasing, uint8) by leakcheck's own
``leakcheck.images.load_canonical`` when it can be imported and by a scikit-image-only reference,
and compared by SSIM. The script exits with status 1, leaving the old files in place, unless under
both every planted pair scores at least ``PLANTED_MIN`` and every other pair at most ``OTHERS_MAX``.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import itertools
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter
from skimage import data
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity
from skimage.transform import resize

SEED = 20240917
SPLITS = ("train", "valid", "test")
JPEG_QUALITY = 90
CANONICAL_SIZE = 64
#: The margins around the default threshold 0.9 that every build must keep.
PLANTED_MIN = 0.93
OTHERS_MAX = 0.85
#: Two crops of one photograph may share at most this fraction of the smaller crop.
MAX_OVERLAP = 0.08
#: A crop needs this much local detail: the mean standard deviation of its 7x7 windows at the
#: comparison size, in pixel values in [0, 1]. Smooth crops (sky, blur) score a high SSIM against
#: any other smooth crop of similar brightness, which a demo of near-twins should not show.
MIN_DETAIL = 0.03
PLANTED_COLUMNS = ("split_a", "path_a", "split_b", "path_b", "transform")
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Photo:
    """One photograph shipped with scikit-image and how many crops each split gets from it."""

    name: str
    label: str
    load: Callable[[], np.ndarray]
    extension: str  # "jpg" or "png": how its crops are saved
    train: int
    valid: int
    test: int
    scale: float = 1.0  # resize the photograph first, so that a crop shows more of it


#: Only photographs whose scikit-image docstring states public domain, CC0 or no known copyright
#: restrictions, and that load without a download (see README.md).
PHOTOS = (
    Photo("chelsea", "animals", data.chelsea, "jpg", 2, 1, 1),
    Photo("astronaut", "people", data.astronaut, "jpg", 3, 1, 0),
    Photo("camera", "people", data.camera, "png", 2, 1, 1),
    Photo("coffee", "objects", data.coffee, "jpg", 3, 1, 0),
    Photo("coins", "objects", data.coins, "png", 2, 0, 1),
    Photo("rocket", "space", data.rocket, "jpg", 3, 0, 1, scale=0.75),
    Photo("hubble_deep_field", "space", data.hubble_deep_field, "jpg", 2, 1, 0, scale=0.5),
    Photo("brick", "textures", data.brick, "png", 2, 1, 1),
    Photo("grass", "textures", data.grass, "jpg", 3, 1, 1),
    Photo("gravel", "textures", data.gravel, "jpg", 2, 1, 1),
    Photo("immunohistochemistry", "microscopy", data.immunohistochemistry, "jpg", 3, 1, 0),
    Photo("cell", "microscopy", data.cell, "png", 2, 0, 1),
    Photo("retina", "microscopy", data.retina, "jpg", 2, 1, 0, scale=0.25),
)


@dataclass(frozen=True)
class Lookalike:
    """A crop of ``photo`` in ``split`` shifted by ``shift`` of its width from the photo's first crop."""

    photo: str
    split: str
    shift: float = 0.75


LOOKALIKES = (
    Lookalike("astronaut", "test"),
    Lookalike("coffee", "test"),
    Lookalike("brick", "valid"),
)


@dataclass(frozen=True)
class Twin:
    """A near-twin planted on purpose: the first crop of ``photo`` in ``source``, transformed."""

    photo: str
    source: str
    target: str
    transform: str


TWINS = (
    Twin("brick", "train", "valid", "reencode_webp_lossless"),
    Twin("chelsea", "train", "valid", "brighten_1.15"),
    Twin("grass", "train", "test", "jpeg_q40"),
    Twin("immunohistochemistry", "train", "test", "reencode_png"),
    Twin("astronaut", "valid", "test", "downscale_0.5"),
    Twin("coffee", "valid", "test", "darken_0.8"),
)


@dataclass(frozen=True)
class Item:
    """One image file of the dataset."""

    split: str
    label: str
    name: str  # file name, e.g. "chelsea_03.jpg"
    photo: str

    @property
    def path(self) -> str:
        """The path relative to the split folder, with forward slashes."""
        return f"{self.label}/{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        """(split, path): how leakcheck names an image."""
        return (self.split, self.path)


@dataclass(frozen=True)
class Pair:
    """Two images and why they are interesting: a twin transform or ``"shifted_crop"``."""

    first: Item
    second: Item
    kind: str


Box = tuple[int, int, int, int]  # top, left, height, width


def load_photo(photo: Photo) -> np.ndarray:
    """The photograph as uint8 (gray or RGB, alpha dropped), resized by ``photo.scale``."""
    pixels = np.asarray(photo.load())
    if pixels.ndim == 3:
        pixels = pixels[..., :3]
    if photo.scale != 1.0:
        image = Image.fromarray(pixels)
        size = (round(image.width * photo.scale), round(image.height * photo.scale))
        pixels = np.asarray(image.resize(size, Image.Resampling.LANCZOS))
    return pixels


def overlap(a: Box, b: Box) -> float:
    """Intersection area of two boxes as a fraction of the smaller one."""
    height = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    width = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if height <= 0 or width <= 0:
        return 0.0
    return height * width / min(a[2] * a[3], b[2] * b[3])


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    """The pixels inside ``box``."""
    top, left, height, width = box
    return pixels[top : top + height, left : left + width]


def has_detail(pixels: np.ndarray) -> bool:
    """Whether a crop has enough local structure at the comparison size (see ``MIN_DETAIL``)."""
    gray = rgb2gray(pixels) if pixels.ndim == 3 else pixels / 255.0
    small = resize(gray, (CANONICAL_SIZE, CANONICAL_SIZE), anti_aliasing=True)
    mean = uniform_filter(small, 7)
    variance = np.clip(uniform_filter(small * small, 7) - mean * mean, 0.0, None)
    return float(np.sqrt(variance)[3:-3, 3:-3].mean()) >= MIN_DETAIL


def random_box(rng: np.random.Generator, pixels: np.ndarray, taken: list[Box], name: str) -> Box:
    """A 96-160 px crop that overlaps none of ``taken`` by more than ``MAX_OVERLAP``."""
    for _ in range(5000):
        height = int(rng.integers(96, 161))
        width = int(np.clip(height * rng.uniform(0.8, 1.25), 96, 160))
        if height > pixels.shape[0] or width > pixels.shape[1]:
            continue
        top = int(rng.integers(0, pixels.shape[0] - height + 1))
        left = int(rng.integers(0, pixels.shape[1] - width + 1))
        box = (top, left, height, width)
        if all(overlap(box, other) <= MAX_OVERLAP for other in taken) and has_detail(
            crop(pixels, box)
        ):
            return box
    raise RuntimeError(f"{name}: no room left for another crop; ask for fewer")


def shifted_box(pixels: np.ndarray, box: Box, shift: float) -> Box:
    """``box`` moved sideways by ``shift`` of its width, to the right if it fits, else left."""
    top, left, height, width = box
    step = round(shift * width)
    new_left = left + step if left + step + width <= pixels.shape[1] else left - step
    if new_left < 0:
        raise RuntimeError(f"no room to shift the crop {box} sideways by {step} px")
    return (top, new_left, height, width)


def plan_crops(rng: np.random.Generator) -> Iterator[tuple[Photo, str, np.ndarray, bool]]:
    """Every crop of every photograph in a fixed order: (photo, split, pixels, is_lookalike).

    A look-alike is the crop just before it shifted sideways (see ``LOOKALIKES``).
    """
    lookalikes = {lookalike.photo: lookalike for lookalike in LOOKALIKES}
    for photo in PHOTOS:
        pixels = load_photo(photo)
        taken: list[Box] = []
        wanted = [s for s in SPLITS for _ in range(getattr(photo, s))]
        for index, split in enumerate(wanted):
            box = random_box(rng, pixels, taken, photo.name)
            taken.append(box)
            yield photo, split, crop(pixels, box), False
            if index == 0 and photo.name in lookalikes:
                lookalike = lookalikes[photo.name]
                neighbour = shifted_box(pixels, box, lookalike.shift)
                taken.append(neighbour)
                yield photo, lookalike.split, crop(pixels, neighbour), True


def transform_twin(pixels: np.ndarray, transform: str, extension: str) -> tuple[np.ndarray, str]:
    """The twin's pixels and file extension for one of the ``TWINS`` transforms."""
    if transform == "reencode_webp_lossless":
        return pixels, "webp"
    if transform == "reencode_png":
        return pixels, "png"
    if transform == "jpeg_q40":
        return pixels, "jpg"  # the quality is chosen when saving
    if transform in ("brighten_1.15", "darken_0.8"):
        factor = float(transform.split("_")[1])
        scaled = np.clip(np.round(pixels.astype(np.float64) * factor), 0, 255)
        return scaled.astype(np.uint8), extension
    if transform == "downscale_0.5":
        image = Image.fromarray(pixels)
        half = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
        return np.asarray(half), extension
    raise ValueError(f"unknown twin transform {transform!r}")


def save(pixels: np.ndarray, path: Path, transform: str | None = None) -> None:
    """Write ``pixels`` to ``path`` in the format its extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    extension = path.suffix.lower()
    if extension == ".jpg":
        quality = 40 if transform == "jpeg_q40" else JPEG_QUALITY
        image.save(path, "JPEG", quality=quality)
    elif extension == ".png":
        image.save(path, "PNG", optimize=True)
    elif extension == ".webp":
        image.save(path, "WEBP", lossless=True, quality=100, method=6)
    else:
        raise ValueError(f"no encoder for {path}")


def decode(path: Path) -> np.ndarray:
    """The pixels of a written file, as a reader sees them."""
    with Image.open(path) as image:
        return np.asarray(image)


def build(root: Path) -> tuple[list[Pair], list[Pair]]:
    """Write every image under ``root``; return the planted twins and the shifted look-alikes."""
    rng = np.random.default_rng(SEED)
    counters: dict[str, itertools.count[int]] = {}
    firsts: dict[tuple[str, str], Item] = {}
    photos = {photo.name: photo for photo in PHOTOS}

    def add(photo: Photo, split: str, pixels: np.ndarray, extension: str, how: str | None) -> Item:
        number = next(counters.setdefault(photo.name, itertools.count(1)))
        item = Item(split, photo.label, f"{photo.name}_{number:02d}.{extension}", photo.name)
        save(np.ascontiguousarray(pixels), root / split / item.path, how)
        firsts.setdefault((photo.name, split), item)
        return item

    lookalikes = []
    previous: Item | None = None
    for photo, split, pixels, is_lookalike in plan_crops(rng):
        item = add(photo, split, pixels, photo.extension, None)
        if is_lookalike and previous is not None:
            lookalikes.append(Pair(previous, item, "shifted_crop"))
        previous = item
    planted = []
    for twin in TWINS:
        source = firsts[(twin.photo, twin.source)]
        # The twin starts from the source file's decoded pixels, as a careless copy would.
        decoded = decode(root / source.split / source.path)
        pixels, extension = transform_twin(decoded, twin.transform, photos[twin.photo].extension)
        copy = add(photos[twin.photo], twin.target, pixels, extension, twin.transform)
        planted.append(Pair(source, copy, twin.transform))
    return planted, lookalikes


def write_planted(planted: list[Pair], path: Path) -> None:
    """Write ``planted_twins.csv``: one row per pair, ``split_a`` before ``split_b`` in SPLITS."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PLANTED_COLUMNS)
        for pair in planted:
            a, b = sorted((pair.first, pair.second), key=lambda item: SPLITS.index(item.split))
            writer.writerow((a.split, a.path, b.split, b.path, pair.kind))


def reference_canonical(path: Path, size: int = CANONICAL_SIZE) -> np.ndarray:
    """The canonical array as the SSIM definition states it, with scikit-image only.

    Grayscale luminance (``rgb2gray``) of the float RGB values, ``skimage.transform.resize`` with
    anti-aliasing to ``size x size``, quantised with ``round(x * 255)``; returned as float64 in
    [0, 1]. leakcheck may resize differently (Pillow), so both must keep the margins.
    """
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    small = resize(rgb2gray(rgb), (size, size), anti_aliasing=True)
    return np.round(small * 255.0) / 255.0


def canonical_loaders() -> dict[str, Callable[[Path], np.ndarray]]:
    """Ways to canonicalise a file: leakcheck's own when importable, and the reference above."""
    loaders: dict[str, Callable[[Path], np.ndarray]] = {}
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        images = importlib.import_module("leakcheck.images")
        load_canonical, canonical_to_float = images.load_canonical, images.canonical_to_float
    except (ImportError, AttributeError):
        print("leakcheck.images is not importable; checking with the reference only")
    else:

        def load(path: Path) -> np.ndarray:
            return canonical_to_float(load_canonical(path, size=CANONICAL_SIZE, color="gray"))

        loaders["leakcheck.images.load_canonical"] = load
    loaders["skimage reference (rgb2gray, resize)"] = reference_canonical
    return loaders


def image_files(root: Path) -> list[tuple[str, str]]:
    """Every image under ``root`` as (split, path relative to the split), sorted."""
    return [
        (split, file.relative_to(root / split).as_posix())
        for split in SPLITS
        for file in sorted((root / split).rglob("*"))
        if file.is_file()
    ]


def ordered(pair: frozenset[tuple[str, str]]) -> list[tuple[str, str]]:
    """The two (split, path) of a pair, in split order, then by path."""
    return sorted(pair, key=lambda image: (SPLITS.index(image[0]), image[1]))


def verify(root: Path, planted: list[Pair], lookalikes: list[Pair]) -> bool:
    """Check the margins with every canonicaliser of :func:`canonical_loaders`."""
    results = [
        verify_with(root, planted, lookalikes, load, name)
        for name, load in canonical_loaders().items()
    ]
    return all(results)


def verify_with(
    root: Path,
    planted: list[Pair],
    lookalikes: list[Pair],
    load: Callable[[Path], np.ndarray],
    source: str,
) -> bool:
    """Print the SSIM of every planted and look-alike pair and the highest others.

    Returns True when every planted pair scores at least ``PLANTED_MIN`` and every other pair,
    across splits or within one, at most ``OTHERS_MAX``.
    """
    files = image_files(root)
    arrays = {key: load(root / key[0] / key[1]) for key in files}
    photo_of = {key: key[1].rsplit("/", 1)[-1].rsplit("_", 1)[0] for key in files}
    twins = {frozenset({pair.first.key, pair.second.key}) for pair in planted}
    scores = {
        frozenset({a, b}): structural_similarity(arrays[a], arrays[b], data_range=1.0)
        for a, b in itertools.combinations(files, 2)
    }
    print(f"canonical arrays from {source}; {len(files)} images, {len(scores)} pairs")
    ok = True
    for pair in planted + lookalikes:
        score = scores[frozenset({pair.first.key, pair.second.key})]
        good = score >= PLANTED_MIN if pair in planted else score <= OTHERS_MAX
        ok &= good
        status = "ok" if good else "MARGIN FAILED"
        role = "planted " if pair in planted else "look-alike"
        print(
            f"  {role} {pair.kind:23s} {score:.4f} {status}: {pair.first.key} ~ {pair.second.key}"
        )

    others = [(score, *ordered(key)) for key, score in scores.items() if key not in twins]
    groups = {
        "cross-split": [o for o in others if o[1][0] != o[2][0]],
        "cross-split, same photo": [
            o for o in others if o[1][0] != o[2][0] and photo_of[o[1]] == photo_of[o[2]]
        ],
        "within a split": [o for o in others if o[1][0] == o[2][0]],
    }
    for name, group in groups.items():
        score, first, second = max(group)
        good = score <= OTHERS_MAX
        ok &= good
        status = "ok" if good else "MARGIN FAILED"
        print(f"  highest other pair, {name}: {score:.4f} {status}: {first} ~ {second}")
    return ok


def replace_output(staging: Path, out: Path) -> None:
    """Move the verified split folders and planted list from ``staging`` into ``out``."""
    for split in SPLITS:
        if (out / split).exists():
            shutil.rmtree(out / split)
        (staging / split).rename(out / split)
    (staging / "planted_twins.csv").replace(out / "planted_twins.csv")


def folder_size(root: Path) -> int:
    """Total bytes of the dataset files (split folders, planted list, README)."""
    files = [root / split / path for split, path in image_files(root)]
    files += [root / name for name in ("planted_twins.csv", "README.md") if (root / name).exists()]
    return sum(file.stat().st_size for file in files)


def main(argv: list[str] | None = None) -> int:
    """Build, verify and install the dataset; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="output folder"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        planted, lookalikes = build(staging)
        write_planted(planted, staging / "planted_twins.csv")
        if not verify(staging, planted, lookalikes):
            print("margins not met; nothing replaced", file=sys.stderr)
            return 1
        replace_output(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = {split: sum(1 for s, _ in image_files(out) if s == split) for split in SPLITS}
    print(f"wrote {counts} to {out}; total size {folder_size(out) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
