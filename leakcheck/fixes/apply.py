"""Journaled, reversible ``leakcheck apply`` and ``leakcheck undo``.

An audit leaves a plan in its report folder: ``reassignments.csv`` (files *moved* between splits) or,
for ``leakcheck place``, ``placement.csv`` (files *copied* from ``new_dir`` into a split). This module
checks such a plan as a whole before touching anything, then carries it out one file at a time behind a
write-ahead journal, ``REPORT_DIR/journal-<timestamp>.csv``:

1. a ``planned`` row (source, target, sha256 of the source, folders about to be created) is written and
   fsynced *before* the file is touched;
2. the file is moved or copied without ever overwriting anything, and the target's sha256 is checked;
3. a ``done`` row is written.

Undo does not trust the ``done`` rows alone: for every planned operation it looks at where the bytes
actually are (source, target, half-written temporary file) and acts on that, so it also restores the
tree after an apply that was killed at any point. Undo appends ``undone`` rows to the same journal, which
makes a second undo a no-op. Journals are never deleted, and no user file is ever deleted except a copy
that apply itself made and whose bytes are still the ones it copied.

The single module holds plan reading, the journal and the file operations because they share the
journal's row format and the never-overwrite primitives; splitting them would scatter one invariant.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal, TextIO

__all__ = [
    "ApplyError",
    "ApplyOutcome",
    "PlanError",
    "PlannedOperation",
    "apply_plan",
    "read_plan",
    "undo_journal",
]

SUMMARY_FILE = "summary.json"
REASSIGNMENTS_FILE = "reassignments.csv"
PLACEMENT_FILE = "placement.csv"
#: Only the columns apply needs are required, so a plan with extra or reordered columns still works.
REASSIGNMENT_COLUMNS = ("path", "from_split", "to_split")
PLACEMENT_COLUMNS = ("path", "split")
# fmt: off
JOURNAL_COLUMNS = ("seq", "status", "kind", "row", "source", "target", "sha256", "created_dirs",
                   "partial", "time", "note")
#: errno values meaning "no hard link here": fall back to copy + verify + remove.
_NO_HARD_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}
# fmt: on
_CHUNK = 1 << 20

Kind = Literal["move", "copy"]


class PlanError(Exception):
    """A plan, or a journal, that apply or undo refuses; ``str()`` is a one-line reason."""


class ApplyError(PlanError):
    """Apply stopped part-way (I/O error or sha256 mismatch); the journal lets undo restore the tree."""


class _TargetTaken(Exception):
    """The name we tried to claim already exists; we never overwrite it."""


class _UndoRefused(Exception):
    """One operation cannot be undone safely; the files involved are left as they are."""


@dataclass(frozen=True)
class PlannedOperation:
    """One file to move or copy: ``source`` to ``target`` (before any clash suffix), from plan ``row``.

    ``row`` counts the CSV header as row 1, as a spreadsheet does.
    """

    kind: Kind
    source: Path
    target: Path
    row: int


@dataclass(frozen=True)
class ApplyOutcome:
    """What :func:`apply_plan` did (or, without ``yes``, would do).

    ``renamed`` pairs each planned target with the suffixed name actually used; ``skipped`` lists plan
    rows without a target split (conflicts) with their reason; ``journal`` is ``None`` for a dry run or
    when there was nothing to do.
    """

    operations: list[PlannedOperation]
    renamed: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    journal: Path | None = None


# ----------------------------------------------------------------------------------------------
# Reading and checking the plan
# ----------------------------------------------------------------------------------------------


def read_plan(report_dir: Path) -> list[PlannedOperation]:
    """Read and check the plan in ``report_dir``, touching nothing.

    Parameters
    ----------
    report_dir : Path
        A report folder holding ``summary.json`` and ``reassignments.csv`` or ``placement.csv``.
        ``placement.csv`` is used when it exists and ``summary.json`` records ``new_dir``.

    Returns
    -------
    list of PlannedOperation
        The operations in plan order; conflict rows (empty target split) are left out.

    Raises
    ------
    PlanError
        On a missing or malformed file, an unknown split, a path that is absolute, contains ``..`` or
        resolves (symlinks followed) outside its root, a missing or duplicated source file.
    """
    operations, _ = _read_plan(Path(report_dir))
    return operations


def _read_plan(report_dir: Path) -> tuple[list[PlannedOperation], list[tuple[int, str]]]:
    if not report_dir.is_dir():
        raise PlanError(f"report folder not found: {report_dir}")
    summary = _load_summary(report_dir / SUMMARY_FILE)
    roots = _split_roots(summary)
    placement = report_dir / PLACEMENT_FILE
    if placement.is_file() and summary.get("new_dir"):
        new_dir = _existing_folder(summary["new_dir"], "new_dir in summary.json")
        rows = _read_rows(placement, PLACEMENT_COLUMNS)
        planned, skipped = _placement_rows(rows, new_dir, roots)
        plan_name = PLACEMENT_FILE
    elif (report_dir / REASSIGNMENTS_FILE).is_file():
        rows = _read_rows(report_dir / REASSIGNMENTS_FILE, REASSIGNMENT_COLUMNS)
        planned, skipped = _reassignment_rows(rows, roots)
        plan_name = REASSIGNMENTS_FILE
    elif placement.is_file():
        raise PlanError(f"{placement} needs 'new_dir' in {report_dir / SUMMARY_FILE}")
    else:
        raise PlanError(f"no {REASSIGNMENTS_FILE} or {PLACEMENT_FILE} in {report_dir}")
    return _check_files(planned, plan_name), skipped


def _load_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path} not found") from None
    except (OSError, ValueError) as error:
        raise PlanError(f"cannot read {path}: {error}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("splits"), dict):
        raise PlanError(f"{path} has no 'splits' mapping")
    return summary


def _split_roots(summary: dict) -> dict[str, str | None]:
    """Split name -> recorded root; ``None`` for a split without a folder (manifest audits)."""
    roots: dict[str, str | None] = {}
    for name, info in summary["splits"].items():
        root = info.get("root") if isinstance(info, dict) else None
        roots[str(name)] = root if isinstance(root, str) and root else None
    return roots


def _existing_folder(text: str, what: str) -> Path:
    folder = Path(text)
    if not folder.is_absolute():
        raise PlanError(f"{what} is not an absolute path: {text}")
    if not folder.is_dir():
        raise PlanError(f"{what} does not exist or is not a folder: {text}")
    return folder


def _read_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in required if name not in (reader.fieldnames or [])]
            if missing:
                raise PlanError(f"{path} is missing column(s): {', '.join(missing)}")
            rows = []
            for number, row in enumerate(reader, start=2):
                if None in row or None in row.values():
                    raise PlanError(f"{path.name} row {number}: wrong number of fields")
                rows.append((number, row))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PlanError(f"cannot read {path}: {error}") from None
    return rows


def _placement_rows(
    rows: list[tuple[int, dict[str, str]]], new_dir: Path, roots: dict[str, str | None]
) -> tuple[list[tuple[PlannedOperation, Path, Path]], list[tuple[int, str]]]:
    planned, skipped = [], []
    for number, row in rows:
        split = row["split"].strip()
        if not split:
            skipped.append((number, row.get("reason") or "conflict: no target split"))
            continue
        relative = _relative_path(row["path"], PLACEMENT_FILE, number)
        root = _root_of(split, roots, PLACEMENT_FILE, number)
        operation = PlannedOperation("copy", new_dir / relative, root / relative, number)
        planned.append((operation, new_dir, root))
    return planned, skipped


def _reassignment_rows(
    rows: list[tuple[int, dict[str, str]]], roots: dict[str, str | None]
) -> tuple[list[tuple[PlannedOperation, Path, Path]], list[tuple[int, str]]]:
    planned, skipped = [], []
    for number, row in rows:
        origin, destination = row["from_split"].strip(), row["to_split"].strip()
        if not destination:
            skipped.append((number, row.get("reason") or "conflict: no target split"))
            continue
        if origin == destination:
            raise PlanError(
                f"{REASSIGNMENTS_FILE} row {number}: from_split and to_split are both '{origin}'"
            )
        relative = _relative_path(row["path"], REASSIGNMENTS_FILE, number)
        source_root = _root_of(origin, roots, REASSIGNMENTS_FILE, number)
        target_root = _root_of(destination, roots, REASSIGNMENTS_FILE, number)
        operation = PlannedOperation("move", source_root / relative, target_root / relative, number)
        planned.append((operation, source_root, target_root))
    return planned, skipped


def _relative_path(text: str, plan_name: str, number: int) -> PurePosixPath:
    """A plan path as a safe relative path: no absolute paths, drive letters or ``..``."""
    where = f"{plan_name} row {number}"
    if not text or "\x00" in text:
        raise PlanError(f"{where}: empty or invalid path {text!r}")
    if text.startswith(("/", "\\")) or PureWindowsPath(text).drive:
        raise PlanError(
            f"{where}: absolute path {text!r} is refused; paths are relative to the split"
        )
    relative = PurePosixPath(text)
    if ".." in relative.parts or ".." in PureWindowsPath(text).parts:
        raise PlanError(f"{where}: path {text!r} leaves its folder ('..')")
    if relative == PurePosixPath("."):
        raise PlanError(f"{where}: path {text!r} names no file")
    return relative


def _root_of(split: str, roots: dict[str, str | None], plan_name: str, number: int) -> Path:
    if split not in roots:
        known = ", ".join(roots) or "none"
        raise PlanError(
            f"{plan_name} row {number}: unknown split '{split}' (summary.json has: {known})"
        )
    if roots[split] is None:
        raise PlanError(
            f"split '{split}' has no root folder in summary.json; its files cannot be moved"
        )
    return _existing_folder(roots[split], f"root of split '{split}'")


def _check_files(
    planned: list[tuple[PlannedOperation, Path, Path]], plan_name: str
) -> list[PlannedOperation]:
    """Check sources and targets on disk: inside their roots, sources present, no source twice."""
    missing: list[str] = []
    seen: dict[Path, int] = {}
    for operation, source_root, target_root in planned:
        where = f"{plan_name} row {operation.row}"
        if not os.path.lexists(operation.source):
            missing.append(f"row {operation.row} {operation.source}")
            continue
        resolved = _inside(operation.source, source_root, where, "source")
        if operation.kind == "move" and operation.source.is_symlink():
            # Moving a link would move the name, not the image, and can break relative links.
            raise PlanError(
                f"{where}: source {operation.source} is a symbolic link; only files are moved"
            )
        if not resolved.is_file():
            raise PlanError(f"{where}: source {operation.source} is not a regular file")
        if resolved in seen:
            raise PlanError(
                f"{where}: same source file as row {seen[resolved]}: {operation.source}"
            )
        seen[resolved] = operation.row
        _inside(operation.target.parent, target_root, where, "target folder")
        _check_target_folders(operation.target.parent, target_root, where)
    if missing:
        shown = "; ".join(missing[:3]) + (
            f"; and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise PlanError(f"{plan_name}: {len(missing)} source file(s) missing: {shown}")
    return [operation for operation, _, _ in planned]


def _inside(path: Path, root: Path, where: str, what: str) -> Path:
    """``path`` resolved (symlinks followed); refused unless it stays inside the resolved ``root``."""
    resolved, resolved_root = path.resolve(), root.resolve()
    if resolved != resolved_root and not resolved.is_relative_to(resolved_root):
        raise PlanError(f"{where}: {what} {path} resolves to {resolved}, outside {root}")
    return resolved


def _check_target_folders(folder: Path, root: Path, where: str) -> None:
    for ancestor in [folder, *folder.parents]:
        if ancestor == root or ancestor.is_dir():
            return
        if os.path.lexists(ancestor):
            raise PlanError(f"{where}: cannot create folder {ancestor}: a file has that name")


# ----------------------------------------------------------------------------------------------
# The journal
# ----------------------------------------------------------------------------------------------


class _Journal:
    """Append-only CSV; every row is flushed and fsynced before the caller goes on."""

    def __init__(self, path: Path, handle: TextIO) -> None:
        self.path = path
        self._handle = handle
        self._writer = csv.writer(handle)
        self.next_seq = 1

    @classmethod
    def create(cls, report_dir: Path) -> _Journal:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for attempt in range(1, 10_000):
            name = f"journal-{stamp}.csv" if attempt == 1 else f"journal-{stamp}-{attempt}.csv"
            try:
                # O_EXCL: two applies in the same second must never share or overwrite a journal.
                descriptor = os.open(report_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            journal = cls(
                report_dir / name, os.fdopen(descriptor, "w", newline="", encoding="utf-8")
            )
            journal._write_fields(list(JOURNAL_COLUMNS))
            _fsync_folder(report_dir)
            return journal
        raise PlanError(f"cannot create a journal in {report_dir}")

    @classmethod
    def reopen(cls, path: Path) -> _Journal:
        """Open for appending, first dropping a last row cut short by a crash (a torn write).

        Such a row was never fsynced, so the operation it announced never started (or, for a torn
        ``done`` row, undo finds the file's state on disk anyway); appending after it would corrupt
        the next row.
        """
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
                os.fsync(handle.fileno())
        return cls(path, path.open("a", newline="", encoding="utf-8"))

    def write(self, seq: int | str, status: str, **values: str | int) -> None:
        values.update(seq=seq, status=status, time=datetime.now(UTC).isoformat(timespec="seconds"))
        self._write_fields([str(values.get(column, "")) for column in JOURNAL_COLUMNS])

    def _write_fields(self, fields: list[str]) -> None:
        self._writer.writerow(fields)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


@dataclass
class _Entry:
    """Everything the journal says about one planned operation."""

    seq: int
    kind: Kind
    row: int
    source: Path
    target: Path
    sha256: str
    created_dirs: list[Path]
    partial: Path | None
    statuses: set[str] = field(default_factory=set)


def _read_journal(path: Path) -> tuple[dict[int, _Entry], bool]:
    """Entries by seq, and whether the folders were already cleaned up by an earlier undo."""
    if not path.is_file():
        raise PlanError(f"journal not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PlanError(f"cannot read journal {path}: {error}") from None
    if not lines or tuple(lines[0]) != JOURNAL_COLUMNS:
        raise PlanError(f"{path} is not a leakcheck journal (unexpected header)")
    entries: dict[int, _Entry] = {}
    cleaned = False
    for index, fields in enumerate(lines[1:], start=2):
        if len(fields) != len(JOURNAL_COLUMNS):
            if index == len(lines):
                break  # a last row cut short by a crash; it was written before its operation started
            raise PlanError(f"journal {path} line {index}: wrong number of fields")
        values = dict(zip(JOURNAL_COLUMNS, fields, strict=True))
        try:
            if values["status"] == "folders-removed":
                cleaned = True
            elif values["status"] == "planned":
                entry = _parse_planned(values)
                entries[entry.seq] = entry
            else:
                entries[int(values["seq"])].statuses.add(values["status"])
        except (KeyError, ValueError, TypeError) as error:
            raise PlanError(f"journal {path} line {index}: malformed row ({error})") from None
    return entries, cleaned


def _parse_planned(values: dict[str, str]) -> _Entry:
    if values["kind"] not in ("move", "copy") or len(values["sha256"]) != 64:
        raise ValueError("unknown kind or bad sha256")
    created = json.loads(values["created_dirs"] or "[]")
    if not isinstance(created, list):
        raise ValueError("created_dirs is not a list")
    return _Entry(
        seq=int(values["seq"]),
        kind=values["kind"],  # type: ignore[arg-type]  # checked just above
        row=int(values["row"]),
        source=Path(values["source"]),
        target=Path(values["target"]),
        sha256=values["sha256"],
        created_dirs=[Path(folder) for folder in created],
        partial=Path(values["partial"]) if values["partial"] else None,
    )


# ----------------------------------------------------------------------------------------------
# File primitives: hash, never-overwrite transfer, fsync
# ----------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and not path.is_symlink() and _sha256(path) == sha256


def _fsync_folder(folder: Path) -> None:
    """Make a new or removed name in ``folder`` durable, not only the file's bytes."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _free_name(
    target: Path, taken: AbstractSet[Path] = frozenset(), freed: AbstractSet[Path] = frozenset()
) -> Path:
    """``target``, or ``name (1).ext``, ``name (2).ext``… — the first name not in use."""

    def in_use(path: Path) -> bool:
        return path in taken or (os.path.lexists(path) and path not in freed)

    candidate, number = target, 0
    while in_use(candidate):
        number += 1
        candidate = target.with_name(f"{target.stem} ({number}){target.suffix}")
    return candidate


