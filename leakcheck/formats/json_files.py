"""summary.json (always written) and pairs.json (format ``json``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from leakcheck.audit import AuditResult
from leakcheck.formats.files import write_text_atomic


def _plain(value: Any) -> Any:
    """JSON-safe values: NaN → null, numpy scalars → Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(document: Any, path: Path) -> Path:
    return write_text_atomic(
        path, json.dumps(_plain(document), indent=2, ensure_ascii=False) + "\n"
    )


def write_summary(result: AuditResult, out: Path) -> Path:
    return write_json(result.summary, out / "summary.json")


def write(result: AuditResult, out: Path) -> list[Path]:
    document = {
        "schema_version": result.summary["schema_version"],
        "threshold": result.settings.threshold,
        "pairs": result.pairs.to_dict(orient="records"),
    }
    return [write_json(document, out / "pairs.json")]
