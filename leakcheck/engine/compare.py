"""Compare the splits: exact twins by hashing, then the SSIM search between every pair of splits.

Images with identical canonical pixels share a *content id*. Within each split only one image per
content is searched (its twins inherit its pairs), identical contents in two splits are exact
twins found in O(n) by hashing, and the same file reachable from two splits is a ``same_file``
leak. The SSIM search then runs once per pair of splits (train×valid, train×test, valid×test…)
and, with ``within``, once per split against itself.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from leakcheck.engine import kernels
from leakcheck.engine.approximate import RecallEstimate, approximate_search, combine_estimates
from leakcheck.engine.search import (
    ImageSet,
    PairHits,
    SearchCounts,
    choose_term_order,
    prepare_image_set,
    search_pairs,
)
from leakcheck.engine.variants import PLAIN, Transform, Variant
from leakcheck.sources import ImageRecord

#: Images sampled to choose the pruning bound's term order.
ORDER_SAMPLE = 2000

METHOD_EXACT = "exact"
METHOD_SAME_FILE = "same_file"
METHOD_SSIM = "ssim"

#: (record a, record b, ssim, method, alignment)
PairRow = tuple[int, int, float, str, str]


@dataclass(frozen=True)
class RecordPairs:
    """Pairs of records (indices into the decoded records) with their SSIM and method."""

    index_a: np.ndarray
    index_b: np.ndarray
    ssim: np.ndarray
    method: np.ndarray  # of str
    alignment: np.ndarray  # of str

    def __len__(self) -> int:
        return int(self.index_a.size)

    @staticmethod
    def build(rows: Sequence[PairRow], prefer_at: float | None = None) -> RecordPairs:
        """From ``(a, b, ssim, method, alignment)`` rows, one row per unordered pair.

        Rows come in variant order (identity, plain, then the robust variants). With
        ``prefer_at``, the first row that reaches it wins, so a pair that plain SSIM already
        flags is reported as plain even where a robust variant scores higher; a pair no row
        brings to ``prefer_at`` keeps its best row. Without it the best row wins. Ties: the
        earlier row.
        """
        best: dict[tuple[int, int], PairRow] = {}
        for row in rows:
            key = (min(row[0], row[1]), max(row[0], row[1]))
            kept = best.get(key)
            if kept is None or (row[2] > kept[2] and (prefer_at is None or kept[2] < prefer_at)):
                best[key] = row
        columns = list(zip(*best.values(), strict=True)) or [(), (), (), (), ()]
        return RecordPairs(
            np.asarray(columns[0], np.int64),
            np.asarray(columns[1], np.int64),
            np.asarray(columns[2], float),
            np.asarray(columns[3], object),
            np.asarray(columns[4], object),
        )

    @staticmethod
    def concatenate(parts: Sequence[RecordPairs]) -> RecordPairs:
        parts = [p for p in parts if len(p)]
        if not parts:
            return RecordPairs.build([])
        return RecordPairs(
            np.concatenate([p.index_a for p in parts]),
            np.concatenate([p.index_b for p in parts]),
            np.concatenate([p.ssim for p in parts]),
            np.concatenate([p.method for p in parts]),
            np.concatenate([p.alignment for p in parts]),
        )


@dataclass(frozen=True)
class Comparison:
    """Everything the search found, at the level of records.

    ``cross`` holds cross-split pairs with SSIM >= the search threshold (the audit threshold, or
    ``--floor`` when lower); ``within`` holds same-split pairs when asked for.
    """

    cross: RecordPairs
    within: RecordPairs
    counts: SearchCounts
    search_threshold: float
    per_split_pair: dict[tuple[str, str], SearchCounts] = field(default_factory=dict)
    recall: RecallEstimate | None = None  # approximate search only


def content_ids(pixels: np.ndarray) -> np.ndarray:
    """Equal ids ⇔ identical canonical pixels (blake2b of the bytes, then numbered)."""
    ids: dict[bytes, int] = {}
    out = np.empty(pixels.shape[0], dtype=np.int64)
    for k in range(pixels.shape[0]):
        digest = hashlib.blake2b(pixels[k].tobytes(), digest_size=16).digest()
        out[k] = ids.setdefault(digest, len(ids))
    return out


@dataclass(frozen=True)
class _SplitContents:
    """One split's distinct contents: representative record per content, members per content."""

    name: str
    representatives: np.ndarray  # record index of each distinct content
    members: dict[int, list[int]]  # content id -> record indices in this split


