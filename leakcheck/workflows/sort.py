"""``leakcheck sort DIR``: order a batch of images by structural similarity.

The batch's canonical arrays are compared all against all with the audit's exact SSIM engine
(identical canonical images score 1 without being searched). Then:

1. **Clusters** are single-linkage clusters of the maximum spanning tree of the SSIM graph: with
   ``--cut T`` (default 0.5) every pair with SSIM >= T ends up in one cluster; with
   ``--clusters K`` the K−1 weakest tree links are cut.
2. **The chain** starts at ``--start`` (default: the first image by path) and steps to the most
   similar image not yet visited *in the current cluster*; when the cluster is used up it jumps to
   the most similar unvisited image anywhere, whose cluster comes next. So every cluster is one
   contiguous run of the order, and a burst of near-identical frames is visited in one go.

Outputs (in ``--out``, default ``leakcheck-sort/``): ``order.csv`` (``rank, path,
ssim_to_previous, cluster``), ``clusters.csv``, ``errors.csv``, ``summary.json`` and
``contact_sheet.html``. ``--copy-to DIR`` copies (never moves, never overwrites) the batch into
``DIR/cluster-001/0001-name.png``… in chain order.

Cost: ``n(n−1)/2`` exact SSIM evaluations among distinct images and an ``n × n`` float64 matrix.
Measured on 2,000 photo crops at ``--size 64`` (1.98 million pairs): about 52 CPU-seconds in all
(the comparison about 23 µs per pair per core; decoding, chain and contact sheet a few seconds),
530 MB peak memory; 77 s wall-clock on a shared 2-core VM, so roughly 7–15 s on an idle 4–8 core
laptop. At the default size 32 the comparison is about four times cheaper. The matrix is kept in
the cache, so sorting the same batch again with another ``--cut`` or ``--start`` takes seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skimage

from leakcheck import __version__
from leakcheck.cache import Cache, settings_key
from leakcheck.cli import EXIT_CLEAN, UsageError, _Parser, add_setting_arguments
from leakcheck.engine.backends import joblib_backend
from leakcheck.engine.compare import content_ids
from leakcheck.formats.csv_tables import write_table
from leakcheck.formats.json_files import write_json
from leakcheck.progress import Progress
from leakcheck.settings import Settings
from leakcheck.sources import SourceError, scan_split_folder
from leakcheck.workflows import (
    check_unused_flags,
    decode_through_cache,
    hide_unused_flags,
    workflow_settings,
)
from leakcheck.workflows.chain import greedy_chain, similarity_matrix, single_linkage

DEFAULT_CUT = 0.5
DEFAULT_OUT = Path("leakcheck-sort")
BATCH = "batch"
ORDER_COLUMNS = ["rank", "path", "ssim_to_previous", "cluster"]
CLUSTER_COLUMNS = [
    "cluster", "size", "first_rank", "last_rank", "first_path", "last_path",
    "entry_ssim", "mean_link_ssim", "weakest_link_ssim",
]  # fmt: skip
ERROR_COLUMNS = ["path", "error"]
#: The settings that change what sort does (the rest of an audit's settings are not used).
SORT_SETTINGS = (
    "size", "color", "window", "max_pixels", "cache", "cache_dir", "jobs", "backend",
    "thumbnails", "out", "quiet", "html_max_bytes",
)  # fmt: skip


@dataclass(frozen=True)
class SortResult:
    """A sorted batch. ``files[k]`` is the file of ``order`` row ``k``."""

    folder: Path
    order: pd.DataFrame
    clusters: pd.DataFrame
    errors: pd.DataFrame
    files: list[str]
    settings: Settings
    summary: dict[str, Any] = field(default_factory=dict)


# -- the similarity matrix, through the cache ------------------------------------------------


def _cached_similarity(
    pixels: np.ndarray, sha256: Sequence[str], settings: Settings, progress: Progress
) -> tuple[np.ndarray, bool]:
    """:func:`similarity_matrix`, kept in the cache as its upper triangle."""
    key = "sort-similarity:" + settings_key(
        list(sha256), settings.size, settings.color, settings.window, settings.max_pixels
    )
    cache = Cache(settings.cache_dir) if settings.cache else None
    try:
        stored = cache.get_result(key) if cache is not None else None
        n = pixels.shape[0]
        upper = np.triu_indices(n, 1)
        if isinstance(stored, np.ndarray) and stored.shape == (upper[0].size,):
            similarity = np.eye(n)
            similarity[upper] = stored
            similarity[upper[1], upper[0]] = stored
            return similarity, True
        with progress.bar("comparing", total=0, unit="pairs") as bar:
            similarity = similarity_matrix(
                pixels, window_name=settings.window, jobs=settings.jobs,
                backend=settings.backend, on_total=bar.set_total, on_progress=bar,
            )  # fmt: skip
        if cache is not None:
            cache.put_result(key, similarity[upper])
        return similarity, False
    finally:
        if cache is not None:
            cache.close()


# -- the workflow ----------------------------------------------------------------------------------


def sort_folder(
    folder: str | Path,
    *,
    settings: Settings | None = None,
    start: str | Path | None = None,
    cut: float | None = None,
    clusters: int | None = None,
    progress: Progress | None = None,
) -> SortResult:
    """Order the images of ``folder`` by SSIM and cut the order into clusters.

    Parameters
    ----------
    folder : path
        The batch; walked recursively like a split folder.
    settings : Settings, optional
        Comparison size, colour, window, cache, jobs… (``threshold`` and ``variants`` are unused).
    start : path, optional
        The first image: a path relative to ``folder`` or a path to a file in it. Default: the
        first image by path.
    cut, clusters : float or int, optional
        Cut tree links below ``cut`` (default 0.5), or cut into ``clusters`` clusters.
    progress : Progress, optional
        Progress bars on stderr.

    Returns
    -------
    SortResult

    Raises
    ------
    SourceError
        No such folder, no image in it, none decodable, or ``start`` not among its images.
    """
    settings = settings or Settings()
    progress = progress or Progress(enabled=False)
    if cut is not None and clusters is not None:
        raise SourceError("give either a cut threshold or a number of clusters, not both")
    if cut is not None and not -1.0 <= cut <= 1.0:
        raise SourceError(f"the cut must be in [-1, 1], got {cut}")
    if clusters is not None and clusters < 1:
        raise SourceError(f"the number of clusters must be at least 1, got {clusters}")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a folder")
    source = scan_split_folder(BATCH, folder, labels="none")
    if not source.records:
        raise SourceError(
            f"{folder} has no image files (png, jpg, jpeg, bmp, gif, tif, tiff, webp)"
        )
    decoded = decode_through_cache([source], settings, progress)
    if not decoded.records:
        raise SourceError(f"{folder} has no decodable image ({len(decoded.errors)} files failed)")
    timings["decode"] = time.perf_counter() - clock
    paths = [record.path for record in decoded.records]
    first = 0 if start is None else _start_index(start, folder, decoded.records)

    clock = time.perf_counter()
    similarity, from_cache = _cached_similarity(
        decoded.pixels, decoded.file_sha256, settings, progress
    )
    timings["compare"] = time.perf_counter() - clock
    clock = time.perf_counter()
    if clusters is None and cut is None:
        cut = DEFAULT_CUT
    labels, weakest = single_linkage(similarity, cut=cut, clusters=clusters)
    order = greedy_chain(similarity, labels, first)
    timings["chain"] = time.perf_counter() - clock

    links = np.r_[np.nan, similarity[order[:-1], order[1:]]]
    number_of = {label: k + 1 for k, label in enumerate(dict.fromkeys(labels[order].tolist()))}
    order_frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "path": [paths[k] for k in order],
            "ssim_to_previous": links,
            "cluster": [number_of[labels[k]] for k in order],
        }
    )
    cluster_frame = _cluster_table(order_frame, {number_of[k]: weakest[k] for k in number_of})
    errors = pd.DataFrame([(r.path, reason) for r, reason in decoded.errors], columns=ERROR_COLUMNS)
    n = len(order)
    distinct = len(np.unique(content_ids(decoded.pixels)))
    summary = {
        "schema_version": 1,
        "command": "sort",
        "version": __version__,
        "skimage_version": skimage.__version__,
        "folder": str(source.root),
        "settings": {
            **{k: v for k, v in settings.to_json().items() if k in SORT_SETTINGS},
            "start": paths[first],
            "cut": None if clusters is not None else (DEFAULT_CUT if cut is None else cut),
            "clusters": clusters,
        },
        "images": n,
        "errors": len(errors),
        "skipped_by_extension": source.skipped_by_extension,
        "clusters": len(cluster_frame),
        "pairs_total": n * (n - 1) // 2,
        "pairs_computed": 0 if from_cache else distinct * (distinct - 1) // 2,
        "comparison_from_cache": from_cache,
        "images_decoded": decoded.images_decoded,
        "images_from_cache": decoded.images_from_cache,
        "timings": {name: round(seconds, 4) for name, seconds in timings.items()},
        "exit_code": EXIT_CLEAN,
    }
    files = [decoded.records[k].file for k in order]
    return SortResult(
        source.root or folder, order_frame, cluster_frame, errors, files, settings, summary
    )


def _start_index(start: str | Path, folder: Path, records: Sequence[Any]) -> int:
    text = str(start).replace("\\", "/")
    for index, record in enumerate(records):
        if record.path == text:
            return index
    wanted = Path(start).expanduser().resolve()
    for index, record in enumerate(records):
        if record.file == str(wanted):
            return index
    raise SourceError(
        f"--start {start}: not a decodable image of {folder} (give a path relative to the folder, "
        "as order.csv writes it)"
    )


def _cluster_table(order: pd.DataFrame, weakest: dict[int, float]) -> pd.DataFrame:
    rows = []
    for number, members in order.groupby("cluster", sort=True):
        inside = members["ssim_to_previous"].iloc[1:]
        rows.append(
            (
                int(number), len(members), int(members["rank"].iloc[0]),
                int(members["rank"].iloc[-1]), members["path"].iloc[0], members["path"].iloc[-1],
                members["ssim_to_previous"].iloc[0], inside.mean() if len(inside) else np.nan,
                weakest[int(number)],
            )
        )  # fmt: skip
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)


# -- copies ----------------------------------------------------------------------------------------


def copy_clusters(result: SortResult, copy_to: Path) -> list[Path]:
    """Copy the batch into ``copy_to/cluster-001/0001-name.ext``… in chain order.

    Never moves, never overwrites: a name that exists gets ``-2``, ``-3``… before its suffix.
    Returns the path written for each row of ``result.order``.
    """
    copy_to = Path(copy_to).expanduser()
    n = len(result.order)
    cluster_width = max(3, len(str(int(result.order["cluster"].max()))))
    rank_width = max(4, len(str(n)))
    written = []
    for row, file in zip(result.order.itertuples(index=False), result.files, strict=True):
        folder = copy_to / f"cluster-{row.cluster:0{cluster_width}d}"
        folder.mkdir(parents=True, exist_ok=True)
        written.append(_copy_new(file, folder / f"{row.rank:0{rank_width}d}-{Path(row.path).name}"))
    return written


def _copy_new(source: str, target: Path) -> Path:
    """Copy ``source`` to ``target`` or the first free ``target-2``…; never overwrites."""
    for attempt in range(1, 10_000):
        name = target if attempt == 1 else target.with_stem(f"{target.stem}-{attempt}")
        try:
            handle = name.open("xb")  # exclusive: fails if the name exists
        except FileExistsError:
            continue
        try:
            with handle, open(source, "rb") as original:
                shutil.copyfileobj(original, handle)
            shutil.copystat(source, name)
        except BaseException:
            name.unlink(missing_ok=True)  # our own half-written copy
            raise
        return name
    raise OSError(f"no free name for {target}")


# -- command line ----------------------------------------------------------------------------------


def _parser() -> _Parser:
    parser = _Parser(
        prog="leakcheck sort",
        description="Order a batch of images by SSIM (greedy nearest-neighbour chain) and cut it "
        "into clusters. Writes order.csv, clusters.csv and contact_sheet.html.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("folder", metavar="DIR", help="the batch of images")
    parser.add_argument("--start", metavar="PATH", help="first image (default: first by path)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--cut", type=float, metavar="T",
                     help=f"cut where neighbours' SSIM < T (default {DEFAULT_CUT})")  # fmt: skip
    how.add_argument("--clusters", type=int, metavar="K", help="cut into K clusters")
    parser.add_argument("--copy-to", dest="copy_to", metavar="DIR",
                        help="copy the batch into DIR/cluster-001/… (never moves)")  # fmt: skip
    parser.add_argument("--config", help="TOML config file (flags win)")
    add_setting_arguments(parser)
    return parser


#: Setting flags sort does not use (they are the audit's): hidden in --help, refused when typed.
_UNUSED = {f.name for f in dataclasses.fields(Settings)} - {
    *SORT_SETTINGS,
    "scheduler",
    "threshold",
}


def main(argv: Sequence[str]) -> int:
    """``leakcheck sort``; returns the exit code (0 done; usage errors raise)."""
    from leakcheck.workflows.contact_sheet import write_contact_sheet

    parser = _parser()
    unused = hide_unused_flags(parser, _UNUSED | {"threshold"})
    given = vars(parser.parse_args(list(argv)))
    if "threshold" in given:
        raise UsageError("leakcheck sort has no --threshold; use --cut T or --clusters K")
    check_unused_flags(given, unused, "sort")
    options = {name: given.pop(name, None) for name in ("folder", "start", "cut", "clusters")}
    copy_to = given.pop("copy_to", None)
    settings = workflow_settings(given, default_out=DEFAULT_OUT)
    folder = Path(options["folder"]).expanduser()
    if copy_to is not None:
        _check_copy_to(Path(copy_to).expanduser(), folder)
    progress = Progress(enabled=not settings.quiet)
    with joblib_backend(settings.backend, settings.scheduler):
        result = sort_folder(
            folder, settings=settings, start=options["start"], cut=options["cut"],
            clusters=options["clusters"], progress=progress,
        )  # fmt: skip
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    order = result.order
    if copy_to is not None:
        copies = copy_clusters(result, Path(copy_to))
        order = order.assign(copied_to=[str(path) for path in copies])
        result.summary["copy_to"] = str(Path(copy_to).expanduser().resolve())
    write_table(order, out / "order.csv")
    write_table(result.clusters, out / "clusters.csv")
    write_table(result.errors, out / "errors.csv")
    write_contact_sheet(result, out / "contact_sheet.html", progress=progress)
    write_json(result.summary, out / "summary.json")
    if not settings.quiet:
        errors = (
            f"; {len(result.errors)} unreadable file(s) in errors.csv" if len(result.errors) else ""
        )
        print(
            f"leakcheck sort: {len(order)} images in {len(result.clusters)} cluster(s){errors}. "
            f"Order: {out / 'order.csv'}, contact sheet: {out / 'contact_sheet.html'}"
            + (f"; copies in {copy_to}/" if copy_to is not None else "")
        )
    return EXIT_CLEAN


def _check_copy_to(copy_to: Path, folder: Path) -> None:
    """Copies inside the batch would be sorted with it next time: refuse."""
    target, batch = copy_to.resolve(), folder.resolve()
    if target == batch or batch in target.parents:
        raise UsageError(f"--copy-to {copy_to} is inside the batch folder {folder}; choose another")
    if target.exists() and not target.is_dir():
        raise UsageError(f"--copy-to {copy_to} exists and is not a folder")
