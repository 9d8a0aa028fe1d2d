"""A labelled image dataset with planted twin groups, written as real PNG files.

Used by the plan, manifest and fix-workflow tests::

    from planted_twins import build_dataset

    dataset = build_dataset(tmp_path / "data")   # data/train/<label>/*.png, valid/…, test/…

Every image is a smooth random texture of its own (two different textures score near 0 by SSIM);
a twin group is one texture saved several times with a little noise each (SSIM > 0.95 between any
two members at 32x32), its members spread over at least two splits and sharing one label.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "valid", "test")
SIDE = 32


def texture(rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """A smooth random grey texture, uint8 (side, side): coarse noise upsampled bilinearly."""
    coarse = rng.uniform(0, 255, size=(side // 4, side // 4)).astype(np.float32)
    smooth = Image.fromarray(coarse, mode="F").resize((side, side), Image.BILINEAR)
    fine = rng.normal(0, 12, size=(side, side))
    return np.clip(np.asarray(smooth) + fine, 0, 255).astype(np.uint8)


def noisy_copy(image: np.ndarray, rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, size=image.shape), 0, 255).astype(np.uint8)


def chain(rng: np.random.Generator, length: int, weight: float = 0.25) -> list[np.ndarray]:
    """Textures each a blend of the previous one and a new one (contrast kept): neighbours are
    near-twins (SSIM > 0.9), images a few steps apart are not — single-link chaining."""
    images = [texture(rng).astype(float)]
    for _ in range(length - 1):
        previous = images[-1]
        mixed = (1 - weight) * previous + weight * texture(rng).astype(float)
        mixed = (mixed - mixed.mean()) * previous.std() / mixed.std() + previous.mean()
        images.append(mixed)
    return [np.clip(image, 0, 255).astype(np.uint8) for image in images]


@dataclass
class Dataset:
    root: Path
    #: (split, relative path) of every member of every planted group, group by group.
    groups: list[list[tuple[str, str]]] = field(default_factory=list)
    #: (split, relative path, label) of every image.
    images: list[tuple[str, str, str]] = field(default_factory=list)

    def split_dir(self, split: str) -> Path:
        return self.root / split

    def split_args(self) -> list[str]:
        return [arg for split in SPLITS for arg in (f"--{split}", str(self.split_dir(split)))]


def build_dataset(
    root: Path,
    *,
    sizes: dict[str, int] | None = None,
    labels: dict[str, float] | None = None,
    group_sizes: tuple[int, ...] = (2, 3, 4, 5, 6, 2, 3, 4, 2, 3, 6, 2, 5, 3, 2, 4, 2, 3, 2, 5),
    seed: int = 7,
) -> Dataset:
    """Write ``root/<split>/<label>/img_NNNN.png``.

    ``sizes`` counts the distinct (non-twin) images per split, ``labels`` the share of each class
    among them (the same in every split); every twin group gets a random label and a random spread
    over at least two splits.
    """
    sizes = sizes or {"train": 150, "valid": 60, "test": 60}
    labels = labels or {"cat": 0.5, "dog": 0.3, "bird": 0.2}
    rng = np.random.default_rng(seed)
    dataset = Dataset(root)
    counter = 0

    def save(split: str, label: str, pixels: np.ndarray) -> str:
        nonlocal counter
        relative = f"{label}/img_{counter:04d}.png"
        counter += 1
        path = root / split / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        dataset.images.append((split, relative, label))
        return relative

    names = list(labels)
    for split, count in sizes.items():
        per_label = np.round(np.array([labels[n] for n in names]) * count).astype(int)
        for name, n in zip(names, per_label, strict=True):
            for _ in range(n):
                save(split, name, texture(rng))
    for size in group_sizes:
        label = names[int(rng.integers(len(names)))]
        source = texture(rng)
        while True:
            placement = [
                SPLITS[int(k)] for k in rng.choice(len(SPLITS), size=size, p=[0.5, 0.25, 0.25])
            ]
            if len(set(placement)) > 1:
                break
        dataset.groups.append(
            [(split, save(split, label, noisy_copy(source, rng))) for split in placement]
        )
    return dataset


def file_hashes(root: Path) -> list[str]:
    """sha256 of every file under ``root``, sorted (a multiset of contents)."""
    return sorted(
        hashlib.sha256(path.read_bytes()).hexdigest() for path in root.rglob("*") if path.is_file()
    )


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def split_counts(root: Path) -> dict[str, dict[str, int]]:
    """Images per split and label, counted from the files on disk."""
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        per_label: dict[str, int] = {}
        for path in (root / split).rglob("*"):
            if not path.is_file():
                continue
            label = path.relative_to(root / split).parts[0]
            per_label[label] = per_label.get(label, 0) + 1
        counts[split] = per_label
    return counts


def reaudit(
    splits: dict[str, Path] | None = None, *, manifest: Path | None = None, **settings: object
):
    """Audit again in this process (the re-audit after a fix; the first audit and ``apply`` run
    as real commands). Returns the :class:`~leakcheck.audit.AuditResult`."""
    import leakcheck

    return leakcheck.audit(splits or {}, manifest=manifest, **settings)
