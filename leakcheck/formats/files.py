"""Report files are replaced atomically: a reader (or a crash) never sees half a file."""

from __future__ import annotations

from pathlib import Path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` through a temporary file and a rename.

    A file name that is not valid UTF-8 reaches us with surrogate escapes; it is written as
    U+FFFD rather than failing the whole report.
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(text.encode("utf-8", "replace"))
    temporary.replace(path)
    return path
