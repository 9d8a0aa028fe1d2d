"""Content-addressed cache of canonical arrays and of comparison results.

One SQLite file (``cache.sqlite3``) in the cache folder. SQLite gives atomic transactions and
file locking, so two runs at once cannot corrupt it. Every entry carries a checksum of its bytes;
an entry whose checksum, shape or format does not match is deleted and rebuilt, never trusted.
The size is capped: the least recently used entries are evicted first.

Keys:

* canonical arrays: ``sha256(file bytes)`` + the settings that shape the array (size, colour);
* results: a hash of every image's content hash and every setting that changes the pairs.

The folder is ``--cache DIR``, else ``$LEAKCHECK_CACHE_DIR``, else ``$XDG_CACHE_HOME/leakcheck``
(``~/.cache/leakcheck`` on Linux).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Bump when the canonical form or the result format changes: old entries then never match.
CACHE_FORMAT = 1
DEFAULT_MAX_BYTES = 2 * 1024**3
DATABASE_NAME = "cache.sqlite3"


def default_cache_dir() -> Path:
    """``$LEAKCHECK_CACHE_DIR``, else ``$XDG_CACHE_HOME/leakcheck``, else ``~/.cache/leakcheck``."""
    explicit = os.environ.get("LEAKCHECK_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "leakcheck"


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def settings_key(*parts: Any) -> str:
    """A short stable hash of the settings that shape an entry."""
    text = "|".join(repr(p) for p in (CACHE_FORMAT, *parts))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Cache:
    """The on-disk cache. Use as a context manager, or call :meth:`close`."""

    def __init__(self, directory: Path | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.path = self.directory / DATABASE_NAME
        self._connection = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                "meta TEXT NOT NULL, data BLOB NOT NULL, checksum TEXT NOT NULL, "
                "size INTEGER NOT NULL, used REAL NOT NULL)"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries(used)")
            return connection
        except sqlite3.DatabaseError:
            # Not a database any more (truncated, overwritten): start afresh rather than trust it.
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            return self._open()

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- canonical arrays ---------------------------------------------------------------------

    def get_arrays(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached arrays among ``keys``; corrupt entries are deleted and left out."""
        found: dict[str, np.ndarray] = {}
        bad: list[str] = []
        for key, meta, data, checksum in self._select("array", dict.fromkeys(keys)):
            array = _decode_array(meta, data, checksum)
            if array is None:
                bad.append(key)
            else:
                found[key] = array
        self._touch(found)
        self._delete(bad)
        return found

    def put_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        rows = []
        now = time.time()
        for key, array in arrays.items():
            array = np.ascontiguousarray(array)
            data = array.tobytes()
            meta = f"{array.dtype.str};{','.join(map(str, array.shape))}"
            rows.append((key, "array", meta, data, _checksum(data), len(data), now))
        self._write(rows)

    # -- results ------------------------------------------------------------------------------

    def get_result(self, key: str) -> Any | None:
        row = self._connection.execute(
            "SELECT data, checksum FROM entries WHERE kind='result' AND key=?", (key,)
        ).fetchone()
        if row is None:
            return None
        data, checksum = row
        if _checksum(data) != checksum:
            self._delete([key])
            return None
        try:
            value = pickle.loads(data)  # our own file, written by put_result below
        except Exception:
            self._delete([key])
            return None
        self._touch({key: None})
        return value

    def put_result(self, key: str, value: Any) -> None:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._write([(key, "result", "pickle", data, _checksum(data), len(data), time.time())])

    # -- file hashes --------------------------------------------------------------------------

    def get_file_hashes(self, stamps: Mapping[str, str]) -> dict[str, str]:
        """sha256 of files whose stamp (size, times, inode) is the one recorded with the hash.

        ``stamps`` maps a real path to its current :func:`file_stamp`; a hash recorded while its
        file could still change within the same clock tick is never returned (see
        :func:`file_stamp`).
        """
        found: dict[str, str] = {}
        for key, meta, data, checksum in self._select("file", (f"file:{p}" for p in stamps)):
            path = key[len("file:") :]
            if meta == stamps[path] and _checksum(data) == checksum:
                found[path] = data.decode()
        return found

    def put_file_hashes(self, hashes: Mapping[str, tuple[str, str]]) -> None:
        """Record ``path → (stamp, sha256)``."""
        now = time.time()
        self._write(
            [
                (
                    f"file:{path}",
                    "file",
                    stamp,
                    digest.encode(),
                    _checksum(digest.encode()),
                    len(digest),
                    now,
                )
                for path, (stamp, digest) in hashes.items()
            ]  # fmt: skip
        )

    # -- housekeeping -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        counts = dict(
            self._connection.execute("SELECT kind, COUNT(*) FROM entries GROUP BY kind").fetchall()
        )
        total = self._connection.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()
        return {
            "directory": str(self.directory),
            "arrays": int(counts.get("array", 0)),
            "results": int(counts.get("result", 0)),
            "bytes": int(total[0]),
            "max_bytes": self.max_bytes,
        }

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        count = self._connection.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        self._connection.execute("DELETE FROM entries")
        self._connection.execute("VACUUM")
        return int(count)

    def _select(self, kind: str, keys: Iterable[str]) -> Iterator[tuple[str, str, bytes, str]]:
        """``(key, meta, data, checksum)`` of the entries of ``kind`` among ``keys``, queried in
        chunks (SQLite limits the number of parameters of one statement)."""
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            yield from self._connection.execute(
                f"SELECT key, meta, data, checksum FROM entries WHERE kind=? AND key IN ({marks})",
                [kind, *chunk],
            ).fetchall()

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        with self._transaction():
            self._connection.executemany(
                "INSERT OR REPLACE INTO entries (key, kind, meta, data, checksum, size, used) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        self._evict()

    def _evict(self) -> None:
        total = self._connection.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        if total <= self.max_bytes:
            return
        excess = total - self.max_bytes
        with self._transaction():
            freed = 0
            victims = []
            for key, size in self._connection.execute(
                "SELECT key, size FROM entries ORDER BY used ASC"
            ):
                victims.append((key,))
                freed += size
                if freed >= excess:
                    break
            self._connection.executemany("DELETE FROM entries WHERE key=?", victims)

    def _touch(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            now = time.time()
            with self._transaction():
                self._connection.executemany(
                    "UPDATE entries SET used=? WHERE key=?", [(now, k) for k in keys]
                )

    def _delete(self, keys: list[str]) -> None:
        if keys:
            with self._transaction():
                self._connection.executemany(
                    "DELETE FROM entries WHERE key=?", [(k,) for k in keys]
                )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._connection)


class _Transaction:
    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.connection.execute("ROLLBACK" if exc_type else "COMMIT")


#: A file changed less than this long before its hash was recorded may change again unseen
#: within the same timestamp tick: such a hash is not trusted (git's "racily clean" rule).
RACY_SECONDS = 2.0


def file_stamp(stat_result: os.stat_result) -> str | None:
    """What must be unchanged for a recorded hash to stand: size, mtime, ctime, inode, device.

    None when the file was modified within :data:`RACY_SECONDS` of now: its hash is then
    computed again on the next run rather than trusted.
    """
    if time.time() - stat_result.st_mtime < RACY_SECONDS:
        return None
    return (
        f"{stat_result.st_size}:{stat_result.st_mtime_ns}:{stat_result.st_ctime_ns}:"
        f"{stat_result.st_ino}:{stat_result.st_dev}"
    )


def _decode_array(meta: str, data: bytes, checksum: str) -> np.ndarray | None:
    if _checksum(data) != checksum:
        return None
    try:
        dtype_text, shape_text = meta.split(";")
        shape = tuple(int(s) for s in shape_text.split(",") if s)
        array = np.frombuffer(data, dtype=np.dtype(dtype_text))
        return array.reshape(shape)
    except (ValueError, TypeError):
        return None
