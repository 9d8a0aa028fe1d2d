"""Where images come from: split folders and manifests → :class:`ImageRecord` lists.

A split folder is walked recursively (hidden files and folders skipped, symlinked folders followed
without looping). Files are chosen by extension and decoded later by content. With
``labels="folder"`` a first-level subfolder is the image's class label (ImageFolder layout).
A manifest is a CSV with columns ``path, split`` and optional ``label, group``.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from leakcheck.images import IMAGE_EXTENSIONS


class SourceError(ValueError):
    """The splits cannot be audited as given (a usage error: exit code 2)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image file of one split.

    Attributes
    ----------
    split : str
        The split's name.
    path : str
        The path users see: relative to the split folder (or as written in the manifest), with
        forward slashes.
    file : str
        The file to read (absolute, symlinks resolved). A string rather than a ``Path``: a
        listing of 70,000 files spends most of its time building ``Path`` objects.
    label : str
        Class label, or "" when there is none.
    group : str
        Manifest group id (patient, session, video…), or "".
    """

    split: str
    path: str
    file: str
    label: str = ""
    group: str = ""


@dataclass(frozen=True)
class SplitSource:
    """The images of one split and what was skipped while listing them."""

    name: str
    root: Path | None
    records: tuple[ImageRecord, ...]
    skipped_by_extension: dict[str, int] = field(default_factory=dict)


def _extension_key(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    return suffix if suffix else "(none)"


def _walk(real_root: str) -> Iterator[tuple[str, list[os.DirEntry[str]]]]:
    """Every folder under ``real_root`` (pre-order, sorted, hidden entries skipped, symlinked
    folders followed once) with its non-folder entries, sorted by name.

    ``os.scandir`` rather than ``os.walk``: its entries know from the directory listing whether
    they are links, so a folder of 60,000 plain files costs no per-file system call here.
    """
    visited: set[tuple[int, int]] = set()
    pending = [real_root]
    while pending:
        directory = pending.pop()
        stat = os.stat(directory)
        if (stat.st_dev, stat.st_ino) in visited:
            continue  # a symlink loop or a folder reached twice
        visited.add((stat.st_dev, stat.st_ino))
        try:
            with os.scandir(directory) as listing:
                entries = sorted(
                    (entry for entry in listing if not entry.name.startswith(".")),
                    key=lambda entry: entry.name,
                )
        except OSError:
            continue  # an unreadable folder: like os.walk, skip it
        folders: list[str] = []
        files: list[os.DirEntry[str]] = []
        for entry in entries:
            if _is_folder(entry):
                folders.append(entry.path)
            else:
                files.append(entry)
        yield directory, files
        pending.extend(reversed(folders))


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, like os.walk(followlinks=True)
    except OSError:
        return False


def scan_split_folder(name: str, folder: str | Path, *, labels: str = "folder") -> SplitSource:
    """List the image files of one split folder.

    Raises
    ------
    SourceError
        If the folder is missing or not a directory.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise SourceError(f"split '{name}': folder {root} does not exist")
    if not root.is_dir():
        raise SourceError(f"split '{name}': {root} is not a folder")
    real_root = root.resolve()
    records: list[ImageRecord] = []
    skipped: Counter[str] = Counter()
    for directory, entries in _walk(str(real_root)):
        relative_dir = os.path.relpath(directory, real_root).replace(os.sep, "/")
        prefix = "" if relative_dir == "." else relative_dir + "/"
        # resolving every file walks every path component; resolve the folder once instead and
        # only the files that are links themselves
        real_directory = os.path.realpath(directory)
        for entry in entries:
            extension = _extension_key(entry.name)
            if extension not in IMAGE_EXTENSIONS:
                skipped[extension] += 1
                continue
            relative = prefix + entry.name
            real = (
                os.path.realpath(entry.path)
                if entry.is_symlink()
                else os.path.join(real_directory, entry.name)
            )
            label = relative.split("/", 1)[0] if labels == "folder" and "/" in relative else ""
            records.append(ImageRecord(split=name, path=relative, file=real, label=label))
    return SplitSource(name, real_root, tuple(records), dict(sorted(skipped.items())))


