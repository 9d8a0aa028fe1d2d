"""A copy of the committed ``sample_data/`` (six planted near-twin pairs over three splits), and
small readers for the report files; shared by the baseline and fix-workflow tests."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
SPLITS = ("train", "valid", "test")


def copy_sample(root: Path) -> Path:
    """``root/data/{train,valid,test}``: a fresh copy the test may change."""
    data = root / "data"
    for split in SPLITS:
        shutil.copytree(SAMPLE_DATA / split, data / split)
    return data


def split_args(data: Path) -> list[str]:
    """``--train data/train --valid data/valid --test data/test``."""
    return [arg for split in SPLITS for arg in (f"--{split}", str(data / split))]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def summary_of(report: Path) -> dict:
    return json.loads((report / "summary.json").read_text(encoding="utf-8"))
