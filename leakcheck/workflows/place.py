"""``leakcheck place NEW_DIR --train … --valid …``: admit new images without leaking.

The new images form one extra split, compared with the audit's engine against every existing split
and against themselves (``compare_records(..., focus_split=new, within=True)``); the existing splits
are not compared with each other. Then, per *new group* (new images joined by near-twin pairs among
themselves; a lone image is a group of one):

* the group's near-twins in existing splits (SSIM >= ``--threshold``) all lie in one split → the
  whole group goes there (reason ``twin``, or ``group`` for members without a twin of their own);
* they lie in several splits → every member is a **conflict**: empty ``split``, a reason starting
  with ``conflict``; exit code 1;
* it has none → it is **free**: free groups, largest first, each go to the split that keeps the
  split sizes — and, with labels, each class's spread over the splits — closest to the existing
  proportions (ties: the split furthest behind its share, then split order). Deterministic.

A new image's label is its first-level subfolder in ``NEW_DIR`` (``--labels folder``), and
``leakcheck apply`` copies ``NEW_DIR/PATH`` to ``SPLIT_ROOT/PATH``, so labels are kept.

Outputs (``--out``, default ``leakcheck-placement/``): ``placement.csv`` (``path, split, reason,
twin_split, twin_path, ssim``, then ``group, label, method``), ``errors.csv`` and ``summary.json``
(with ``new_dir`` and each split's ``root``, which ``leakcheck apply`` reads).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skimage

from leakcheck import __version__
from leakcheck.cli import (
    EXIT_CLEAN,
    EXIT_FOUND,
    _Parser,
    add_setting_arguments,
    add_split_arguments,
    resolve_inputs,
)
from leakcheck.decoding import DecodedImages
from leakcheck.engine.backends import joblib_backend
from leakcheck.engine.compare import METHOD_SAME_FILE, Comparison, compare_records
from leakcheck.engine.variants import resolve_variants
from leakcheck.findings import errors_frame, group_id
from leakcheck.formats.csv_tables import write_table
from leakcheck.formats.json_files import write_json
from leakcheck.progress import Progress
from leakcheck.settings import Settings
from leakcheck.sources import SourceError, check_not_nested, collect_sources, scan_split_folder
from leakcheck.workflows import check_unused_flags, decode_through_cache, hide_unused_flags

DEFAULT_OUT = Path("leakcheck-placement")
PLACEMENT_COLUMNS = [
    "path", "split", "reason", "twin_split", "twin_path", "ssim", "group", "label", "method",
]  # fmt: skip


@dataclass(frozen=True)
class Twin:
    """A near-twin of a new image in an existing split."""

    split: str
    path: str
    ssim: float
    method: str


@dataclass(frozen=True)
class PlacementResult:
    """Where each new image goes (``placement``), unreadable files (``errors``) and the summary."""

    placement: pd.DataFrame
    errors: pd.DataFrame
    settings: Settings
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return int(self.summary["exit_code"])


def new_split_name(existing: Sequence[str]) -> str:
    """``new``, or ``new-2``, ``new-3``… when a split already has that name."""
    name, number = "new", 1
    while name in existing:
        number += 1
        name = f"new-{number}"
    return name


def place_images(
    new_dir: str | Path,
    splits: Mapping[str, str | Path],
    *,
    manifest: str | Path | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> PlacementResult:
    """Decide a split for every image of ``new_dir`` (see the module notes).

    Parameters
    ----------
    new_dir : path
        Folder of new images (class subfolders give labels).
    splits : mapping of str to path
        The existing splits, in split order.
    manifest : path, optional
        Existing splits from a manifest instead of (or besides) folders.
    settings : Settings, optional
        ``threshold``, size, colour, window, variants, labels, cache, jobs… as for an audit.
    progress : Progress, optional

    Returns
    -------
    PlacementResult

    Raises
    ------
    SourceError
        Missing, empty, nested or undecodable folders (exit code 2).
    """
    settings = settings or Settings()
    progress = progress or Progress(enabled=False)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    sources = collect_sources(splits, manifest, labels=settings.labels)
    split_order = [source.name for source in sources]
    new_name = new_split_name(split_order)
    new_root = Path(new_dir).expanduser()
    if not new_root.is_dir():
        raise SourceError(f"new images: {new_root} is not a folder")
    roots = {source.name: source.root for source in sources if source.root is not None}
    check_not_nested({**roots, new_name: new_root})
    new_source = scan_split_folder(new_name, new_root, labels=settings.labels)
    if not new_source.records:
        raise SourceError(
            f"new images: {new_root} has no image files (png, jpg, jpeg, bmp, gif, tif, tiff, webp)"
        )
    decoded = decode_through_cache([*sources, new_source], settings, progress)
    for name in [*split_order, new_name]:
        if not any(record.split == name for record in decoded.records):
            raise SourceError(f"split '{name}' has no decodable image")
    timings["decode"] = time.perf_counter() - clock

    clock = time.perf_counter()
    with progress.bar("comparing", total=0, unit="pairs") as bar:
        comparison = compare_records(
            decoded.records, decoded.pixels, [*split_order, new_name],
            threshold=settings.threshold, window_name=settings.window, within=True,
            variants=resolve_variants(settings.variants), focus_split=new_name,
            jobs=settings.jobs, backend=settings.backend,
            on_total=bar.set_total, on_progress=bar,
        )  # fmt: skip
    timings["compare"] = time.perf_counter() - clock

    clock = time.perf_counter()
    placement = _placement(decoded, comparison, split_order, new_name, settings)
    timings["placement"] = time.perf_counter() - clock
    errors = errors_frame(decoded.errors)
    summary = _summary(
        sources, new_source, decoded, comparison, placement, errors, settings, timings
    )
    return PlacementResult(placement, errors, settings, summary)


# -- decisions -------------------------------------------------------------------------------------


def _new_groups(new: list[int], comparison: Comparison) -> list[list[int]]:
    """New images joined by near-twin pairs among themselves, each group in path order."""
    root = {k: k for k in new}

    def find(x: int) -> int:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    for a, b in zip(comparison.within.index_a, comparison.within.index_b, strict=True):
        first, second = find(int(a)), find(int(b))
        root[max(first, second)] = min(first, second)
    groups: dict[int, list[int]] = {}
    for k in new:
        groups.setdefault(find(k), []).append(k)
    return list(groups.values())


def _twins_of(
    decoded: DecodedImages, comparison: Comparison, new_name: str, rank: Mapping[str, int]
) -> dict[int, list[Twin]]:
    """Each new image's near-twins in existing splits, best first (ties: split order, path)."""
    records = decoded.records
    twins: dict[int, list[Twin]] = {}
    cross = comparison.cross
    for a, b, value, method in zip(
        cross.index_a, cross.index_b, cross.ssim, cross.method, strict=True
    ):
        new, old = (int(a), int(b)) if records[a].split == new_name else (int(b), int(a))
        old_record = records[old]
        twins.setdefault(new, []).append(
            Twin(old_record.split, old_record.path, float(value), method)
        )
    for found in twins.values():
        found.sort(key=lambda twin: (-twin.ssim, rank[twin.split], twin.path))
    return twins


