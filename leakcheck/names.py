"""One encoding for every name leakcheck did not choose, in every output it writes.

File paths, labels, split names, group ids and patient ids come from the data: any bytes but
``/`` and NUL in a file name, anything at all in a manifest cell. leakcheck writes them in CSV,
JSON, HTML, JUnit, Markdown, SARIF, GitHub annotations, journals and on the terminal, and reads
them back in ``apply``, ``undo``, ``--baseline`` and ``--manifest``. One encoding serves all of
them (``docs/product.md``, "Names in reports"):

* the name's bytes (``os.fsencode``: a name that is not UTF-8 keeps its exact bytes) are read as
  UTF-8;
* these are written as ``%XX`` escapes of their bytes (upper-case hex): every byte that is not
  part of valid UTF-8, every character that Unicode does not class as printable (control
  characters such as CR, LF and ESC; format characters such as bidi overrides and zero-width
  spaces; private-use and unassigned code points; separators other than the ASCII space), and
  ``%`` itself;
* a name that starts with ``=``, ``+``, ``-`` or ``@`` has that first character escaped too, so
  that no spreadsheet reads a cell as a formula (OWASP's CSV-injection rule; tab and carriage
  return are control characters already).

Everything else, including spaces, quotes, commas and non-ASCII letters, is written as it is.
The encoding is reversible (:func:`decode_name` gives the exact original name back), a name that
needs none of it is written unchanged, and an encoded name is one line of printable text that no
terminal, spreadsheet or browser interprets. Reading names back decodes every ``%XX``; a ``%``
that is not followed by two hex digits is kept as it is, so ``100%.png`` in a hand-written
manifest reads as itself.
"""

from __future__ import annotations

import os
import re

__all__ = ["decode_name", "encode_name", "is_plain_name"]

#: First characters that make a spreadsheet cell a formula.
FORMULA_STARTS = frozenset("=+-@")
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def _needs_escape(character: str) -> bool:
    return character == "%" or not (character.isprintable() or character == " ")


def _escaped(data: bytes) -> str:
    return "".join(f"%{byte:02X}" for byte in data)


def encode_name(name: str) -> str:
    """The printable, reversible form of ``name`` written in every output.

    Parameters
    ----------
    name : str
        A name as Python holds it: a file path from ``os.fsdecode`` (bytes that are not UTF-8
        arrive as surrogate escapes), a label, a split name, a group id.

    Returns
    -------
    str
        ``name`` with the characters listed in the module notes written as ``%XX`` escapes.

    Examples
    --------
    >>> encode_name("train/cat 1.png")
    'train/cat 1.png'
    >>> encode_name("=HYPERLINK(1)\\r.png")
    '%3DHYPERLINK(1)%0D.png'
    >>> encode_name(os.fsdecode(b"\\xffbad.png"))
    '%FFbad.png'
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if is_plain_name(name):
        return name
    try:
        data = os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate that no file name produced (JSON can)
        data = name.encode("utf-8", "surrogatepass")
    out: list[str] = []
    # bytes that are not UTF-8 come back as U+DC80..U+DCFF, one per byte
    for position, character in enumerate(data.decode("utf-8", "surrogateescape")):
        if "\udc80" <= character <= "\udcff":
            out.append(f"%{ord(character) - 0xDC00:02X}")
        elif (position == 0 and character in FORMULA_STARTS) or _needs_escape(character):
            out.append(_escaped(character.encode("utf-8", "surrogatepass")))
        else:
            out.append(character)
    return "".join(out)


def is_plain_name(name: str) -> bool:
    """True when :func:`encode_name` leaves ``name`` unchanged."""
    if not name:
        return True
    return name[0] not in FORMULA_STARTS and "%" not in name and name.isprintable()


def decode_name(text: str) -> str:
    """The name that :func:`encode_name` wrote as ``text`` (every ``%XX`` decoded).

    Parameters
    ----------
    text : str
        An encoded name, as read from a report, a journal, a plan, a baseline or a manifest.

    Returns
    -------
    str
        The original name; bytes that are not UTF-8 come back as surrogate escapes
        (``os.fsdecode``), so ``os.fsencode`` of the result gives the file name's exact bytes.

    Examples
    --------
    >>> decode_name("%3DHYPERLINK(1)%0D.png")
    '=HYPERLINK(1)\\r.png'
    >>> os.fsencode(decode_name("%FFbad.png"))
    b'\\xffbad.png'
    >>> decode_name("100%.png")
    '100%.png'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if "%" not in text:
        return text
    data = _ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), os.fsencode(text))
    return os.fsdecode(data)
