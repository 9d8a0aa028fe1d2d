"""The full Fashion-MNIST audit through the real CLI: 60,000 train × 10,000 test = 6×10⁸ pairs.

Writes the 70,000 images once as PNG files (``benchmarks/data/fashion-mnist/{train,test}/<label>/``),
then runs ``leakcheck --size native --variants plain`` at each threshold with a fresh cache (so
decoding is measured), and once more with the warm cache (the cached re-run). Prints wall time per
stage, peak memory (max RSS of the child process), and pairs computed exactly vs pruned.

    python benchmarks/fashion_mnist_audit.py                       # thresholds 0.90 and 0.95
    python benchmarks/fashion_mnist_audit.py --thresholds 0.95 --extra-args=--within
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.common import load_fashion_mnist

DATA = Path(__file__).resolve().parent / "data" / "fashion-mnist"


def write_pngs() -> None:
    """Write every image once; a marker file says the folder is complete."""
    marker = DATA / ".complete"
    if marker.exists():
        return
    shutil.rmtree(DATA, ignore_errors=True)
    for split, source in (("train", "train"), ("test", "t10k")):
        images, labels = load_fashion_mnist(source)
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = DATA / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:05d}.png")
    marker.write_text("ok\n")


def run_audit(threshold: float, cache: Path, out: Path, extra: list[str]) -> dict:
    command = [
        sys.executable, "-m", "leakcheck",
        "--split", f"train={DATA / 'train'}", "--split", f"test={DATA / 'test'}",
        "--threshold", str(threshold), "--size", "native", "--variants", "plain",
        "--out", str(out), "--format", "csv,json", "--cache", str(cache), "--quiet", *extra,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if completed.returncode not in (0, 1):
        raise SystemExit(f"leakcheck failed ({completed.returncode}): {completed.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "wall": wall,
        # ru_maxrss of children is the max over all children so far: report it only when it grew
        "peak_mib": peak_kib / 1024 if peak_kib > before else float("nan"),
        "summary": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", default="0.90,0.95")
    parser.add_argument("--extra-args", default="", help="more leakcheck flags, e.g. --within")
    arguments = parser.parse_args()
    write_pngs()
    extra = shlex.split(arguments.extra_args)
    print(f"cores: {os.cpu_count()}; data: {DATA}; extra flags: {extra or 'none'}")
    header = (
        f"{'T':>5} {'run':<7} {'wall s':>7} {'hash':>6} {'decode':>7} {'compare':>8} "
        f"{'findings':>8} {'peak MiB':>8} {'pairs':>7} {'within':>7} {'computed':>10} "
        f"{'pruned':>12}"
    )
    print(header)
    for threshold in (float(t) for t in arguments.thresholds.split(",")):
        with tempfile.TemporaryDirectory() as scratch:
            cache = Path(scratch) / "cache"
            for run in ("first", "cached"):
                result = run_audit(threshold, cache, Path(scratch) / "report", extra)
                summary = result["summary"]
                stage = summary["timings"]
                print(
                    f"{threshold:>5.2f} {run:<7} {result['wall']:>7.1f} {stage.get('hash', 0):>6.1f} "
                    f"{stage.get('decode', 0):>7.1f} {stage.get('compare', 0):>8.1f} "
                    f"{stage.get('findings', 0):>8.1f} {result['peak_mib']:>8.0f} "
                    f"{summary['near_twin_pairs']:>7} {summary['within_pairs']:>7} "
                    f"{summary['pairs_computed']:>10,} "
                    f"{summary['pairs_pruned']:>12,}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