def _split_contents(
    records: Sequence[ImageRecord], content: np.ndarray, split_names: Sequence[str]
) -> list[_SplitContents]:
    members: dict[str, dict[int, list[int]]] = {name: {} for name in split_names}
    for index, record in enumerate(records):
        members[record.split].setdefault(int(content[index]), []).append(index)
    return [
        _SplitContents(
            name,
            np.asarray([group[0] for group in members[name].values()], dtype=np.int64),
            members[name],
        )
        for name in split_names
    ]


def _identity_pairs(
    records: Sequence[ImageRecord], first: _SplitContents, second: _SplitContents | None
) -> list[PairRow]:
    """Pairs of identical canonical pixels: across two splits, or inside one (second=None)."""
    rows: list[PairRow] = []
    if second is None:
        for group in first.members.values():
            for x in range(len(group)):
                for y in range(x + 1, len(group)):
                    rows.append(_identity_row(records, group[x], group[y]))
        return rows
    for content_id, group_a in first.members.items():
        group_b = second.members.get(content_id)
        if group_b:
            rows.extend(_identity_row(records, i, j) for i in group_a for j in group_b)
    return rows


def _identity_row(records: Sequence[ImageRecord], i: int, j: int) -> PairRow:
    method = METHOD_SAME_FILE if _same_file(records[i].file, records[j].file) else METHOD_EXACT
    return (i, j, 1.0, method, "")


def _same_file(first: str, second: str) -> bool:
    """One file reached twice: the same resolved path, or a hard link (same device and inode).

    Asked only of pairs with identical pixels, so the two ``stat`` calls cost nothing overall.
    """
    if first == second:
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False  # gone since it was decoded: two files as far as we can tell


def _expand(
    hits: PairHits,
    first: _SplitContents,
    second: _SplitContents,
    content: np.ndarray,
    variant: Variant,
) -> list[PairRow]:
    """Content-level hits → record-level pairs (every member of each content)."""
    rows: list[PairRow] = []
    for u, v, value in zip(hits.index_a, hits.index_b, hits.ssim, strict=True):
        group_a = first.members[int(content[first.representatives[u]])]
        group_b = second.members[int(content[second.representatives[v]])]
        rows.extend(
            (i, j, float(value), variant.method, variant.alignment)
            for i in group_a
            for j in group_b
        )
    return rows


def term_order(pixels: np.ndarray, window: kernels.WindowSpec, seed: int = 0) -> np.ndarray:
    """A data-driven order of terms for the pruning bound (see :func:`choose_term_order`)."""
    rng = np.random.default_rng(seed)
    take = min(ORDER_SAMPLE, pixels.shape[0])
    sample = pixels[np.sort(rng.choice(pixels.shape[0], size=take, replace=False))]
    mean, std = kernels.image_statistics(sample, window)
    return choose_term_order(mean, std, mean, std, seed=seed)


def _variant_order(
    pixels: np.ndarray, representatives: np.ndarray, variant: Variant, window: kernels.WindowSpec
) -> np.ndarray:
    """:func:`term_order` of a variant's side-A pixels (a sample of them is transformed)."""
    if representatives.size == 0:
        return np.arange(kernels.n_terms(variant.transform_a(pixels[:0]).shape[1:], window))
    rng = np.random.default_rng(0)
    take = min(ORDER_SAMPLE, representatives.size)
    sample = np.sort(rng.choice(representatives, size=take, replace=False))
    return term_order(variant.transform_a(pixels[sample]), window)


def _image_sets(
    pixels: np.ndarray,
    content: np.ndarray,
    splits: Sequence[_SplitContents],
    transform: Transform,
    window: kernels.WindowSpec,
    order: np.ndarray,
    jobs: int,
) -> dict[str, ImageSet]:
    return {
        s.name: prepare_image_set(
            transform(pixels[s.representatives]),
            content[s.representatives],
            window,
            order,
            jobs=jobs,
        )
        for s in splits
    }


def _pairs_visited(
    jobs_list: Sequence[tuple[_SplitContents, _SplitContents | None]], variant: Variant
) -> int:
    """Pairs the search visits for one variant (what the progress bar counts)."""
    symmetric = variant.transform_b is variant.transform_a
    total = 0
    for first, second in jobs_list:
        n_a = len(first.representatives)
        if second is not None:
            total += n_a * len(second.representatives)
        else:
            # a split against itself: unordered pairs, or every ordered pair for a
            # non-symmetric variant (its search skips only the identical-content diagonal)
            total += n_a * (n_a - 1) // 2 if symmetric else n_a * n_a
    return total