def _placement(
    decoded: DecodedImages,
    comparison: Comparison,
    split_order: list[str],
    new_name: str,
    settings: Settings,
) -> pd.DataFrame:
    records = decoded.records
    rank = {name: k for k, name in enumerate(split_order)}
    new = [k for k, record in enumerate(records) if record.split == new_name]
    twins = _twins_of(decoded, comparison, new_name, rank)
    rows: dict[int, dict[str, Any]] = {}
    free_groups: list[list[int]] = []
    forced: dict[int, str] = {}
    for members in _new_groups(new, comparison):
        gid = group_id([decoded.file_sha256[k] for k in members]) if len(members) > 1 else ""
        twin_splits = sorted({t.split for k in members for t in twins.get(k, [])}, key=rank.get)
        for k in members:
            best = twins.get(k, [None])[0]
            rows[k] = {
                "path": records[k].path, "split": "", "reason": "",
                "twin_split": best.split if best else "", "twin_path": best.path if best else "",
                "ssim": best.ssim if best else np.nan, "group": gid, "label": records[k].label,
                "method": best.method if best else "",
            }  # fmt: skip
        if not twin_splits:
            free_groups.append(members)
        elif len(twin_splits) == 1:
            for k in members:
                same_file = [t for t in twins.get(k, []) if t.method == METHOD_SAME_FILE]
                if same_file:  # NEW_DIR links to a file of that split: there is nothing to copy
                    rows[k]["reason"] = (
                        f"already: the same file as {same_file[0].split}/{same_file[0].path}; "
                        "nothing to copy"
                    )
                    continue
                forced[k] = twin_splits[0]
                rows[k]["split"] = twin_splits[0]
                rows[k]["reason"] = _forced_reason(k, members, twins, twin_splits[0], records)
        else:
            for k in members:
                rows[k]["reason"] = _conflict_reason(k, members, twins)
    use_labels = settings.labels == "folder" and any(record.label for record in records)
    kept = "split and class proportions" if use_labels else "split proportions"
    for members, split in _assign_free(records, free_groups, forced, split_order, use_labels):
        for k in members:
            rows[k]["split"] = split
            rows[k]["reason"] = (
                f"free: no near-twin in any split; placed to keep the {kept}"
                if len(members) == 1
                else f"free: placed together with its {len(members) - 1} new near-twin(s) "
                f"to keep the {kept}"
            )
    ordered = sorted(new, key=lambda k: records[k].path)
    return pd.DataFrame([rows[k] for k in ordered], columns=PLACEMENT_COLUMNS)


