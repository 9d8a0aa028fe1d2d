"""``contact_sheet.html`` of ``leakcheck sort``: the batch in chain order, one section per cluster.

The page is self-contained: thumbnails are ``data:`` URIs (the audit report's JPEG thumbnails),
there is no script and nothing is fetched. Every file name is escaped. Thumbnails stop once the
page would exceed ``html_max_bytes``; ``--no-thumbnails`` leaves them all out.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import joblib

from leakcheck.formats.files import write_text_atomic
from leakcheck.formats.thumbnails import THUMBNAIL_SIDE, ThumbnailError, thumbnail_data_uri
from leakcheck.progress import Progress

if TYPE_CHECKING:
    from leakcheck.workflows.sort import SortResult

#: Thumbnails made per joblib task.
_THUMBNAIL_BATCH = 32

_STYLE = f"""
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }}
h1 {{ font-size: 1.4em; margin: 0 0 .3em; }}
.meta {{ color: #555; margin: 0 0 1em; }}
.sheet {{ display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }}
section.cluster {{ border: 2px solid #3465a4; border-radius: 6px; padding: 4px 6px 6px;
  max-width: 100%; box-sizing: border-box; }}
section.cluster h2 {{ font-size: .85em; margin: 0 0 4px; color: #3465a4; }}
.jump {{ color: #a40000; font-weight: normal; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 6px; }}
figure {{ margin: 0; width: {THUMBNAIL_SIDE + 8}px; background: #f4f4f4; padding: 4px;
  border-radius: 4px; box-sizing: border-box; }}
figure img {{ display: block; max-width: {THUMBNAIL_SIDE}px; max-height: {THUMBNAIL_SIDE}px;
  margin: 0 auto; }}
.placeholder {{ height: {THUMBNAIL_SIDE // 2}px; color: #777; font-size: .8em; display: flex;
  align-items: center; justify-content: center; text-align: center; }}
figcaption {{ font-size: .75em; word-break: break-all; margin-top: 3px; }}
.rank {{ font-weight: bold; }}
.link {{ color: #555; }}
"""


def _thumbnails(files: list[str], max_pixels: int | None) -> list[str | ThumbnailError]:
    out: list[str | ThumbnailError] = []
    for file in files:
        try:
            out.append(thumbnail_data_uri(file, max_pixels=max_pixels))
        except ThumbnailError as error:
            out.append(error)
    return out


def make_thumbnails(
    files: list[str], *, max_pixels: int | None, jobs: int, progress: Progress
) -> list[str | ThumbnailError]:
    """One thumbnail (or the reason there is none) per file, in order; decoded in threads."""
    batches = [files[i : i + _THUMBNAIL_BATCH] for i in range(0, len(files), _THUMBNAIL_BATCH)]
    runner = joblib.Parallel(n_jobs=jobs, backend="threading", return_as="generator")
    tasks = (joblib.delayed(_thumbnails)(batch, max_pixels) for batch in batches)
    results: list[str | ThumbnailError] = []
    with progress.bar("thumbnails", total=len(files)) as bar:
        for part in runner(tasks):
            results.extend(part)
            bar(len(part))
    return results


def _link_text(value: float) -> str:
    return "start" if math.isnan(value) else f"SSIM {value:.3f} to previous"


def _figure(rank: int, path: str, link: float, image: str | ThumbnailError | None) -> str:
    if isinstance(image, str):
        inner = f'<img src="{image}" alt="{escape(path)}" loading="lazy">'
    else:
        reason = "left out" if image is None else f"no preview: {image}"
        inner = f'<div class="placeholder">{escape(reason)}</div>'
    return (
        f'<figure id="rank-{rank}" title="{escape(path)}">{inner}<figcaption>'
        f'<span class="rank">#{rank}</span> <span class="path">{escape(path)}</span><br>'
        f'<span class="link">{escape(_link_text(link))}</span></figcaption></figure>'
    )


def render_contact_sheet(result: SortResult, thumbnails: list[str | ThumbnailError | None]) -> str:
    """The page as text; ``thumbnails[k]`` belongs to ``result.order`` row ``k``."""
    summary = result.summary
    settings = summary["settings"]
    how = (
        f"cut into {settings['clusters']} clusters"
        if settings.get("clusters")
        else f"clusters cut where SSIM &lt; {settings['cut']}"
    )
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>leakcheck sort: {escape(str(result.folder))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Contact sheet: {len(result.order)} images in {len(result.clusters)} cluster(s)</h1>",
        f'<p class="meta">{escape(str(result.folder))} · chain from '
        f"{escape(str(settings['start']))} · {how} · SSIM at {escape(str(settings['size']))} px, "
        f"{escape(str(settings['color']))}, {escape(str(settings['window']))} window · "
        f"leakcheck {escape(str(summary['version']))}</p>",
    ]
    if len(result.errors):
        parts.append(
            f'<p class="meta">{len(result.errors)} file(s) could not be read: see errors.csv</p>'
        )
    info = result.clusters.set_index("cluster")
    rows = list(result.order.itertuples(index=False))
    parts.append('<div class="sheet">')
    position = 0
    for number, cluster in info.iterrows():
        size = int(cluster["size"])
        weakest, entry = cluster["weakest_link_ssim"], cluster["entry_ssim"]
        held = "" if math.isnan(weakest) else f" · linked at SSIM ≥ {weakest:.3f}"
        jump = (
            ""
            if math.isnan(entry)
            else f' <span class="jump" title="SSIM to the last image of the previous cluster">'
            f"· boundary {entry:.3f}</span>"
        )
        parts.append(
            f'<section class="cluster" id="cluster-{number}"><h2>Cluster {number} · '
            f'{size} image{"s" if size != 1 else ""}{held}{jump}</h2><div class="grid">'
        )
        for row, image in zip(
            rows[position : position + size], thumbnails[position : position + size], strict=True
        ):
            parts.append(_figure(row.rank, row.path, row.ssim_to_previous, image))
        position += size
        parts.append("</div></section>")
    parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_contact_sheet(result: SortResult, path: Path, *, progress: Progress) -> Path:
    """Write ``contact_sheet.html`` (thumbnails unless ``--no-thumbnails``, within the budget)."""
    settings = result.settings
    thumbnails: list[str | ThumbnailError | None] = [None] * len(result.order)
    if settings.thumbnails:
        made = make_thumbnails(
            result.files, max_pixels=settings.max_pixels, jobs=settings.jobs, progress=progress
        )
        budget = settings.html_max_bytes - len(render_contact_sheet(result, thumbnails))
        for index, image in enumerate(made):
            cost = len(image) if isinstance(image, str) else 0
            if cost > budget:
                break  # the rest stay "left out": the page keeps within html_max_bytes
            budget -= cost
            thumbnails[index] = image
    write_text_atomic(path, render_contact_sheet(result, thumbnails))
    return path
