"""The machine-readable tables: pairs.csv, groups.csv, reassignments.csv, errors.csv, …"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leakcheck.audit import AuditResult

#: SSIM values keep 8 decimals (the contract asks for at least 6).
FLOAT_FORMAT = "%.8f"


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as UTF-8 CSV; booleans as ``true``/``false``; atomic replace."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == bool:
            frame[column] = frame[column].map({True: "true", False: "false"})
    temporary = path.with_name(path.name + ".tmp")
    frame.to_csv(temporary, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    temporary.replace(path)
    return path


def write(result: AuditResult, out: Path) -> list[Path]:
    written = [
        write_table(result.pairs, out / "pairs.csv"),
        write_table(result.groups, out / "groups.csv"),
        write_table(result.reassignments, out / "reassignments.csv"),
        write_table(result.errors, out / "errors.csv"),
    ]
    if result.settings.within:
        written.append(write_table(result.within_pairs, out / "within_pairs.csv"))
    if len(result.group_leaks) or any(result.images["group"] != ""):
        written.append(write_table(result.group_leaks, out / "group_leaks.csv"))
    return written