def check_not_nested(folders: Mapping[str, Path]) -> None:
    """Refuse split folders that are the same folder or nested inside one another."""
    resolved = {name: Path(folder).expanduser().resolve() for name, folder in folders.items()}
    names = list(resolved)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = resolved[first], resolved[second]
            if a == b:
                raise SourceError(f"splits '{first}' and '{second}' are the same folder {a}")
            if a in b.parents or b in a.parents:
                inner, outer = (first, second) if a in b.parents else (second, first)
                raise SourceError(
                    f"split folders are nested: '{outer}' ({resolved[outer]}) is inside "
                    f"'{inner}' ({resolved[inner]}); give each split its own folder"
                )


MANIFEST_COLUMNS = ("path", "split")


def read_manifest(manifest: str | Path, *, labels: str = "folder") -> list[SplitSource]:
    """Read a manifest CSV (``path, split`` and optional ``label, group``).

    Relative paths are relative to the manifest's folder; ``path`` is kept as written for
    reports. Split order is the order of first appearance. Files with other extensions are
    counted as skipped, like in folders. ``labels="none"`` ignores the label column.
    """
    manifest = Path(manifest).expanduser()
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in MANIFEST_COLUMNS if c not in columns]
            if missing:
                raise SourceError(
                    f"{manifest}: manifest lacks column(s) {missing}; expected path, split "
                    "[, label, group]"
                )
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except FileNotFoundError:
        raise SourceError(f"manifest {manifest} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise SourceError(f"{manifest}: not a readable CSV manifest ({error})") from None
    base = manifest.parent.resolve()
    by_split: dict[str, list[ImageRecord]] = {}
    skipped: dict[str, Counter[str]] = {}
    for line, row in enumerate(rows, start=2):
        split, written = row.get("split", ""), row.get("path", "")
        if not split or not written:
            raise SourceError(f"{manifest}, line {line}: empty path or split")
        by_split.setdefault(split, [])
        skipped.setdefault(split, Counter())
        if _extension_key(written) not in IMAGE_EXTENSIONS:
            skipped[split][_extension_key(written)] += 1
            continue
        file = Path(written).expanduser()
        file = (file if file.is_absolute() else base / file).resolve()
        by_split[split].append(
            ImageRecord(
                split=split,
                path=written.replace("\\", "/"),
                file=str(file),
                label=row.get("label", "") if labels == "folder" else "",
                group=row.get("group", ""),
            )
        )
    return [
        SplitSource(name, None, tuple(records), dict(sorted(skipped[name].items())))
        for name, records in by_split.items()
    ]


def collect_sources(
    folders: Mapping[str, str | Path],
    manifest: str | Path | None = None,
    *,
    labels: str = "folder",
) -> list[SplitSource]:
    """All splits of an audit, in split order (folders as given, then the manifest's).

    Raises
    ------
    SourceError
        Missing or nested folders, a split named twice, or fewer than two non-empty splits.
    """
    folder_paths = {name: Path(folder) for name, folder in folders.items()}
    for name, folder in folder_paths.items():
        if not folder.expanduser().exists():
            raise SourceError(f"split '{name}': folder {folder} does not exist")
    check_not_nested(folder_paths)
    sources = [scan_split_folder(n, f, labels=labels) for n, f in folder_paths.items()]
    if manifest is not None:
        for source in read_manifest(manifest, labels=labels):
            if source.name in folder_paths:
                raise SourceError(
                    f"split '{source.name}' is given both as a folder and in the manifest"
                )
            sources.append(source)
    check_enough_splits(sources)
    return sources


def check_enough_splits(sources: Iterable[SplitSource]) -> None:
    sources = list(sources)
    empty = [s.name for s in sources if not s.records]
    if empty:
        where = ", ".join(
            f"'{s.name}'" + (f" ({s.root})" if s.root else "") for s in sources if not s.records
        )
        raise SourceError(
            f"split {where} has no image files (png, jpg, jpeg, bmp, gif, tif, tiff, webp)"
        )
    if len(sources) < 2:
        raise SourceError(
            f"at least two splits are needed, got {len(sources)}: use --train DIR --valid DIR, "
            "--split NAME=DIR or --manifest FILE"
        )