def _transfer(source: Path, target: Path, sha256: str, partial: Path, *, keep_source: bool) -> None:
    """Move or copy ``source`` to ``target``; never overwrites; ``target`` ends with ``sha256``.

    A move on one filesystem is ``link`` + ``unlink``: ``link`` claims the name atomically and fails
    if it exists, which ``rename`` would not. Otherwise the bytes go to ``partial`` (a hidden name
    undo knows), are fsynced and verified, and only then get the target name.
    """
    if not keep_source:
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            raise _TargetTaken(target) from None
        except OSError as error:
            if error.errno not in _NO_HARD_LINK:
                raise
        else:
            _verify_claimed(target, sha256)
            _fsync_folder(target.parent)
            source.unlink()
            _fsync_folder(source.parent)
            return
    _copy_exclusive(source, partial)
    try:
        if _sha256(partial) != sha256:
            raise OSError(f"sha256 of the copy {partial} differs from {source}")
        _claim(partial, target)
    finally:
        with suppress(FileNotFoundError):
            partial.unlink()
    _verify_claimed(target, sha256)
    _fsync_folder(target.parent)
    if not keep_source:
        source.unlink()
        _fsync_folder(source.parent)


def _copy_exclusive(source: Path, destination: Path) -> None:
    descriptor = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "wb") as output, source.open("rb") as data:
        shutil.copyfileobj(data, output, _CHUNK)
        output.flush()
        os.fsync(output.fileno())
    with suppress(OSError):
        shutil.copystat(source, destination)  # keep mtime and mode; the bytes are what matter


