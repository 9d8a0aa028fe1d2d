"""Exact SSIM where the plan needs more than the audit's pairs: sampled group members and companions.

Two questions need pixels after the search is done:

* *How tight is a twin group?* Single-link chaining (A~B, B~C, …) can join images that share
  nothing; :func:`pair_scorer` gives :func:`leakcheck.findings.add_sampled_scores` the exact SSIM
  of sampled member pairs.
* *Does a move create a new leak?* Without ``--within`` the audit never compares two images of
  the same split. If the plan moves X out of valid while valid keeps Z, a near-twin of X, the
  re-audit finds X–Z across splits. :func:`find_companions` searches exactly those pairs (the
  moved images against their own split) so that the plan can keep them together.

Canonical arrays come from the audit when it still holds them, else from the cache, else they
are decoded again (:class:`CanonicalPixels`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leakcheck.cache import Cache
from leakcheck.decoding import HashedFiles, decode_sources, hash_sources
from leakcheck.engine import kernels
from leakcheck.engine.compare import term_order
from leakcheck.engine.search import ImageSet, pair_ssim, prepare_image_set, search_pairs
from leakcheck.engine.variants import Variant, resolve_variants
from leakcheck.fixes.plan import Link, ReassignmentPlan, make_plan
from leakcheck.settings import Settings
from leakcheck.sources import ImageRecord, SourceError, SplitSource

Key = tuple[str, str]  # (split, path)


class CanonicalPixels:
    """Canonical arrays of audited records, by ``(split, path)``, loaded on demand.

    Parameters
    ----------
    records : sequence of ImageRecord
        The audit's decoded records.
    settings : Settings
        The audit's settings (size, colour, cache).
    preloaded : ndarray, optional
        ``pixels[k]`` of ``records[k]`` when the audit decoded them in this run.
    sha256 : sequence of str, optional
        The audit's file hashes (``sha256[k]`` of ``records[k]``): with them, loading asks the
        cache directly instead of reading and hashing the files again.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        settings: Settings,
        preloaded: np.ndarray | None = None,
        sha256: Sequence[str] | None = None,
    ) -> None:
        self._records = {(r.split, r.path): r for r in records}
        self._sha256 = (
            None
            if sha256 is None
            else {r.file: digest for r, digest in zip(records, sha256, strict=True)}
        )
        self._index = {(r.split, r.path): k for k, r in enumerate(records)}
        self._settings = settings
        self._preloaded = preloaded
        self._loaded: dict[Key, np.ndarray] = {}

    def __call__(self, keys: Sequence[Key]) -> dict[Key, np.ndarray]:
        """Arrays ``(C, H, W)`` of ``keys``; a key that is unknown or no longer decodes is left
        out."""
        keys = [key for key in dict.fromkeys(keys) if key in self._records]
        if self._preloaded is not None:
            return {key: self._preloaded[self._index[key]] for key in keys}
        missing = [key for key in keys if key not in self._loaded]
        if missing:
            self._load(missing)
        return {key: self._loaded[key] for key in keys if key in self._loaded}

    def _load(self, keys: Sequence[Key]) -> None:
        records = tuple(self._records[key] for key in keys)
        source = SplitSource("plan", None, records)
        settings = self._settings
        try:
            cache = Cache(settings.cache_dir) if settings.cache else None
        except (OSError, sqlite3.Error):
            cache = None  # decode again rather than fail: the audit itself is done
        try:
            if self._sha256 is not None:
                hashed = HashedFiles({r.file: self._sha256[r.file] for r in records}, {})
            else:
                hashed = hash_sources([source], settings.jobs)
            decoded = decode_sources([source], hashed, settings, cache)
        except SourceError:
            return  # files changed since the audit; the caller makes do without them
        finally:
            if cache is not None:
                cache.close()
        for record, array in zip(decoded.records, decoded.pixels, strict=True):
            self._loaded[(record.split, record.path)] = array