def _forced_reason(
    k: int, members: list[int], twins: Mapping[int, list[Twin]], split: str, records: Sequence[Any]
) -> str:
    own = twins.get(k)
    if own:
        others = f", with {len(members) - 1} new near-twin(s)" if len(members) > 1 else ""
        return f"twin: near-twin of {split}/{own[0].path} (SSIM {own[0].ssim:.4f}){others}"
    anchor = next(m for m in members if twins.get(m))
    return (
        f"group: no near-twin of its own; its new near-twin group ({len(members)} images) goes "
        f"with {records[anchor].path}, a near-twin of {split}/{twins[anchor][0].path}"
    )


def _conflict_reason(k: int, members: list[int], twins: Mapping[int, list[Twin]]) -> str:
    best: dict[str, Twin] = {}
    for m in members:
        for twin in twins.get(m, []):
            if twin.split not in best or twin.ssim > best[twin.split].ssim:
                best[twin.split] = twin
    shown = sorted(best.values(), key=lambda twin: -twin.ssim)
    where = "; ".join(f"{t.split}/{t.path} (SSIM {t.ssim:.4f})" for t in shown)
    whose = (
        "its near-twins"
        if len(members) == 1
        else f"its new near-twin group ({len(members)} images) has near-twins"
    )
    return f"conflict: {whose} in {len(best)} splits: {where}; decide by hand"


def _assign_free(
    records: Sequence[Any],
    free_groups: list[list[int]],
    forced: Mapping[int, str],
    split_order: list[str],
    use_labels: bool,
) -> list[tuple[list[int], str]]:
    """Free groups → splits, keeping the split (and class) proportions of the existing splits.

    Greedy, largest group first (ties: first path): each group goes to the split where it lowers
    the total deviation from the targets most. A split's target is its existing share of the final
    total and, with labels, of each class's final total.
    """
    order = set(split_order)
    sizes = dict.fromkeys(split_order, 0)
    by_class: dict[tuple[str, str], int] = {}
    for record in records:
        if record.split in order:
            sizes[record.split] += 1
            by_class[(record.split, record.label)] = (
                by_class.get((record.split, record.label), 0) + 1
            )
    existing_total = sum(sizes.values())
    share = {name: sizes[name] / existing_total for name in split_order}
    for k, split in forced.items():
        sizes[split] += 1
        by_class[(split, records[k].label)] = by_class.get((split, records[k].label), 0) + 1
    placed_members = [*forced, *(k for group in free_groups for k in group)]
    final_total = existing_total + len(placed_members)
    final_class: dict[str, int] = {}
    for record in [
        *(r for r in records if r.split in order),
        *(records[k] for k in placed_members),
    ]:
        final_class[record.label] = final_class.get(record.label, 0) + 1

    def change(count: int, added: int, target: float, scale: int) -> float:
        return (abs(count + added - target) - abs(count - target)) / max(scale, 1)

    chosen: list[tuple[list[int], str]] = []
    for members in sorted(free_groups, key=lambda group: (-len(group), records[group[0]].path)):
        classes: dict[str, int] = {}
        for k in members:
            classes[records[k].label] = classes.get(records[k].label, 0) + 1

        def cost(name: str, members: list[int] = members, classes: dict = classes) -> tuple:
            target = share[name] * final_total
            total = change(sizes[name], len(members), target, final_total)
            if use_labels:
                for label, count in classes.items():
                    goal = share[name] * final_class[label]
                    now = by_class.get((name, label), 0)
                    total += change(now, count, goal, final_class[label])
            behind = (target - sizes[name]) / target if target > 0 else 0.0
            return (round(total, 12), -behind, split_order.index(name))

        best = min(split_order, key=cost)
        sizes[best] += len(members)
        for label, count in classes.items():
            by_class[(best, label)] = by_class.get((best, label), 0) + count
        chosen.append((members, best))
    return chosen


# -- summary and command line ----------------------------------------------------------------------


