"""report.html: one self-contained page for people (format ``html``).

The page opens offline: inline CSS, inline SVG, images as ``data:`` URIs, no script, no external
reference. Every string that comes from the user's data (file names, labels, split names, error
messages, paths) goes through :func:`html.escape`.

Large audits stay usable: only the top ``settings.html_top_pairs`` pairs are shown (the rest are
in ``pairs.csv``), tables are cut to ``TABLE_ROW_LIMIT`` rows, and the page is built against a
byte budget of ``settings.html_max_bytes``: thumbnails stop when the next pair would not fit, and
the page says so. (The verdict, split and score sections are always written: a budget smaller
than they are is exceeded by them.) ``settings.thumbnails == False`` leaves every image of the user's data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from leakcheck.audit import AuditResult
from leakcheck.formats import split_pair_counts
from leakcheck.formats.files import write_text_atomic
from leakcheck.formats.junit_xml import columns, group_of, leaking_group_counts, records
from leakcheck.formats.thumbnails import PairImages, histogram_svg, pair_row, pair_views

#: Rows shown per table (plan, errors, group leaks, within-split pairs); the CSV files hold all.
TABLE_ROW_LIMIT = 500
#: Share of the byte budget that each table may use at most.
TABLE_BUDGET_SHARE = 0.1
#: Columns whose text (paths, messages) may wrap anywhere.
LONG_COLUMNS = frozenset({"path", "path_a", "path_b", "folder", "reason", "error", "value"})
#: Bytes kept free for the notices and closing tags written after the pairs.
CLOSING_RESERVE = 4_000


PAGE_STYLE = """
:root { --leak: #b42318; --clean: #067647; --muted: #5d6b7a; --line: #d7dde4; --warn: #b54708; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d2733; background: #f6f8fa; }
main { max-width: 1200px; margin: 0 auto; padding: 0 24px 48px; }
header.verdict { padding: 20px 24px; color: #fff; }
header.verdict h1 { margin: 0 0 4px; font-size: 26px; }
header.verdict p { margin: 0; }
header.verdict a { color: #fff; }
header.leak { background: var(--leak); }
header.clean { background: var(--clean); }
nav { padding: 8px 24px; background: #fff; border-bottom: 1px solid var(--line); }
nav a { margin-right: 16px; color: #1d4ed8; text-decoration: none; }
section { margin-top: 28px; }
h2 { font-size: 20px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 0 0 4px; }
.columns { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; background: #fff; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top;
  overflow-wrap: break-word; }
th { background: #eef2f6; white-space: nowrap; }
td.long { overflow-wrap: anywhere; min-width: 16em; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.highlight td { background: #fff4e5; font-weight: 600; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 13px; max-width: 720px; }
code { font-size: 13px; background: #eef2f6; padding: 0 3px; border-radius: 3px; }
.warning { color: var(--warn); font-weight: 600; }
article.group { background: #fff; border: 1px solid var(--line); border-radius: 6px;
  padding: 12px 16px; margin: 16px 0; }
.pair { display: flex; flex-wrap: wrap; gap: 16px; padding: 10px 0;
  border-top: 1px solid var(--line); }
.pair.noise { background: #fff1f0; }
.pair.accepted { opacity: 0.75; }
.images { display: flex; gap: 8px; }
.images figure { width: 136px; text-align: center; }
.images img, .placeholder { width: 128px; height: 128px; object-fit: contain;
  background: #eef2f6; border: 1px solid var(--line); }
.images img.diff { image-rendering: pixelated; background: #000; }
.placeholder { display: flex; align-items: center; justify-content: center; padding: 6px;
  font-size: 12px; color: var(--muted); overflow: hidden; overflow-wrap: anywhere; }
.details { flex: 1; min-width: 320px; }
.score { font-size: 20px; font-weight: 700; margin: 0; }
.score small { font-size: 13px; font-weight: 400; color: var(--muted); }
.details dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 6px 0 0; }
.details dt { color: var(--muted); }
.details dd { margin: 0; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px;
  margin-right: 6px; }
.badge.noise { background: #fee4e2; color: var(--leak); font-weight: 600; }
.badge.accepted { background: #e0f2fe; color: #075985; }
.badge.warn { background: #fef0c7; color: var(--warn); font-weight: 600; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2733; }
"""


def _cell(value: object, long: bool = False) -> str:
    """One table cell, escaped; numbers right-aligned; ``long`` text may wrap anywhere."""
    if isinstance(value, bool | np.bool_):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int | np.integer):
        return f'<td class="number">{int(value):,}</td>'
    if isinstance(value, float | np.floating):
        return f'<td class="number">{float(value):.6g}</td>'
    if isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    css = ' class="long"' if long else ""
    return f"<td{css}>{escape(str(value))}</td>"


def table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], highlight: set[int] | None = None
) -> str:
    """An HTML table; every cell is escaped; ``highlight`` holds row numbers to mark."""
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    long = [column in LONG_COLUMNS for column in columns]
    marked = highlight or set()
    body = "".join(
        ('<tr class="highlight">' if i in marked else "<tr>")
        + "".join(_cell(value, wrap) for value, wrap in zip(row, long, strict=False))
        + "</tr>\n"
        for i, row in enumerate(rows)
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def write(result: AuditResult, out: Path) -> list[Path]:
    return [write_text_atomic(Path(out) / "report.html", render(result))]


def _size(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def _csv_link(result: AuditResult, name: str) -> str:
    if "csv" in result.settings.formats:
        return f'<a href="{escape(name)}">{escape(name)}</a>'
    return f"{escape(name)} (add <code>csv</code> to <code>--format</code> to write it)"


def render(result: AuditResult) -> str:
    """The whole page as one string, within ``settings.html_max_bytes`` where possible."""
    budget = result.settings.html_max_bytes
    title, verdict = _verdict(result)
    head = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n"
    )
    top = verdict + _overview(result) + _scores(result)
    table_budget = int(budget * TABLE_BUDGET_SHARE)
    tail = (
        _plan(result, table_budget)
        + _group_leaks(result, table_budget)
        + _errors(result, table_budget)
        + _within(result, table_budget)
        + _footer(result)
    )
    closing = "</main>\n</body>\n</html>\n"
    pairs_budget = budget - _size(head + top + tail + closing) - CLOSING_RESERVE
    pairs = _pairs_section(result, pairs_budget)
    return head + top + pairs + tail + closing


# -- headline ----------------------------------------------------------------------------------


def _leaking_pairs(result: AuditResult) -> int:
    return int((~result.pairs["accepted"].astype(bool)).sum()) if len(result.pairs) else 0


def _verdict(result: AuditResult) -> tuple[str, str]:
    summary = result.summary
    threshold = result.settings.threshold
    leaking = _leaking_pairs(result)
    accepted = len(result.pairs) - leaking
    group_leaks = len(result.group_leaks)
    if result.exit_code:
        parts = []
        if leaking:
            parts.append(f"{leaking} cross-split near-twin pair{'s' * (leaking != 1)}")
        if group_leaks:
            parts.append(f"{group_leaks} group id leak{'s' * (group_leaks != 1)}")
        headline = "LEAK: " + (" and ".join(parts) or f"exit code {result.exit_code}")
        css = "leak"
    else:
        headline = "Clean: no cross-split near-twin"
        css = "clean"
    images = sum(info["images"] for info in summary["splits"].values())
    errors = sum(info["errors"] for info in summary["splits"].values())
    facts = [
        f"exit code <b>{result.exit_code}</b>",
        f"threshold SSIM &ge; <b>{threshold:g}</b>",
        f"{images} images in {len(summary['splits'])} splits",
    ]
    if accepted:
        facts.append(f"{accepted} accepted pair{'s' * (accepted != 1)} (baseline)")
    if errors:
        facts.append(f'<a href="#errors">{errors} unreadable file{"s" * (errors != 1)}</a>')
    failing, _ = leaking_group_counts(result)
    if failing:
        facts.append(f"{failing} leaking twin group{'s' * (failing != 1)}")
    if summary.get("reassignments"):
        facts.append(f'<a href="#plan">{summary["reassignments"]} files to move</a>')
    links = [("overview", "Splits"), ("scores", "Scores"), ("pairs", "Twin pairs"),
             ("plan", "Plan")]  # fmt: skip
    if group_leaks:
        links.append(("group-leaks", "Group ids"))
    links.append(("errors", "Unreadable files"))
    if result.settings.within:
        links.append(("within", "Inside one split"))
    links.append(("settings", "Settings"))
    nav = " ".join(f'<a href="#{anchor}">{text}</a>' for anchor, text in links)
    html = (
        f'<header class="verdict {css}">\n<h1>{escape(headline)}</h1>\n'
        f"<p>{' &middot; '.join(facts)}</p>\n</header>\n<nav>{nav}</nav>\n<main>\n"
    )
    return f"leakcheck: {headline}", html


def _overview(result: AuditResult) -> str:
    summary = result.summary
    after = summary.get("split_sizes_after", {})
    split_rows = [
        [name, info["images"], info["errors"], after.get(name, info["images"]), info.get("root")]
        for name, info in summary["splits"].items()
    ]
    pair_rows = [
        [f"{a} / {b}", leaking, accepted] for a, b, leaking, accepted in split_pair_counts(result)
    ]
    warnings = ""
    oversized = summary.get("oversized_groups") or []
    if oversized:
        warnings = (
            '<p class="warning">&#9888; '
            f"{len(oversized)} oversized twin group(s): single-link chaining may have joined "
            "unrelated images. Check their weakest link below before moving files.</p>\n"
        )
    return (
        '<section id="overview">\n<h2>Splits</h2>\n<div class="columns">\n'
        + table(["split", "images", "unreadable", "after the plan", "folder"], split_rows)
        + table(["split pair", "near-twin pairs", "accepted (baseline)"], pair_rows)
        + "</div>\n"
        + warnings
        + "</section>\n"
    )


# -- scores ------------------------------------------------------------------------------------


def _scores(result: AuditResult) -> str:
    summary = result.summary
    threshold = result.settings.threshold
    search = float(summary["search_threshold"])
    scores = result.images["best_score"].to_numpy(dtype=float)
    found = scores[np.isfinite(scores)]
    missing = len(scores) - len(found)
    counts = summary.get("counts_by_threshold", {})
    current = f"{threshold:.2f}"
    rows = [[key, value] for key, value in counts.items()]
    highlighted = {i for i, key in enumerate(counts) if key == current}
    note = (
        f"<p>Each image's best SSIM with any image of another split. {missing} of {len(scores)} "
        f"images have no cross-split partner scoring &ge; {search:g} (the search threshold: "
        "scores below it are not computed exactly, so those images are not drawn). "
        "Run with <code>--floor T</code> to see scores down to T.</p>\n"
    )
    return (
        '<section id="scores">\n<h2>Scores</h2>\n' + note + '<div class="columns">\n'
        f"<figure>{histogram_svg(found, threshold=threshold, low=search)}"
        "<figcaption>Best cross-split score per image; red bars are at or above the threshold "
        "(dashed line).</figcaption></figure>\n"
        "<div><h3>What moving the threshold would do</h3>"
        + table(["threshold", "cross-split pairs at or above"], rows, highlight=highlighted)
        + "</div>\n</div>\n</section>\n"
    )


# -- twin pairs --------------------------------------------------------------------------------


def _pairs_section(result: AuditResult, budget: int) -> str:
    settings = result.settings
    pairs = result.pairs
    total = len(pairs)
    header = '<section id="pairs">\n<h2>Twin pairs</h2>\n'
    if total == 0:
        return header + "<p>No cross-split near-twin pair.</p>\n</section>\n"
    shown = pairs.head(settings.html_top_pairs)
    notes = [
        f"{total} cross-split pair(s) at SSIM &ge; {settings.threshold:g}, grouped by twin group "
        "(images joined by near-twin links), strongest first."
    ]
    if len(shown) < total:
        notes.append(
            f"The page shows the top {len(shown)} (<code>html_top_pairs</code>); "
            f"all {total} are in {_csv_link(result, 'pairs.csv')}."
        )
    if not settings.thumbnails:
        notes.append("Thumbnails are off (<code>--no-thumbnails</code>).")
    views = pair_views(shown, group_of(result), result.images)
    headers = _group_headers(result, [view.group for view in views])
    remaining = budget - _size(header) - 2_000
    rows: dict[str, list[str]] = {}
    thumbnails = settings.thumbnails
    stopped_thumbnails = omitted = 0
    images = PairImages(size=settings.size, max_pixels=settings.max_pixels)
    for view in views:
        # A group's title (and closing tag) is paid for with its first pair.
        opening = 0 if view.group in rows else _size(headers[view.group]) + len("</article>\n")
        row = pair_row(view, images) if thumbnails else ""
        if thumbnails and opening + _size(row) > remaining:
            thumbnails, stopped_thumbnails = False, view.rank
        if not thumbnails:
            row = pair_row(view, None)
        if opening + _size(row) > remaining:
            omitted = len(views) - view.rank + 1
            break
        remaining -= opening + _size(row)
        rows.setdefault(view.group, []).append(row)
    if stopped_thumbnails:
        notes.append(
            f'<span class="warning">Thumbnails stop at pair #{stopped_thumbnails}: the page '
            f"would grow past its size limit of {settings.html_max_bytes:,} bytes "
            "(<code>html_max_bytes</code>).</span>"
        )
    if omitted:
        notes.append(
            f'<span class="warning">{omitted} more pair(s) left off to stay under '
            f"{settings.html_max_bytes:,} bytes; see {_csv_link(result, 'pairs.csv')}.</span>"
        )
    body = "".join(
        headers[group] + "".join(group_rows) + "</article>\n" for group, group_rows in rows.items()
    )
    return header + "<p>" + " ".join(notes) + "</p>\n" + body + "</section>\n"


def _group_headers(result: AuditResult, groups: list[str]) -> dict[str, str]:
    """The titles of the twin groups named in ``groups``, in their order of first appearance."""
    order = list(dict.fromkeys(groups))
    wanted = set(order)
    labels_of: dict[str, list[str]] = {}
    for group, label in columns(result.groups, "group", "label"):
        if group in wanted:
            labels_of.setdefault(group, []).append(label or "")
    info = result.group_info
    info_of = {row.group: row for row in records(info[info["group"].isin(order)])}
    return {
        group: _group_header(
            group, labels_of.get(group, ["", ""]), info_of.get(group), result.split_order
        )
        for group in order
    }


def _group_header(group: str, labels: list[str], info: Any, split_order: list[str]) -> str:
    """The title of a twin group: size, splits, weakest link, warnings. ``info``: its group_info
    row (or None), ``labels``: its members' labels."""
    facts = [f"{len(labels)} images"]
    badges = []
    if info is not None:
        spanned = set(str(info.splits).split(";"))
        facts.append("splits " + ", ".join(s for s in split_order if s in spanned))
        facts.append(f"weakest link SSIM {float(info.weakest_link):.4f}")
        if bool(info.oversized):
            badges.append(
                '<span class="badge warn">&#9888; oversized: check the weakest link, chaining '
                "may join unrelated images</span>"
            )
    distinct = sorted({label for label in labels if label})
    if len(distinct) > 1:
        badges.append(
            '<span class="badge noise">labels differ: ' + escape(", ".join(distinct)) + "</span>"
        )
    return (
        f'<article class="group">\n<h3>Twin group <code>{escape(group)}</code></h3>\n'
        f"<p>{escape(' · '.join(facts))} {' '.join(badges)}</p>\n"
    )


# -- tables ------------------------------------------------------------------------------------


def _capped_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], total: int, budget: int, file: str,
    result: AuditResult,
) -> str:  # fmt: skip
    """A table of at most TABLE_ROW_LIMIT rows and about ``budget`` bytes."""
    kept: list[Sequence[object]] = []
    used = 0
    for row in rows:
        if len(kept) >= TABLE_ROW_LIMIT:
            break
        cost = sum(_size(str(value)) + 12 for value in row) + 10
        if used + cost > budget:
            break
        kept.append(row)
        used += cost
    html = table(columns, kept)
    if len(kept) < total:
        html += f"<p>{total - len(kept)} more row(s) in {_csv_link(result, file)}.</p>\n"
    return html


def _plan(result: AuditResult, budget: int) -> str:
    plan = result.reassignments
    html = '<section id="plan">\n<h2>Reassignment plan</h2>\n'
    if plan.empty:
        return html + "<p>Nothing to move.</p>\n</section>\n"
    sizes = result.summary.get("split_sizes_after", {})
    html += (
        f"<p>Policy <code>{escape(result.settings.policy)}</code>: move {len(plan):,} file(s) so "
        "that every twin group lives in one split; <code>leakcheck apply REPORT_DIR</code> "
        "shows it, <code>--yes</code> does it. Split sizes after: "
        + escape(", ".join(f"{name} {count}" for name, count in sizes.items()))
        + ".</p>\n"
    )
    columns = ["path", "from_split", "to_split", "group", "reason"]
    rows = records(plan.head(TABLE_ROW_LIMIT), columns)
    return (
        html
        + _capped_table(columns, rows, len(plan), budget, "reassignments.csv", result)
        + ("</section>\n")
    )


def _group_leaks(result: AuditResult, budget: int) -> str:
    leaks = result.group_leaks
    if leaks.empty:
        return ""
    columns = ["group", "split_a", "count_a", "split_b", "count_b"]
    return (
        '<section id="group-leaks">\n<h2>Group ids in several splits</h2>\n'
        "<p>These manifest <code>group</code> ids have images in more than one split.</p>\n"
        + _capped_table(
            columns,
            records(leaks.head(TABLE_ROW_LIMIT), columns),
            len(leaks),
            budget,
            "group_leaks.csv",
            result,
        )  # fmt: skip
        + "</section>\n"
    )


def _errors(result: AuditResult, budget: int) -> str:
    errors = result.errors
    html = '<section id="errors">\n<h2>Unreadable files</h2>\n'
    if errors.empty:
        return html + "<p>Every file could be read.</p>\n</section>\n"
    html += "<p>These files were not audited. They do not change the exit code.</p>\n"
    columns = ["split", "path", "error"]
    rows = records(errors.head(TABLE_ROW_LIMIT), columns)
    return (
        html
        + _capped_table(columns, rows, len(errors), budget, "errors.csv", result)
        + ("</section>\n")
    )


def _within(result: AuditResult, budget: int) -> str:
    if not result.settings.within:
        return ""
    within = result.within_pairs
    html = (
        '<section id="within">\n<h2>Near-twins inside one split</h2>\n'
        "<p>Listed because of <code>--within</code>; they never change the exit code.</p>\n"
    )
    if within.empty:
        return html + "<p>None.</p>\n</section>\n"
    columns = ["split", "path_a", "path_b", "ssim", "method"]
    rows = (
        [r.split_a, r.path_a, r.path_b, float(r.ssim), r.method]
        for r in records(within.head(TABLE_ROW_LIMIT))
    )
    return (
        html
        + _capped_table(columns, rows, len(within), budget, "within_pairs.csv", result)
        + ("</section>\n")
    )


def _footer(result: AuditResult) -> str:
    summary = result.summary
    settings = summary.get("settings", {})
    rows = [[key, "" if value is None else value] for key, value in settings.items()]
    timings = summary.get("timings", {})
    seconds = sum(value for value in timings.values() if isinstance(value, int | float))
    computed = summary.get("pairs_computed", 0)
    pruned = summary.get("pairs_pruned", 0)
    return (
        '<section id="settings">\n<h2>Settings</h2>\n'
        f"<p>leakcheck {escape(str(summary.get('version', '')))}, scikit-image "
        f"{escape(str(summary.get('skimage_version', '')))}; {summary.get('pairs_total', 0):,} "
        f"pairs of images; {computed:,} SSIM values computed and {pruned:,} pruned by a proven "
        f"bound (each robust variant counts apart); {seconds:.1f} s. Machine-readable results: {_csv_link(result, 'pairs.csv')}, "
        '<a href="summary.json">summary.json</a>.</p>\n'
        "<details><summary>Every setting used</summary>\n"
        + table(["setting", "value"], rows)
        + "</details>\n</section>\n"
    )