def compare_records(
    records: Sequence[ImageRecord],
    pixels: np.ndarray,
    split_names: Sequence[str],
    *,
    threshold: float,
    window_name: str = "uniform",
    within: bool = False,
    variants: Sequence[Variant] = (PLAIN,),
    focus_split: str | None = None,
    search: str = "exact",
    prune: bool = True,
    jobs: int = -1,
    backend: str = "threading",
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    report_threshold: float | None = None,
) -> Comparison:
    """Find every pair of records with SSIM >= ``threshold`` across splits (and within, if asked).

    A pair found by several variants is reported by the first (in ``variants`` order) whose SSIM
    reaches ``report_threshold`` (default ``threshold``; pass the audit threshold when
    ``threshold`` is a lower floor), else by its best.

    ``focus_split`` restricts the search to split pairs that involve that split (and, with
    ``within``, to that split against itself): ``place`` compares new images with the existing
    splits without re-auditing them. ``on_total`` is called once with the number of pairs the
    search will visit, then ``on_progress`` with the pairs each finished tile covered.
    """
    window = kernels.window_spec(window_name)
    prefer_at = threshold if report_threshold is None else max(threshold, report_threshold)
    content = content_ids(pixels)
    splits = _split_contents(records, content, split_names)
    representatives = np.concatenate([s.representatives for s in splits])
    order = (
        term_order(pixels[representatives], window)
        if representatives.size
        else np.arange(kernels.n_terms(pixels.shape[1:], window))
    )
    jobs_list: list[tuple[_SplitContents, _SplitContents | None]] = [
        (splits[i], splits[j]) for i in range(len(splits)) for j in range(i + 1, len(splits))
    ]
    if within:
        jobs_list += [(s, None) for s in splits]
    if focus_split is not None:
        jobs_list = [
            (a, b) for a, b in jobs_list if focus_split in (a.name, None if b is None else b.name)
        ]
    if on_total is not None:
        on_total(sum(_pairs_visited(jobs_list, variant) for variant in variants))
    cross_rows: list[PairRow] = []
    within_rows: list[PairRow] = []
    counts = SearchCounts()
    per_split_pair: dict[tuple[str, str], SearchCounts] = {}
    estimates: list[RecallEstimate] = []
    for first, second in jobs_list:
        rows = _identity_pairs(records, first, second)
        (within_rows if second is None else cross_rows).extend(rows)
    for variant in variants:
        # a robust variant may compare on a smaller grid: its own term order, from its own pixels
        variant_order = (
            order if variant == PLAIN else _variant_order(pixels, representatives, variant, window)
        )
        sides_a = _image_sets(
            pixels, content, splits, variant.transform_a, window, variant_order, jobs
        )
        same = variant.transform_b is variant.transform_a
        sides_b = (
            sides_a
            if same
            else _image_sets(
                pixels, content, splits, variant.transform_b, window, variant_order, jobs
            )
        )
        for first, second in jobs_list:
            # a split against itself under a non-symmetric variant needs every ordered pair
            upper_only = second is None and same
            set_b = None if upper_only else sides_b[(second or first).name]
            if search == "approximate":
                hits, pair_counts, estimate = approximate_search(
                    sides_a[first.name], set_b, order=variant_order, window=window,
                    threshold=threshold, jobs=jobs, backend=backend, on_progress=on_progress,
                )  # fmt: skip
                estimates.append(estimate)
            else:
                hits, pair_counts = search_pairs(
                    sides_a[first.name], set_b, order=variant_order, window=window,
                    threshold=threshold, prune=prune, jobs=jobs, backend=backend,
                    on_progress=on_progress,
                )  # fmt: skip
            rows = _expand(hits, first, second or first, content, variant)
            if second is None:
                rows = [row for row in rows if row[0] != row[1]]
            counts = counts + pair_counts
            key = (first.name, (second or first).name)
            per_split_pair[key] = per_split_pair.get(key, SearchCounts()) + pair_counts
            (within_rows if second is None else cross_rows).extend(rows)
    return Comparison(
        cross=RecordPairs.build(cross_rows, prefer_at),
        within=RecordPairs.build(within_rows, prefer_at),
        counts=counts,
        search_threshold=threshold,
        per_split_pair=per_split_pair,
        recall=combine_estimates(estimates) if search == "approximate" else None,
    )