def _claim(partial: Path, target: Path) -> None:
    """Give ``partial`` the name ``target`` unless that name exists."""
    try:
        os.link(partial, target)
        return
    except FileExistsError:
        raise _TargetTaken(target) from None
    except OSError as error:
        if error.errno not in _NO_HARD_LINK:
            raise
    # No hard links here: reserve the name with an empty file of ours, then replace only that.
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        raise _TargetTaken(target) from None
    os.replace(partial, target)


def _verify_claimed(target: Path, sha256: str) -> None:
    """Check the new name's bytes; on a mismatch remove that name (ours) and stop."""
    if _sha256(target) != sha256:
        target.unlink()
        raise OSError(
            f"sha256 of {target} differs from the source's; the file was changed meanwhile"
        )


# ----------------------------------------------------------------------------------------------
# Apply
# ----------------------------------------------------------------------------------------------


def apply_plan(report_dir: Path, *, yes: bool, echo: Callable[[str], None] = print) -> ApplyOutcome:
    """Carry out the plan in ``report_dir``, or with ``yes=False`` only say what would be done.

    Parameters
    ----------
    report_dir : Path
        The report folder (see :func:`read_plan`). The journal is written here.
    yes : bool
        ``False``: a dry run that prints one line per operation and changes nothing on disk.
        ``True``: move (audit plans) or copy (placements) the files, journaled.
    echo : callable
        Receives one line of text per message (default ``print``).

    Returns
    -------
    ApplyOutcome

    Raises
    ------
    PlanError
        The plan is refused; nothing was changed.
    ApplyError
        Apply stopped part-way; ``leakcheck undo`` on the named journal restores the previous tree.
    """
    report_dir = Path(report_dir)
    operations, skipped = _read_plan(report_dir)
    for number, reason in skipped:
        echo(f"skipped row {number}: {reason}")
    if not yes:
        return _dry_run(operations, skipped, echo)
    if not operations:
        echo("nothing to apply: the plan has no operation")
        return ApplyOutcome([], [], skipped, None)
    renamed: list[tuple[Path, Path]] = []
    journal = _Journal.create(report_dir)
    try:
        for count, operation in enumerate(operations):
            actual = _apply_one(operation, journal, count)
            if actual != operation.target:
                renamed.append((operation.target, actual))
            echo(_describe(operation, actual, dry=False))
    finally:
        journal.close()
    verb = "moved" if operations[0].kind == "move" else "copied"
    echo(
        f"{verb} {len(operations)} file(s), {len(renamed)} renamed to avoid a clash; "
        f"journal {journal.path} (undo: leakcheck undo {journal.path})"
    )
    return ApplyOutcome(operations, renamed, skipped, journal.path)


