"""``--write-manifest``: the plan written as a new manifest, the non-destructive way to fix splits.

The new manifest is the input manifest with the ``split`` of every planned move changed; every
other row, column and value is kept as it was (rows for unreadable or skipped files too). A row that
shares a manifest ``group`` id with a moved image follows it, so a group is never separated even
through a file the audit could not read. Relative paths are rewritten to stay valid from the new
manifest's folder. Split folders given with ``--train``/``--split`` are listed as well (path, split,
label), so an audit of folders can also be fixed without moving a file.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd

from leakcheck.sources import SourceError, SplitSource


def write_fixed_manifest(
    out: str | Path,
    *,
    sources: Sequence[SplitSource],
    moves: pd.DataFrame,
    manifest: str | Path | None = None,
    audited: Collection[tuple[str, str]] = (),
) -> Path:
    """Write the splits after ``moves`` as a manifest CSV at ``out``.

    Parameters
    ----------
    out : path
        The new manifest. It must not be the input manifest (fixing is non-destructive).
    sources : sequence of SplitSource
        The audited splits; folder splits (``root`` set) are listed after the manifest's rows.
    moves : DataFrame
        The plan: ``path, from_split, to_split`` (``reassignments.csv``).
    manifest : path, optional
        The input manifest, when the audit read one.
    audited : collection of (split, path)
        The images the audit decoded. A manifest group whose audited images all end in one split
        takes its other rows (unreadable files) there too.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    SourceError
        ``out`` is the input manifest, or the input manifest cannot be read.
    """
    out = Path(out).expanduser()
    new_base = out.parent.resolve()
    target_of = {
        (str(row.from_split), str(row.path)): str(row.to_split)
        for row in moves.itertuples(index=False)
        if isinstance(row.to_split, str) and row.to_split
    }
    header: list[str] = ["path", "split", "label"]
    rows: list[list[str]] = []
    check_manifest_target(out, manifest)
    if manifest is not None:
        manifest = Path(manifest).expanduser()
        header, rows = _fixed_manifest_rows(manifest, target_of, set(audited), new_base)
    for source in sources:
        if source.root is not None:
            rows += _folder_rows(source, target_of, new_base, header)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(buffer.getvalue(), encoding="utf-8")
    temporary.replace(out)
    return out


def check_manifest_target(out: str | Path, manifest: str | Path | None) -> None:
    """Refuse to write the fixed manifest over the input manifest (fixing is non-destructive)."""
    out = Path(out).expanduser()
    if manifest is not None and Path(manifest).expanduser().resolve() == out.resolve():
        raise SourceError(
            f"--write-manifest {out} is the input manifest; write the fixed manifest to a "
            "new file (fixing never overwrites the input)"
        )


def _fixed_manifest_rows(
    manifest: Path,
    target_of: dict[tuple[str, str], str],
    audited: set[tuple[str, str]],
    new_base: Path,
) -> tuple[list[str], list[list[str]]]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            table = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SourceError(f"manifest {manifest} cannot be read again ({error})") from None
    if not table:
        raise SourceError(f"manifest {manifest} is empty")
    header = table[0]
    columns = [name.strip() for name in header]
    path_at, split_at = columns.index("path"), columns.index("split")
    group_at = columns.index("group") if "group" in columns else None
    body = [row + [""] * (len(header) - len(row)) for row in table[1:] if any(row)]

    def key(row: list[str]) -> tuple[str, str]:
        return row[split_at].strip(), row[path_at].strip().replace("\\", "/")

    # a manifest group's rows go where its audited images end, unreadable files included
    final_splits: dict[str, set[str]] = {}
    if group_at is not None:
        for row in body:
            group = row[group_at].strip()
            if group and (key(row) in target_of or key(row) in audited):
                final = target_of.get(key(row), key(row)[0])
                final_splits.setdefault(group, set()).add(final)
    group_target = {g: next(iter(s)) for g, s in final_splits.items() if len(s) == 1}
    old_base = manifest.parent.resolve()
    fixed = []
    for row in body:
        row = list(row)
        group = row[group_at].strip() if group_at is not None else ""
        if key(row) in target_of:
            row[split_at] = target_of[key(row)]
        elif key(row) not in audited and group in group_target:
            row[split_at] = group_target[group]
        row[path_at] = _relocated(row[path_at].strip(), old_base, new_base)
        fixed.append(row)
    return header, fixed


def _folder_rows(
    source: SplitSource,
    target_of: dict[tuple[str, str], str],
    new_base: Path,
    header: list[str],
) -> list[list[str]]:
    columns = [name.strip() for name in header]
    rows = []
    for record in source.records:
        values = {
            "path": _relative_to(source.root / record.path, new_base),  # type: ignore[operator]
            "split": target_of.get((record.split, record.path), record.split),
            "label": record.label,
        }
        rows.append([values.get(name, "") for name in columns])
    return rows


def _relocated(written: str, old_base: Path, new_base: Path) -> str:
    """``written`` (relative to ``old_base`` unless absolute) as seen from ``new_base``."""
    if not written or old_base == new_base or Path(written).expanduser().is_absolute():
        return written
    return _relative_to(old_base / written, new_base)


def _relative_to(file: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(file, base)).as_posix()
    except ValueError:  # another drive on Windows
        return Path(file).as_posix()
