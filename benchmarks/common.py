"""Data for the benchmarks: Fashion-MNIST (Debian's dataset-fashion-mnist) and photo crops."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def load_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 28, 28)`` uint8 and labels of ``split`` ("train" or "t10k").

    Needs ``apt-get install -y dataset-fashion-mnist``.
    """
    images_file = FASHION_MNIST / f"{split}-images-idx3-ubyte.gz"
    if not images_file.exists():
        raise SystemExit(
            f"{images_file} not found: install it with `apt-get install -y dataset-fashion-mnist`"
        )
    with gzip.open(images_file) as handle:
        data = handle.read()
    count = int.from_bytes(data[4:8], "big")
    images = np.frombuffer(data, np.uint8, offset=16).reshape(count, 28, 28)
    with gzip.open(FASHION_MNIST / f"{split}-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    return images, labels


def photo_crops(count: int, side: int, seed: int = 0) -> np.ndarray:
    """``count`` grayscale crops ``(count, side, side)`` uint8 of the photos in scikit-image,
    at random positions and scales (real photographic texture, no two crops identical)."""
    from skimage import color, data, transform

    photos = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "brick",
                 "grass", "gravel", "immunohistochemistry", "retina", "hubble_deep_field"):  # fmt: skip
        image = getattr(data, name)()
        image = color.rgb2gray(image[..., :3]) if image.ndim == 3 else image / 255.0
        photos.append(image)
    rng = np.random.default_rng(seed)
    out = np.empty((count, side, side), dtype=np.uint8)
    for k in range(count):
        photo = photos[k % len(photos)]
        height, width = photo.shape
        extent = int(rng.integers(side, min(height, width) // 2 + side))
        top = int(rng.integers(0, height - extent + 1))
        left = int(rng.integers(0, width - extent + 1))
        crop = photo[top : top + extent, left : left + extent]
        resized = transform.resize(crop, (side, side), anti_aliasing=True)
        out[k] = np.clip(np.round(resized * 255), 0, 255).astype(np.uint8)
    return out
