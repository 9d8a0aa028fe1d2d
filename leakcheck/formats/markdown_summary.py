"""summary.md (format ``markdown``): a short summary for a pull-request comment or
``$GITHUB_STEP_SUMMARY``.

Verdict, counts per split pair, the top ``TOP_PAIRS`` pairs as a table, the plan's size and the
number of unreadable files. Every user string goes through :func:`markdown_text`, so a ``|`` or a
newline in a file name cannot break a table, and HTML in a name shows as text.
"""

from __future__ import annotations

import re
from pathlib import Path

from leakcheck.audit import AuditResult
from leakcheck.formats import split_pair_counts
from leakcheck.formats.files import write_text_atomic
from leakcheck.formats.junit_xml import leaking_group_counts

#: Pairs listed in the summary; the rest are in pairs.csv / report.html.
TOP_PAIRS = 20

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def markdown_text(value: object) -> str:
    """``value`` as inline Markdown text: one line, HTML and Markdown syntax escaped."""
    text = " ".join(str(value).splitlines()) if value is not None else ""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _verdict(result: AuditResult) -> list[str]:
    summary = result.summary
    pairs = result.pairs
    accepted = int(pairs["accepted"].astype(bool).sum()) if len(pairs) else 0
    leaking = len(pairs) - accepted
    threshold = result.settings.threshold
    if result.exit_code:
        parts = []
        if leaking:
            parts.append(f"{leaking} cross-split near-twin pair{'s' * (leaking != 1)}")
        if len(result.group_leaks):
            parts.append(f"{len(result.group_leaks)} group id leak(s)")
        headline = (
            f"## leakcheck: ❌ LEAK — {' and '.join(parts) or f'exit code {result.exit_code}'}"
        )
    else:
        headline = "## leakcheck: ✅ clean — no cross-split near-twin"
    sizes = ", ".join(
        f"{markdown_text(name)} {info['images']}" for name, info in summary["splits"].items()
    )
    facts = f"Exit code **{result.exit_code}** · threshold SSIM ≥ {threshold:g} · images: {sizes}"
    if accepted:
        facts += f" · {accepted} accepted pair(s) (baseline)"
    return [headline, "", facts, ""]


def _split_pairs(result: AuditResult) -> list[str]:
    lines = [_row(["split pair", "near-twin pairs", "accepted"]), "| --- | ---: | ---: |"]
    for a, b, leaking, accepted in split_pair_counts(result):
        lines.append(_row([f"{markdown_text(a)} / {markdown_text(b)}", leaking, accepted]))
    return lines + [""]


def _top_pairs(result: AuditResult) -> list[str]:
    pairs = result.pairs
    if pairs.empty:
        return []
    shown = pairs.head(TOP_PAIRS)
    title = (
        f"### Top {len(shown)} of {len(pairs)} pairs" if len(pairs) > len(shown) else "### Pairs"
    )
    lines = [
        title,
        "",
        _row(["#", "SSIM", "method", "A", "label A", "B", "label B", "note"]),
        "| ---: | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    for rank, row in enumerate(shown.itertuples(index=False), start=1):
        notes = []
        if bool(row.accepted):
            notes.append("accepted")
        if row.label_a and row.label_b and row.label_a != row.label_b:
            notes.append("**labels differ**")
        lines.append(
            _row(
                [
                    rank,
                    f"{row.ssim:.4f}",
                    markdown_text(row.method),
                    f"{markdown_text(row.split_a)}/{markdown_text(row.path_a)}",
                    markdown_text(row.label_a),
                    f"{markdown_text(row.split_b)}/{markdown_text(row.path_b)}",
                    markdown_text(row.label_b),
                    ", ".join(notes),
                ]
            )  # fmt: skip
        )
    if len(pairs) > len(shown):
        lines += ["", f"All {len(pairs)} pairs are in `pairs.csv` and `report.html`."]
    return lines + [""]


def _footer(result: AuditResult) -> list[str]:
    summary = result.summary
    failing, accepted = leaking_group_counts(result)
    plan = len(result.reassignments)
    errors = len(result.errors)
    lines = [
        f"- Leaking twin groups: **{failing}**" + (f" ({accepted} accepted)" if accepted else ""),
        f"- Reassignment plan: {plan} file(s) to move"
        + (" (`reassignments.csv`; `leakcheck apply REPORT_DIR` to see it)" if plan else ""),
        f"- Unreadable files: {errors}" + (" (`errors.csv`)" if errors else ""),
    ]
    if len(result.group_leaks):
        lines.append(
            f"- Group ids in several splits: {len(result.group_leaks)} (`group_leaks.csv`)"
        )
    if summary.get("oversized_groups"):
        lines.append(
            f"- ⚠️ {len(summary['oversized_groups'])} oversized twin group(s): check their weakest "
            "link in `report.html`"
        )
    return lines


def render(result: AuditResult) -> str:
    lines = _verdict(result) + _split_pairs(result) + _top_pairs(result) + _footer(result)
    return "\n".join(lines) + "\n"


def write(result: AuditResult, out: Path) -> list[Path]:
    return [write_text_atomic(Path(out) / "summary.md", render(result))]
