"""The audit as a Python API: sources → decoding → comparison → findings → :class:`AuditResult`.

The CLI only parses arguments, calls :func:`audit`, writes the formats and returns
``result.exit_code``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skimage

from leakcheck import __version__
from leakcheck.cache import Cache, default_cache_dir, settings_key
from leakcheck.decoding import DecodedImages, decode_sources, hash_sources
from leakcheck.engine.compare import (
    METHOD_EXACT,
    METHOD_SAME_FILE,
    Comparison,
    compare_records,
)
from leakcheck.engine.kernels import window_spec
from leakcheck.engine.variants import resolve_variants
from leakcheck.findings import (
    GROUP_COLUMNS,
    GROUP_LEAK_COLUMNS,
    add_sampled_scores,
    apply_baseline,
    errors_frame,
    pairs_frame,
    read_baseline,
    twin_groups,
    write_baseline,
)
from leakcheck.fixes.companions import CanonicalPixels, pair_scorer, safe_plan
from leakcheck.fixes.manifest import check_manifest_target, write_fixed_manifest
from leakcheck.fixes.plan import REASSIGNMENT_COLUMNS
from leakcheck.progress import Progress
from leakcheck.settings import Settings, SettingsError, settings_from_mapping
from leakcheck.sources import ImageRecord, SourceError, SplitSource, collect_sources

SCHEMA_VERSION = 1
#: Cache key prefix of the plan's same-split searches (see fixes/companions.py).
_COMPANIONS = "companions-by-image:"
#: Thresholds at which the summary counts pairs (those below the search threshold are left out).
COUNT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95, 0.97, 0.98, 0.99)


#: The tables of an :class:`AuditResult`, as stored with its findings.
_TABLES = (
    "pairs", "within_pairs", "errors", "groups", "group_info", "group_leaks", "reassignments",
    "images",
)  # fmt: skip


@dataclass
class AuditResult:
    """What an audit found. Tables are pandas DataFrames with the columns of ``product.md``."""

    settings: Settings
    sources: list[SplitSource]
    pairs: pd.DataFrame
    within_pairs: pd.DataFrame
    errors: pd.DataFrame
    groups: pd.DataFrame
    group_info: pd.DataFrame
    group_leaks: pd.DataFrame
    reassignments: pd.DataFrame
    images: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return int(self.summary["exit_code"])

    @property
    def split_order(self) -> list[str]:
        return [source.name for source in self.sources]


class _Timings:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


def audit(
    splits: Mapping[str, str | Path] | None = None,
    *,
    threshold: float | None = None,
    manifest: str | Path | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> AuditResult:
    """Audit image splits for cross-split near-twins.

    Parameters
    ----------
    splits : mapping of str to path
        Split name → folder, in split order (e.g. ``{"train": "data/train", "valid": ...}``).
    threshold : float, optional
        A pair with SSIM >= threshold is a near-twin (default 0.9).
    manifest : path, optional
        A CSV with columns ``path, split`` and optional ``label, group``.
    settings : Settings, optional
        Base settings; ``threshold`` and ``**options`` (any :class:`Settings` field) override it.
    progress : Progress, optional
        Progress reporting (tqdm bars on stderr); silent by default.

    Returns
    -------
    AuditResult

    Raises
    ------
    SourceError, SettingsError, BaselineError
        Usage errors (the CLI's exit code 2).

    Examples
    --------
    >>> result = leakcheck.audit({"train": "data/train", "valid": "data/valid"}, threshold=0.9)
    >>> result.pairs[["path_a", "path_b", "ssim"]].head()
    """
    if threshold is not None:
        options["threshold"] = threshold
    settings = settings_from_mapping(options, base=settings)
    progress = progress or Progress(enabled=False)
    timings = _Timings()
    if settings.baseline is not None:
        read_baseline(settings.baseline)  # a bad baseline is a usage error: fail before the work
    if settings.write_manifest is not None:
        check_manifest_target(settings.write_manifest, manifest)
    with timings.stage("list"):
        sources = collect_sources(splits or {}, manifest, labels=settings.labels)
    split_order = [source.name for source in sources]
    cache = _open_cache(settings)
    try:
        with timings.stage("hash"):
            hashed = hash_sources(sources, settings.jobs, cache)
        result_key = _result_key(sources, hashed.sha256_of, settings)
        findings_key = _findings_key(result_key, settings)
        stored = cache.get_result(findings_key) if cache is not None else None
        if stored is not None:
            with timings.stage("findings"):
                result = _stored_findings(stored, sources, settings)
            return _finish(result, settings, manifest, sources, timings, findings_cached=True)
        cached = cache.get_result(result_key) if cache is not None else None
        # the plan's same-split searches, kept with the comparison they depend on
        companion_memo = (cache.get_result(_COMPANIONS + result_key) if cache else None) or {}
        known_companions = len(companion_memo)
        pixels = None  # canonical arrays, when decoded in this run (the plan may need some)
        if cached is not None:
            records, sha256, errors, comparison = cached
            images_decoded, images_from_cache = 0, len(records)
        else:
            with (
                timings.stage("decode"),
                progress.bar("decoding", total=len(hashed.sha256_of)) as bar,
            ):
                decoded = decode_sources(sources, hashed, settings, cache, on_progress=bar)
            _check_decodable(sources, decoded)
            _check_window_fits(decoded, settings)
            with timings.stage("compare"):
                comparison = _compare(decoded, split_order, settings, progress)
            records, sha256, errors = decoded.records, decoded.file_sha256, decoded.errors
            pixels = decoded.pixels
            images_decoded, images_from_cache = decoded.images_decoded, decoded.images_from_cache
            if cache is not None:
                cache.put_result(result_key, (records, sha256, errors, comparison))
    finally:
        if cache is not None:
            cache.close()
    with timings.stage("findings"):
        result = _findings(
            sources, records, sha256, errors, comparison, settings, split_order, pixels,
            companion_memo,
        )  # fmt: skip
    result.summary.update(
        images_decoded=images_decoded,
        images_from_cache=images_from_cache,
        comparison_from_cache=cached is not None,
    )
    if settings.cache:
        with Cache(settings.cache_dir) as cache:
            if len(companion_memo) != known_companions:
                cache.put_result(_COMPANIONS + result_key, companion_memo)
            cache.put_result(findings_key, _findings_to_store(result))
    return _finish(result, settings, manifest, sources, timings, findings_cached=False)


def _finish(
    result: AuditResult,
    settings: Settings,
    manifest: str | Path | None,
    sources: list[SplitSource],
    timings: _Timings,
    *,
    findings_cached: bool,
) -> AuditResult:
    """The side effects every audit has, whether its findings were computed or stored: the
    baseline and manifest files asked for, and the run's own summary fields."""
    if settings.write_baseline is not None:
        write_baseline(result.pairs, settings.write_baseline)
    if settings.write_manifest is not None:
        audited = zip(result.images["split"], result.images["path"], strict=True)
        written = write_fixed_manifest(
            settings.write_manifest, sources=sources, moves=result.reassignments,
            manifest=manifest, audited=set(audited),
        )  # fmt: skip
        result.summary["manifest_written"] = str(written)
    result.summary.update(findings_from_cache=findings_cached, timings=timings.seconds)
    return result


def _findings_key(result_key: str, settings: Settings) -> str:
    """What the findings depend on beyond the comparison: the plan's policy, the recall floor,
    and the baseline's content."""
    baseline = None
    if settings.baseline is not None:
        baseline = hashlib.sha256(Path(settings.baseline).read_bytes()).hexdigest()
    return "findings:" + settings_key(
        __version__, result_key, settings.policy, settings.min_recall, baseline
    )


#: Summary fields that belong to the run, not to its findings: set afresh on every run.
_RUN_FIELDS = ("settings", "timings", "manifest_written", "findings_from_cache")


def _findings_to_store(result: AuditResult) -> dict[str, Any]:
    tables = {name: getattr(result, name) for name in _TABLES}
    summary = {k: v for k, v in result.summary.items() if k not in _RUN_FIELDS}
    return {"tables": tables, "summary": summary}


def _stored_findings(
    stored: dict[str, Any], sources: list[SplitSource], settings: Settings
) -> AuditResult:
    """An :class:`AuditResult` from stored findings, with this run's settings and listing."""
    summary = dict(stored["summary"])
    summary["settings"] = settings.to_json()
    summary["splits"] = {
        source.name: {
            **summary["splits"][source.name],
            "root": str(source.root) if source.root is not None else None,
            "skipped_by_extension": source.skipped_by_extension,
        }
        for source in sources
    }
    images = sum(split["images"] for split in summary["splits"].values())
    summary.update(images_decoded=0, images_from_cache=images, comparison_from_cache=True)
    return AuditResult(settings=settings, sources=sources, summary=summary, **stored["tables"])


def _open_cache(settings: Settings) -> Cache | None:
    """The cache, or None with ``cache=False``; an unusable cache folder is a usage error."""
    if not settings.cache:
        return None
    try:
        return Cache(settings.cache_dir)
    except (OSError, sqlite3.Error) as error:
        folder = settings.cache_dir or default_cache_dir()
        raise SettingsError(
            f"cannot use the cache folder {folder} ({error}); give another with --cache DIR "
            "or run with --no-cache"
        ) from None


def _check_window_fits(decoded: DecodedImages, settings: Settings) -> None:
    """With ``--size native`` the images may be smaller than the SSIM window."""
    side = window_spec(settings.window).size
    height, width = decoded.pixels.shape[2:]
    if height < side or width < side:
        raise SourceError(
            f"the images are {height}x{width} pixels, smaller than the {side}x{side} SSIM window "
            f"(--window {settings.window}); use --size N with N >= 11"
        )


def _check_decodable(sources: list[SplitSource], decoded: DecodedImages) -> None:
    decodable = {record.split for record in decoded.records}
    for source in sources:
        if source.name not in decodable:
            reasons = [reason for record, reason in decoded.errors if record.split == source.name]
            raise SourceError(
                f"split '{source.name}' has no decodable image ({len(reasons)} files failed, "
                f"e.g. {reasons[0] if reasons else 'none'})"
            )


def _compare(
    decoded: DecodedImages, split_order: list[str], settings: Settings, progress: Progress
) -> Comparison:
    search_threshold = (
        min(settings.threshold, settings.floor)
        if settings.floor is not None
        else settings.threshold
    )
    with progress.bar("comparing", total=0, unit="pairs") as bar:
        return compare_records(
            decoded.records, decoded.pixels, split_order,
            threshold=search_threshold, window_name=settings.window, within=settings.within,
            variants=resolve_variants(settings.variants), search=settings.search,
            jobs=settings.jobs, backend=settings.backend,
            on_total=bar.set_total, on_progress=bar, report_threshold=settings.threshold,
        )  # fmt: skip


def _result_key(
    sources: list[SplitSource], sha256_of: Mapping[str, str], settings: Settings
) -> str:
    """Everything that changes the comparison: every file's place and content, and the settings
    that shape canonical arrays or the search."""
    listing = [
        (r.split, r.path, r.label, r.group, sha256_of.get(r.file, "unreadable"), r.file)
        for source in sources
        for r in source.records
    ]
    return "result:" + settings_key(
        listing, settings.size, settings.color, settings.window, settings.variants,
        settings.threshold, settings.floor, settings.within, settings.search,
        settings.max_pixels,
    )  # fmt: skip


def _findings(
    sources: list[SplitSource],
    records: list[ImageRecord],
    sha256: list[str],
    errors: list[tuple[ImageRecord, str]],
    comparison: Comparison,
    settings: Settings,
    split_order: list[str],
    pixels: np.ndarray | None = None,
    companion_memo: dict[Any, Any] | None = None,
) -> AuditResult:
    all_pairs = pairs_frame(records, sha256, comparison.cross, split_order)
    pairs = all_pairs[all_pairs["ssim"] >= settings.threshold].reset_index(drop=True)
    within_all = pairs_frame(records, sha256, comparison.within, split_order)
    within_pairs = within_all[within_all["ssim"] >= settings.threshold].reset_index(drop=True)
    accepted, stale = 0, 0
    if settings.baseline is not None:
        pairs, accepted, stale = apply_baseline(pairs, settings.baseline)

    images = pd.DataFrame(
        {
            "split": [r.split for r in records],
            "path": [r.path for r in records],
            "file": [r.file for r in records],
            "label": [r.label for r in records],
            "group": [r.group for r in records],
            "sha256": sha256,
        }
    )
    images["best_score"] = _best_scores(images, all_pairs)
    labels = {(r.split, r.path): r.label for r in records}
    flagged = pd.concat([pairs, within_pairs], ignore_index=True)
    pixels_of = CanonicalPixels(records, settings, pixels, sha256)
    variants = resolve_variants(settings.variants)
    groups = twin_groups(flagged, labels)
    groups = add_sampled_scores(groups, pixels_of, pair_scorer(settings.window, variants))
    group_leaks = _group_leaks(records, split_order)
    plan = safe_plan(
        groups.members, images, split_order, settings=settings, pixels_of=pixels_of,
        fixing_groups=set(groups.info.loc[groups.info["leaking"], "group"]),
        memo=companion_memo,
    )  # fmt: skip
    reassignments = plan.moves
    leaking_pairs = int((~pairs["accepted"].astype(bool)).sum())
    exit_code = 1 if leaking_pairs or len(group_leaks) else 0
    recall = comparison.recall
    if (
        settings.min_recall is not None
        and recall is not None
        and recall.recall is not None
        and recall.recall < settings.min_recall
    ):
        exit_code = 2  # the contract: a recall estimate below --min-recall is a failure
    summary = _summary(
        sources, records, errors, comparison, settings, pairs, within_pairs, all_pairs,
        groups.info, group_leaks, reassignments, images, accepted, stale, exit_code,
    )  # fmt: skip
    summary.update(
        class_counts_before=plan.balance["class_counts_before"],
        class_counts_after=plan.balance["class_counts_after"],
        balance=plan.balance,
        accepted_groups=int(groups.info["accepted"].sum()),
    )
    group_facts = groups.info[["group", "size", "weakest_link", "lowest_sampled_ssim"]]
    return AuditResult(
        settings=settings,
        sources=sources,
        pairs=pairs,
        within_pairs=within_pairs,
        errors=errors_frame(errors),
        groups=groups.members[GROUP_COLUMNS].merge(
            group_facts.rename(columns={"size": "group_size"}), on="group", how="left"
        ),
        group_info=groups.info,
        group_leaks=group_leaks,
        reassignments=reassignments[REASSIGNMENT_COLUMNS],
        images=images,
        summary=summary,
    )


def _best_scores(images: pd.DataFrame, all_pairs: pd.DataFrame) -> np.ndarray:
    """Each image's best cross-split SSIM among pairs found (NaN: below the search threshold)."""
    best: dict[tuple[str, str], float] = {}
    for side in ("a", "b"):
        for split, path, value in zip(
            all_pairs[f"split_{side}"], all_pairs[f"path_{side}"], all_pairs["ssim"], strict=True
        ):
            key = (split, path)
            best[key] = max(best.get(key, -2.0), float(value))
    return np.asarray(
        [best.get(key, np.nan) for key in zip(images["split"], images["path"], strict=True)]
    )


def _group_leaks(records: list[ImageRecord], split_order: list[str]) -> pd.DataFrame:
    """Manifest group ids found in more than one split."""
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        if record.group:
            per_split = counts.setdefault(record.group, {})
            per_split[record.split] = per_split.get(record.split, 0) + 1
    rows = []
    for group, per_split in sorted(counts.items()):
        names = [name for name in split_order if name in per_split]
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                rows.append((group, names[i], per_split[names[i]], names[j], per_split[names[j]]))
    return pd.DataFrame(rows, columns=GROUP_LEAK_COLUMNS)


def _summary(
    sources: list[SplitSource],
    records: list[ImageRecord],
    errors: list[tuple[ImageRecord, str]],
    comparison: Comparison,
    settings: Settings,
    pairs: pd.DataFrame,
    within_pairs: pd.DataFrame,
    all_pairs: pd.DataFrame,
    group_info: pd.DataFrame,
    group_leaks: pd.DataFrame,
    reassignments: pd.DataFrame,
    images: pd.DataFrame,
    accepted: int,
    stale: int,
    exit_code: int,
) -> dict[str, Any]:
    split_order = [s.name for s in sources]
    images_per_split = {name: 0 for name in split_order}
    for record in records:
        images_per_split[record.split] += 1
    errors_per_split = {name: 0 for name in split_order}
    for record, _ in errors:
        errors_per_split[record.split] += 1
    by_split_pair: dict[str, int] = {}
    for i, a in enumerate(split_order):
        for b in split_order[i + 1 :]:
            mask = (pairs["split_a"] == a) & (pairs["split_b"] == b)
            by_split_pair[f"{a}/{b}"] = int(mask.sum())
    pairs_total = sum(
        images_per_split[a] * images_per_split[b]
        for i, a in enumerate(split_order)
        for b in split_order[i + 1 :]
    )
    if settings.within:
        pairs_total += sum(n * (n - 1) // 2 for n in images_per_split.values())
    counts_by_threshold = {
        f"{t:.2f}": int((all_pairs["ssim"] >= t).sum())
        for t in sorted({*COUNT_THRESHOLDS, settings.threshold})
        if t >= comparison.search_threshold
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "version": __version__,
        "skimage_version": skimage.__version__,
        "settings": settings.to_json(),
        "splits": {
            source.name: {
                "root": str(source.root) if source.root is not None else None,
                "images": images_per_split[source.name],
                "errors": errors_per_split[source.name],
                "skipped_by_extension": source.skipped_by_extension,
            }
            for source in sources
        },
        "pairs_by_split_pair": by_split_pair,
        "near_twin_pairs": len(pairs),
        "within_pairs": len(within_pairs),
        "accepted_pairs": accepted,
        "baseline_stale": stale,
        "pairs_total": pairs_total,
        "pairs_computed": comparison.counts.pairs_computed,
        "pairs_pruned": comparison.counts.pairs_pruned,
        # not pairs_total - computed - pruned: those two count every robust variant apart
        "pairs_skipped_as_identical": _identical_pairs(comparison),
        "search_threshold": comparison.search_threshold,
        "counts_by_threshold": counts_by_threshold,
        "groups": len(group_info),
        "leaking_groups": int(group_info["leaking"].sum()) if len(group_info) else 0,
        "oversized_groups": group_info[group_info["oversized"]]["group"].tolist()
        if len(group_info)
        else [],
        "group_leaks": len(group_leaks),
        "reassignments": len(reassignments),
        "split_sizes_before": images_per_split,
        "split_sizes_after": _sizes_after(images, reassignments, split_order),
        "exit_code": exit_code,
        **_recall_fields(comparison),
    }


def _recall_fields(comparison: Comparison) -> dict[str, Any]:
    if comparison.recall is None:
        return {}
    estimate = comparison.recall
    return {
        "recall_estimate": estimate.recall,
        "recall_sample": {
            "rows": estimate.sample_rows,
            "true_pairs": estimate.true_pairs,
            "found_pairs": estimate.found_pairs,
        },
    }


def _identical_pairs(comparison: Comparison) -> int:
    """Image pairs with identical canonical pixels: reported as twins without an SSIM search."""
    identical = (METHOD_EXACT, METHOD_SAME_FILE)
    return sum(
        sum(1 for method in found.method if method in identical)
        for found in (comparison.cross, comparison.within)
    )


def _sizes_after(
    images: pd.DataFrame, reassignments: pd.DataFrame, split_order: list[str]
) -> dict[str, int]:
    sizes = images["split"].value_counts().to_dict()
    after = {name: int(sizes.get(name, 0)) for name in split_order}
    for row in reassignments.itertuples(index=False):
        if row.to_split:
            after[row.from_split] -= 1
            after[row.to_split] += 1
    return after


ProgressCallback = Callable[[int], None]