def _summary(
    sources: Sequence[Any],
    new_source: Any,
    decoded: DecodedImages,
    comparison: Comparison,
    placement: pd.DataFrame,
    errors: pd.DataFrame,
    settings: Settings,
    timings: Mapping[str, float],
) -> dict[str, Any]:
    images = pd.Series([record.split for record in decoded.records]).value_counts().to_dict()
    error_counts = errors["split"].value_counts().to_dict() if len(errors) else {}
    placed = placement["split"].value_counts().to_dict()
    total_before = sum(int(images.get(s.name, 0)) for s in sources)
    total_after = total_before + int((placement["split"] != "").sum())
    conflicts = int(placement["reason"].str.startswith("conflict").sum())
    kinds = placement["reason"].str.split(":").str[0].value_counts().to_dict()
    splits = {}
    for source in sources:
        before = int(images.get(source.name, 0))
        after = before + int(placed.get(source.name, 0))
        splits[source.name] = {
            "root": str(source.root) if source.root is not None else None,
            "images": before,
            "errors": int(error_counts.get(source.name, 0)),
            "skipped_by_extension": source.skipped_by_extension,
            "placed": int(placed.get(source.name, 0)),
            "images_after": after,
            "share_before": round(before / total_before, 6),
            "share_after": round(after / total_after, 6) if total_after else None,
        }
    return {
        "schema_version": 1,
        "command": "place",
        "version": __version__,
        "skimage_version": skimage.__version__,
        "settings": settings.to_json(),
        "new_dir": str(new_source.root),
        "new_split": new_source.name,
        "new_images": int(images.get(new_source.name, 0)),
        "new_errors": int(error_counts.get(new_source.name, 0)),
        "new_skipped_by_extension": new_source.skipped_by_extension,
        "splits": splits,
        "placed": int((placement["split"] != "").sum()),
        "placed_by_reason": {kind: int(kinds.get(kind, 0)) for kind in ("twin", "group", "free")},
        "already_in_a_split": int(kinds.get("already", 0)),
        "conflicts": conflicts,
        "pairs_with_existing": len(comparison.cross),
        "pairs_within_new": len(comparison.within),
        "pairs_computed": comparison.counts.pairs_computed,
        "pairs_pruned": comparison.counts.pairs_pruned,
        "images_decoded": decoded.images_decoded,
        "images_from_cache": decoded.images_from_cache,
        "timings": {name: round(seconds, 4) for name, seconds in timings.items()},
        "exit_code": EXIT_FOUND if conflicts else EXIT_CLEAN,
    }


def _parser() -> _Parser:
    parser = _Parser(
        prog="leakcheck place",
        description="Decide a split for each new image without creating a cross-split near-twin. "
        "Writes placement.csv and summary.json; `leakcheck apply OUT` copies the files.",
        epilog="Exit codes: 0 every new image placed, 1 at least one conflict, 2 usage error.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("new_dir", metavar="NEW_DIR", help="folder of new images")
    add_split_arguments(parser)
    add_setting_arguments(parser)
    return parser


#: Setting flags place does not use (they are the audit's): hidden in --help, refused when typed.
_UNUSED = {
    "formats", "search", "min_recall", "baseline", "write_baseline", "write_manifest", "policy",
    "floor", "html_top_pairs", "thumbnails",
}  # fmt: skip


def main(argv: Sequence[str]) -> int:
    """``leakcheck place``; returns the exit code (usage errors raise)."""
    parser = _parser()
    unused = hide_unused_flags(parser, _UNUSED)
    given = vars(parser.parse_args(list(argv)))
    check_unused_flags(given, unused, "place")
    new_dir = given.pop("new_dir")
    out_given = "out" in given
    splits, manifest, settings = resolve_inputs(argparse.Namespace(**given))
    if not out_given:
        settings = settings.replace(out=DEFAULT_OUT)
    progress = Progress(enabled=not settings.quiet)
    with joblib_backend(settings.backend, settings.scheduler):
        result = place_images(
            new_dir, splits, manifest=manifest, settings=settings, progress=progress
        )
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(result.placement, out / "placement.csv")
    write_table(result.errors, out / "errors.csv")
    write_json(result.summary, out / "summary.json")
    if not settings.quiet:
        print(_verdict(result, out))
    return result.exit_code


def _verdict(result: PlacementResult, out: Path) -> str:
    summary = result.summary
    by = summary["placed_by_reason"]
    where = ", ".join(f"{name} +{info['placed']}" for name, info in summary["splits"].items())
    text = (
        f"leakcheck place: {summary['new_images']} new image(s): {by['twin']} with a near-twin, "
        f"{by['group']} with a new near-twin group, {by['free']} free ({where})"
    )
    if summary["conflicts"]:
        text += f"; CONFLICT: {summary['conflicts']} image(s) have near-twins in several splits"
    if summary["already_in_a_split"]:
        text += f"; {summary['already_in_a_split']} already in a split (same file)"
    if summary["new_errors"]:
        text += f"; {summary['new_errors']} unreadable file(s) in errors.csv"
    return text + f". Plan: {out / 'placement.csv'} (carry it out: leakcheck apply {out} --yes)"
