"""Output formats: one module per format, each with ``write(result, out_dir) -> [paths]``.

``summary.json`` is always written, last, so that it can record what the other files cost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

from leakcheck.audit import AuditResult

_MODULES = {
    "csv": "leakcheck.formats.csv_tables",
    "json": "leakcheck.formats.json_files",
    "html": "leakcheck.formats.html_report",
    "markdown": "leakcheck.formats.markdown_summary",
    "junit": "leakcheck.formats.junit_xml",
}


def split_pair_counts(result: AuditResult) -> list[tuple[str, str, int, int]]:
    """``(split_a, split_b, leaking pairs, accepted pairs)`` for every pair of splits, in order."""
    pairs = result.pairs
    order = result.split_order
    counts = []
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            mask = (pairs["split_a"] == a) & (pairs["split_b"] == b)
            found = int(mask.sum())
            accepted = int(pairs.loc[mask, "accepted"].astype(bool).sum()) if found else 0
            counts.append((a, b, found - accepted, accepted))
    return counts


def writer(name: str) -> Callable[[AuditResult, Path], list[Path]]:
    if name not in _MODULES:
        raise ValueError(f"unknown format {name!r}; choose from {sorted(_MODULES)}")
    return importlib.import_module(_MODULES[name]).write


def write_report(result: AuditResult, out: Path, formats: Sequence[str]) -> list[Path]:
    """Write the chosen formats and ``summary.json`` into ``out`` (created if missing)."""
    from leakcheck.formats.json_files import write_summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in dict.fromkeys(formats):
        written += writer(name)(result, out)
    written.append(write_summary(result, out))
    return written