def _dry_run(
    operations: list[PlannedOperation], skipped: list[tuple[int, str]], echo: Callable[[str], None]
) -> ApplyOutcome:
    taken: set[Path] = set()
    freed: set[Path] = set()
    renamed = []
    for operation in operations:
        actual = _free_name(operation.target, taken, freed)
        taken.add(actual)
        if operation.kind == "move":
            freed.add(operation.source)
        if actual != operation.target:
            renamed.append((operation.target, actual))
        echo(_describe(operation, actual, dry=True))
    echo(f"dry run: {len(operations)} operation(s), nothing changed; add --yes to apply")
    return ApplyOutcome(operations, renamed, skipped, None)


def _describe(operation: PlannedOperation, actual: Path, *, dry: bool) -> str:
    verb = {"move": "moved", "copy": "copied"}[operation.kind]
    if dry:
        verb = f"would {operation.kind}"
    clash = f" (renamed: {operation.target.name} exists)" if actual != operation.target else ""
    return f"{verb} {operation.source} -> {actual}{clash}"


def _apply_one(operation: PlannedOperation, journal: _Journal, done_before: int) -> Path:
    """Journal, perform and verify one operation; returns the target name actually used."""
    try:
        sha256 = _sha256(operation.source)
        while True:
            target = _free_name(operation.target)
            seq = _journal_planned(operation, target, sha256, journal)
            try:
                _transfer(
                    operation.source,
                    target,
                    sha256,
                    _partial_name(journal.path, seq, target),
                    keep_source=operation.kind == "copy",
                )
            except _TargetTaken:
                journal.write(seq, "clash", note="target appeared meanwhile; trying the next name")
                continue
            except OSError as error:
                with suppress(
                    OSError
                ):  # the journal may be on the full disk; undo copes without it
                    journal.write(seq, "failed", note=str(error))
                raise
            journal.write(seq, "done")
            return target
    except OSError as error:
        raise ApplyError(
            f"apply stopped at plan row {operation.row} after {done_before} operation(s): {error}; "
            f"`leakcheck undo {journal.path}` restores the previous tree"
        ) from error


