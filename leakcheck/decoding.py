"""Decode every image of every split into one stack of canonical arrays, through the cache.

Each distinct file (by real path) is read once: its bytes are hashed (sha256, the key of the cache
and of baselines), the cache is asked for its canonical array, and only the misses are decoded,
in parallel through joblib. A file that cannot be decoded becomes an error row; the run goes on.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import joblib
import numpy as np

from leakcheck.cache import Cache, file_stamp, settings_key
from leakcheck.images import ImageReadError, load_canonical
from leakcheck.settings import Settings
from leakcheck.sources import ImageRecord, SourceError, SplitSource

#: Files per joblib task when hashing and decoding: big enough to amortise dispatch.
BATCH = 256


@dataclass(frozen=True)
class DecodedImages:
    """Canonical arrays of every decodable image, in split order.

    Attributes
    ----------
    records : list of ImageRecord
        The decoded images (record ``k`` ↔ ``pixels[k]``).
    pixels : ndarray of uint8, shape (n, C, H, W)
    file_sha256 : list of str
        sha256 of each record's file bytes.
    errors : list of (ImageRecord, str)
        Files that could not be read or decoded, with the reason.
    images_decoded, images_from_cache : int
        Distinct files decoded now / taken from the cache.
    """

    records: list[ImageRecord]
    pixels: np.ndarray
    file_sha256: list[str]
    errors: list[tuple[ImageRecord, str]]
    images_decoded: int
    images_from_cache: int


def _hash_files(files: Sequence[str]) -> list[str | Exception]:
    out: list[str | Exception] = []
    for file in files:
        try:
            # reading a FIFO (or a device) named like an image would block the audit forever
            if not stat.S_ISREG(os.stat(file).st_mode):
                raise OSError("not a regular file")
            with open(file, "rb") as handle:
                out.append(hashlib.sha256(handle.read()).hexdigest())
        except OSError as error:
            out.append(error)
    return out


def _decode_files(
    files: Sequence[str], size: int | None, color: str, max_pixels: int | None
) -> list[np.ndarray | str]:
    out: list[np.ndarray | str] = []
    for file in files:
        try:
            out.append(load_canonical(file, size=size, color=color, max_pixels=max_pixels))
        except ImageReadError as error:
            out.append(str(error))
        except OSError as error:
            out.append(f"cannot read file ({error.strerror or error})")
    return out


def _batched(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


@dataclass(frozen=True)
class HashedFiles:
    """sha256 of every distinct file of the splits, and the files that could not be read."""

    sha256_of: dict[str, str]
    failure_of: dict[str, str]


def hash_sources(
    sources: Sequence[SplitSource], jobs: int = -1, cache: Cache | None = None
) -> HashedFiles:
    """Read and hash every distinct file once (the keys of the cache and of baselines).

    With a cache, a file whose size, times and inode are unchanged since its hash was recorded
    is not read again (see :func:`leakcheck.cache.file_stamp`).
    """
    files = list(dict.fromkeys(record.file for source in sources for record in source.records))
    known: dict[str, str] = {}
    stamps: dict[str, str] = {}
    if cache is not None:
        for file in files:
            try:
                stamp = file_stamp(os.stat(file))
            except OSError:
                continue  # reported below, when reading it fails
            if stamp is not None:
                stamps[file] = stamp
        found = cache.get_file_hashes(stamps)
        known = {file: found[file] for file in stamps if file in found}
    to_read = [file for file in files if file not in known]
    parallel = joblib.Parallel(n_jobs=jobs, backend="threading")
    hashed_now = [
        digest
        for part in parallel(joblib.delayed(_hash_files)(batch) for batch in _batched(to_read))
        for digest in part
    ]
    if cache is not None:
        cache.put_file_hashes(
            {
                file: (stamps[file], digest)
                for file, digest in zip(to_read, hashed_now, strict=True)
                if isinstance(digest, str) and file in stamps
            }
        )
    read_now = dict(zip(to_read, hashed_now, strict=True))
    hashed = [known.get(file) or read_now[file] for file in files]
    sha256_of: dict[str, str] = {}
    failure_of: dict[str, str] = {}
    for file, digest in zip(files, hashed, strict=True):
        if isinstance(digest, Exception):
            reason = getattr(digest, "strerror", None) or str(digest)
            failure_of[file] = f"cannot read file ({reason})"
        else:
            sha256_of[file] = digest
    return HashedFiles(sha256_of, failure_of)


def decode_sources(
    sources: Sequence[SplitSource],
    hashed: HashedFiles,
    settings: Settings,
    cache: Cache | None,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> DecodedImages:
    """Decode every record of ``sources`` (see :class:`DecodedImages`)."""
    all_records = [record for source in sources for record in source.records]
    shape_key = settings_key("canonical", settings.size, settings.color)
    key_of = hashed.sha256_of
    failure_of = dict(hashed.failure_of)
    canonical: dict[str, np.ndarray] = {}
    if cache is not None:
        found = cache.get_arrays(f"{key_of[f]}:{shape_key}" for f in key_of)
        for file, digest in key_of.items():
            array = found.get(f"{digest}:{shape_key}")
            if array is not None:
                canonical[file] = array
    from_cache = len(canonical)
    if on_progress is not None and from_cache:
        on_progress(from_cache)
    missing = [file for file in key_of if file not in canonical]
    decoded_now: dict[str, np.ndarray] = {}
    tasks = (
        joblib.delayed(_decode_files)(batch, settings.size, settings.color, settings.max_pixels)
        for batch in _batched(missing)
    )
    runner = joblib.Parallel(n_jobs=settings.jobs, backend="threading", return_as="generator")
    for batch, results in zip(_batched(missing), runner(tasks), strict=True):
        for file, result in zip(batch, results, strict=True):
            if isinstance(result, str):
                failure_of[file] = result
            else:
                canonical[file] = result
                decoded_now[f"{key_of[file]}:{shape_key}"] = result
        if on_progress is not None:
            on_progress(len(batch))
    if cache is not None and decoded_now:
        cache.put_arrays(decoded_now)

    records = [r for r in all_records if r.file in canonical]
    errors = [(r, failure_of[r.file]) for r in all_records if r.file in failure_of]
    shapes = {canonical[r.file].shape for r in records}
    if len(shapes) > 1:
        raise SourceError(_shape_mismatch_message(records, canonical))
    if records:
        pixels = np.stack([canonical[r.file] for r in records])
    else:
        pixels = np.empty((0, 1, 1, 1), dtype=np.uint8)
    return DecodedImages(
        records=records,
        pixels=pixels,
        file_sha256=[key_of[r.file] for r in records],
        errors=errors,
        images_decoded=len(missing),  # distinct files, like images_from_cache
        images_from_cache=from_cache,
    )


def _shape_mismatch_message(
    records: Sequence[ImageRecord], canonical: dict[str, np.ndarray]
) -> str:
    by_shape: dict[tuple[int, ...], list[ImageRecord]] = {}
    for record in records:
        by_shape.setdefault(canonical[record.file].shape, []).append(record)
    parts = [
        f"{shape[1]}x{shape[2]} ({len(group)} images, e.g. {group[0].split}/{group[0].path})"
        for shape, group in sorted(by_shape.items(), key=lambda item: -len(item[1]))
    ]
    return (
        "--size native needs every image to have the same shape, found "
        + "; ".join(parts[:4])
        + ". Use --size N to compare at a common size."
    )