def pair_scorer(
    window_name: str, variants: Sequence[Variant]
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """``score(pixels, index_a, index_b)``: exact SSIM of listed pairs of a stack, the best over
    ``variants`` (so a mirrored twin scores as the audit scored it)."""
    window = kernels.window_spec(window_name)

    def score(pixels: np.ndarray, index_a: np.ndarray, index_b: np.ndarray) -> np.ndarray:
        content = np.arange(len(pixels))
        best = np.full(len(index_a), -np.inf)
        for variant in variants:
            # a robust variant may compare on a smaller grid than the canonical one
            pixels_a, pixels_b = variant.transform_a(pixels), variant.transform_b(pixels)
            order = np.arange(kernels.n_terms(pixels_a.shape[1:], window), dtype=np.int64)
            side_a = prepare_image_set(pixels_a, content, window, order)
            side_b = prepare_image_set(pixels_b, content, window, order)
            values = pair_ssim(side_a, side_b, index_a, index_b, order=order, window=window)
            best = np.maximum(best, values)
        return best

    return score


@dataclass(frozen=True)
class Companion:
    """``moved`` leaves its split; ``stays`` (same split, other final split) is its near-twin."""

    moved: Key
    stays: Key
    ssim: float


#: Raw same-split hits of one search: (moved image, other image, SSIM).
SplitHits = list[tuple[Key, Key, float]]


@dataclass(frozen=True)
class PreparedSplit:
    """One split's images ready to be searched under one variant."""

    keys: list[Key]
    order: np.ndarray
    images: ImageSet


def find_companions(
    final_split: Mapping[Key, str],
    pixels_of: Callable[[Sequence[Key]], dict[Key, np.ndarray]],
    *,
    threshold: float,
    window_name: str,
    variants: Sequence[Variant],
    jobs: int = 1,
    memo: MutableMapping[Key, SplitHits] | None = None,
    prepared: MutableMapping[tuple[str, int], PreparedSplit] | None = None,
) -> list[Companion]:
    """Near-twins inside one split that the plan would put into different splits.

    For each split, every image the plan moves out of it is searched (exactly, with pruning)
    against every image of that split; a pair at or above ``threshold`` whose two images end in
    different splits is returned.

    Parameters
    ----------
    final_split : mapping
        Every audited image ``(split, path)`` → the split it ends in under the plan.
    pixels_of : callable
        ``(split, path)`` keys → canonical arrays (see :class:`CanonicalPixels`).
    threshold, window_name, variants, jobs
        The audit's settings.
    memo : mutable mapping, optional
        Each moved image's same-split hits, by its key: an image's hits do not depend on what
        else moves, so later planning rounds (and cached re-runs) search only images that no
        earlier round moved.
    prepared : mutable mapping, optional
        Each split's image set per variant, kept between planning rounds so that a split's
        statistics are computed once.
    """
    memo = {} if memo is None else memo
    prepared = {} if prepared is None else prepared
    by_split: dict[str, list[Key]] = {}
    for key in final_split:
        by_split.setdefault(key[0], []).append(key)
    found: dict[tuple[Key, Key], Companion] = {}
    for split, keys in by_split.items():
        moved = sorted(key for key in keys if final_split[key] != split)
        unsearched = [key for key in moved if key not in memo]
        if unsearched:
            hits_of: dict[Key, SplitHits] = {key: [] for key in unsearched}
            for hit in _search_split(
                keys, unsearched, pixels_of, threshold, window_name, variants, jobs, prepared
            ):
                hits_of[hit[0]].append(hit)
            memo.update(hits_of)
        for a, b, value in (hit for key in moved for hit in memo.get(key, [])):
            if final_split[a] == final_split[b]:
                continue
            pair = (min(a, b), max(a, b))
            if pair not in found or value > found[pair].ssim:
                found[pair] = Companion(a, b, float(value))
    return [found[pair] for pair in sorted(found)]


def _search_split(
    keys: Sequence[Key],
    moved: Sequence[Key],
    pixels_of: Callable[[Sequence[Key]], dict[Key, np.ndarray]],
    threshold: float,
    window_name: str,
    variants: Sequence[Variant],
    jobs: int,
    prepared: MutableMapping[tuple[str, int], PreparedSplit],
) -> SplitHits:
    """Every pair (moved image, image of the same split) at or above ``threshold``."""
    window = kernels.window_spec(window_name)
    arrays = pixels_of(keys)
    keys = [key for key in keys if key in arrays]
    position = {key: k for k, key in enumerate(keys)}
    moved = [key for key in moved if key in position]
    if not moved or len(keys) < 2:
        return []
    stack = np.stack([arrays[key] for key in keys])
    moved_rows = np.asarray([position[key] for key in moved], dtype=np.int64)
    hits_out: SplitHits = []
    for number, variant in enumerate(variants):
        earlier = prepared.get((keys[0][0], number))
        if earlier is not None and earlier.keys == keys:
            order, side_b = earlier.order, earlier.images
        else:
            # a robust variant may compare on a smaller grid: its own term order
            order = term_order(variant.transform_a(stack), window)
            side_b = prepare_image_set(
                variant.transform_b(stack), np.arange(len(keys)), window, order, jobs=jobs
            )
            prepared[(keys[0][0], number)] = PreparedSplit(keys, order, side_b)
        # equal content ids are skipped by the search: only an image with itself shares one
        side_a = prepare_image_set(
            variant.transform_a(stack[moved_rows]), moved_rows, window, order, jobs=jobs
        )
        hits, _ = search_pairs(
            side_a, side_b, order=order, window=window, threshold=threshold, jobs=jobs
        )
        hits_out += [
            (moved[int(u)], keys[int(v)], float(value))
            for u, v, value in zip(hits.index_a, hits.index_b, hits.ssim, strict=True)
        ]
    return hits_out


#: Rounds of "plan, look for companions, plan again"; every round only merges units.
MAX_ROUNDS = 10


def safe_plan(
    members: pd.DataFrame,
    images: pd.DataFrame,
    split_order: Sequence[str],
    *,
    settings: Settings,
    pixels_of: Callable[[Sequence[Key]], dict[Key, np.ndarray]],
    fixing_groups: Collection[str] | None = None,
    memo: MutableMapping[Key, SplitHits] | None = None,
) -> ReassignmentPlan:
    """A plan whose result passes the re-audit: :func:`~leakcheck.fixes.plan.make_plan`, then
    any near-twin inside a split that it would separate is linked and the plan made again.

    With ``within`` on, same-split twins are already in the twin groups and no search is needed.
    ``memo`` keeps the companion searches (see :func:`find_companions`).
    """
    links: list[Link] = []
    variants = resolve_variants(settings.variants)
    memo = {} if memo is None else memo  # rounds share their searches
    prepared: dict[tuple[str, int], PreparedSplit] = {}  # …and each split's statistics
    for _ in range(MAX_ROUNDS):
        plan = make_plan(
            members, images, split_order, policy=settings.policy,
            fixing_groups=fixing_groups, links=links,
        )  # fmt: skip
        if settings.within or plan.moves.empty:
            return plan
        found = find_companions(
            plan.final_split, pixels_of, threshold=settings.threshold,
            window_name=settings.window, variants=variants, jobs=settings.jobs, memo=memo,
            prepared=prepared,
        )  # fmt: skip
        if not found:
            return plan
        links += [(c.moved, c.stays, c.ssim) for c in found]
    return plan
