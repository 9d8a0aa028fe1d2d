"""Robust variants: transforms applied before the exact SSIM, each with its ``method`` name.

A variant is a pair of transforms of canonical stacks ``(n, C, H, W)`` uint8 → same shape: one
for side A of a comparison, one for side B. The engine runs the same exact, pruned search on the
transformed stacks, so the reported ``ssim`` is always a real SSIM of the two images as aligned,
and ``method`` (plus ``alignment``) says which variant matched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from leakcheck.settings import SettingsError

Transform = Callable[[np.ndarray], np.ndarray]


def identity(pixels: np.ndarray) -> np.ndarray:
    return pixels


@dataclass(frozen=True)
class Variant:
    """One way of comparing: ``method`` names it in ``pairs.csv``; ``alignment`` describes it."""

    method: str
    transform_a: Transform = identity
    transform_b: Transform = identity
    alignment: str = ""


def horizontal_flip(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels[..., ::-1])


PLAIN = Variant("ssim")
HFLIP = Variant("ssim_hflip", identity, horizontal_flip, "B mirrored left-right")

#: Variant families by their ``--variants`` name; each name may stand for several variants.
VARIANT_FAMILIES: dict[str, tuple[Variant, ...]] = {
    "plain": (PLAIN,),
    "hflip": (HFLIP,),
}
DEFAULT_VARIANTS = ("plain",)


def resolve_variants(names: Sequence[str]) -> tuple[Variant, ...]:
    """``("plain", "hflip")`` → the variants to run, plain first; unknown names are refused."""
    unknown = [name for name in names if name not in VARIANT_FAMILIES]
    if unknown:
        raise SettingsError(f"unknown variant(s) {unknown}; choose from {sorted(VARIANT_FAMILIES)}")
    chosen: list[Variant] = [PLAIN]
    for name in names:
        for variant in VARIANT_FAMILIES[name]:
            if variant not in chosen:
                chosen.append(variant)
    return tuple(chosen)