def _journal_planned(
    operation: PlannedOperation, target: Path, sha256: str, journal: _Journal
) -> int:
    """Write the write-ahead row for one attempt, then create the folders it names."""
    created = _missing_folders(target.parent)
    seq = journal.next_seq
    journal.next_seq += 1
    journal.write(
        seq,
        "planned",
        kind=operation.kind,
        row=operation.row,
        source=str(operation.source),
        target=str(target),
        sha256=sha256,
        created_dirs=json.dumps([str(folder) for folder in created]),
        partial=str(_partial_name(journal.path, seq, target)),
    )
    for folder in created:
        folder.mkdir(exist_ok=True)
    return seq


def _partial_name(journal: Path, seq: int, target: Path) -> Path:
    """Hidden, journal-unique name for a copy in progress; ``.partial`` keeps audits off it."""
    return target.parent / f".leakcheck-{journal.stem}-{seq}.partial"


def _missing_folders(folder: Path) -> list[Path]:
    """Folders to create for ``folder`` to exist, outermost first."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


# ----------------------------------------------------------------------------------------------
# Undo
# ----------------------------------------------------------------------------------------------


def undo_journal(journal: Path, *, echo: Callable[[str], None] = print) -> int:
    """Restore the tree recorded in ``journal`` as it was before the apply, byte for byte.

    Works in reverse order from where each file actually is, so an apply killed at any point is
    undone too. Moved files go back (sha256 verified); copies are removed if their bytes are still the
    copied ones; folders apply created and that are now empty are removed. ``undone`` rows appended to
    the journal make a second undo report "nothing to undo".

    Parameters
    ----------
    journal : Path
        A ``journal-<timestamp>.csv`` written by :func:`apply_plan`.
    echo : callable
        Receives one line of text per message (default ``print``).

    Returns
    -------
    int
        The number of operations reversed (files moved back or copies removed).

    Raises
    ------
    PlanError
        No such journal, not a journal, nothing left to undo, or some operations could not be undone
        safely (each was reported through ``echo`` and left as it is; undo can be run again).
    """
    journal = Path(journal)
    entries, cleaned = _read_journal(journal)
    pending = [entry for entry in entries.values() if not entry.statuses & {"undone", "clash"}]
    if not pending and (cleaned or not entries):
        raise PlanError(f"nothing to undo: {journal} has no operation left to undo")
    reversed_count, refused = 0, 0
    writer = _Journal.reopen(journal)
    try:
        for entry in sorted(pending, key=lambda item: item.seq, reverse=True):
            try:
                note = _undo_one(entry, journal.stem)
            except (_UndoRefused, OSError) as reason:
                refused += 1
                echo(f"cannot undo plan row {entry.row} ({entry.source.name}): {reason}")
                continue
            writer.write(entry.seq, "undone", note=note)
            if note != "never applied":
                reversed_count += 1
                echo(
                    f"{note}: {entry.target}"
                    + (f" -> {entry.source}" if note == "moved back" else "")
                )
        # Folders emptied so far go now; rmdir leaves any folder that still holds a kept file.
        removed = _remove_created_folders(entries.values())
        if refused:
            raise PlanError(
                f"undo incomplete: {refused} operation(s) left as they are (see above); "
                f"fix them and run undo again"
            )
        writer.write("", "folders-removed", note=str(removed))
    finally:
        writer.close()
    echo(
        f"undid {reversed_count} operation(s), removed {removed} empty folder(s); {journal} is undone"
    )
    return reversed_count


def _undo_one(entry: _Entry, journal_stem: str) -> str:
    """Reverse one operation from the files' actual state; returns what was done."""
    if entry.partial is not None:
        with suppress(FileNotFoundError):
            entry.partial.unlink()  # a half-written copy of ours from an interrupted apply
    target_ok = os.path.lexists(entry.target) and _matches(entry.target, entry.sha256)
    if entry.kind == "copy":
        if target_ok:
            entry.target.unlink()
            _fsync_folder(entry.target.parent)
            return "removed copy"
        if os.path.lexists(entry.target) and "done" in entry.statuses:
            raise _UndoRefused(f"the copy {entry.target} was changed since apply; left in place")
        return "never applied"
    source_ok = os.path.lexists(entry.source) and _matches(entry.source, entry.sha256)
    if target_ok and source_ok:
        # Interrupted between claiming the target and removing the source: the target is our extra name.
        entry.target.unlink()
        _fsync_folder(entry.target.parent)
        return "moved back" if "done" in entry.statuses else "never applied"
    if source_ok:
        return "never applied"
    if not target_ok:
        raise _UndoRefused(f"no file with the recorded sha256 at {entry.target} or {entry.source}")
    if os.path.lexists(entry.source):
        raise _UndoRefused(f"{entry.source} now holds another file; {entry.target} left in place")
    entry.source.parent.mkdir(parents=True, exist_ok=True)  # an emptied folder removed by hand
    partial = entry.source.parent / f".leakcheck-undo-{journal_stem}-{entry.seq}.partial"
    with suppress(FileNotFoundError):
        partial.unlink()  # left by an interrupted undo
    try:
        _transfer(entry.target, entry.source, entry.sha256, partial, keep_source=False)
    except _TargetTaken:
        raise _UndoRefused(
            f"{entry.source} appeared meanwhile; {entry.target} left in place"
        ) from None
    return "moved back"


def _remove_created_folders(entries: Iterable[_Entry]) -> int:
    """Remove folders apply created, deepest first, only while they are empty."""
    folders = {folder for entry in entries for folder in entry.created_dirs}
    removed = 0
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        with suppress(OSError):  # not empty (someone's file) or already gone: leave it
            folder.rmdir()
            removed += 1
    return removed
