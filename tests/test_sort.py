"""``leakcheck sort DIR`` on a folder of real photo crops with planted bursts, run as a user would.

The batch: distinct textured crops of the ``skimage.data`` photos, three bursts of near-identical
frames (one crop, a slight cross-fade and a little noise per frame) whose file names are shuffled
among the others, one file with a hostile name and one file that is not an image. The checks are
what a user would look at: order.csv visits every image once, each burst is one contiguous run and
one cluster, the copies land in numbered cluster folders without touching the originals, and the
contact sheet opens in Chromium without errors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import distinct_indices, photo_crop, read_csv_rows, save_png
from PIL import Image

from leakcheck.cli import main as leakcheck_main
from leakcheck.images import canonical_to_float, load_canonical

SINGLES = 10
BURSTS = 3
FRAMES = 4
HOSTILE_NAME = "we<i>rd & \"quoted\" 'name'.png"


def burst(index: int, partner: int, frames: int, seed: int) -> list[np.ndarray]:
    """Near-identical frames: crop ``index`` fading very slightly towards ``partner``, plus noise."""
    rng = np.random.default_rng(seed)
    base, other = photo_crop(index).astype(float), photo_crop(partner).astype(float)
    out = []
    for k in range(frames):
        frame = (1 - 0.03 * k) * base + 0.03 * k * other + rng.normal(0, 1.5, base.shape)
        out.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    return out


def snapshot(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]]]:
    """The batch folder and, per burst, the paths of its frames."""
    folder = tmp_path_factory.mktemp("sort") / "batch"
    indices = distinct_indices(40)
    images = [photo_crop(i) for i in indices[:SINGLES]]
    bursts = [
        burst(indices[SINGLES + b], indices[SINGLES + BURSTS + b], FRAMES, seed=b)
        for b in range(BURSTS)
    ]
    every = images + [frame for frames in bursts for frame in frames]
    names = [f"img-{k:02d}.png" for k in np.random.default_rng(7).permutation(len(every))]
    for name, rgb in zip(names, every, strict=True):
        save_png(rgb, folder / name)
    first_burst = SINGLES
    burst_paths = [
        names[first_burst + b * FRAMES : first_burst + (b + 1) * FRAMES] for b in range(BURSTS)
    ]
    save_png(photo_crop(indices[SINGLES + 2 * BURSTS]), folder / "odd" / HOSTILE_NAME)
    (folder / "broken.png").write_text("not an image", encoding="utf-8")
    (folder / "notes.txt").write_text("skipped by extension", encoding="utf-8")
    return folder, burst_paths


@pytest.fixture(scope="module")
def sorted_runs(
    batch: tuple[Path, list[list[str]]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """Two runs: defaults with --copy-to, then --start/--clusters/--no-thumbnails/--quiet."""
    from conftest import _run_cli

    folder, _ = batch
    work = tmp_path_factory.mktemp("sort-runs")
    before = snapshot(folder)
    first = _run_cli("sort", folder, "--out", work / "out1", "--copy-to", work / "copies")
    copies_after_first = snapshot(work / "copies") if (work / "copies").exists() else {}
    # the same command in-process (no second interpreter start): the test stays fast
    second = leakcheck_main([
        "sort", str(folder), "--out", str(work / "out2"), "--start", "img-05.png",
        "--clusters", "3", "--no-thumbnails", "--copy-to", str(work / "copies"), "--quiet",
    ])  # fmt: skip
    return {
        "work": work, "first": first, "second": second, "before": before,
        "after": snapshot(folder), "copies_after_first": copies_after_first,
    }  # fmt: skip


def _order(out: Path) -> list[dict[str, str]]:
    header, rows = read_csv_rows(out / "order.csv")
    assert header[:4] == ["rank", "path", "ssim_to_previous", "cluster"]
    return rows


def _check_bursts(rows: list[dict[str, str]], bursts: list[list[str]]) -> None:
    rank = {row["path"]: int(row["rank"]) for row in rows}
    cluster = {row["path"]: row["cluster"] for row in rows}
    for frames in bursts:
        ranks = sorted(rank[path] for path in frames)
        assert ranks == list(range(ranks[0], ranks[0] + len(frames))), f"{frames} not contiguous"
        assert len({cluster[path] for path in frames}) == 1, f"{frames} split across clusters"


def test_every_image_once_and_bursts_contiguous(batch, sorted_runs) -> None:
    folder, bursts = batch
    first = sorted_runs["first"]
    assert first.returncode == 0, first.stderr
    out = sorted_runs["work"] / "out1"
    rows = _order(out)
    expected = {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")} - {"broken.png"}
    assert sorted(row["path"] for row in rows) == sorted(expected)
    assert [int(row["rank"]) for row in rows] == list(range(1, len(expected) + 1))
    assert rows[0]["path"] == sorted(expected)[0] and rows[0]["ssim_to_previous"] == ""
    _check_bursts(rows, bursts)
    # clusters are contiguous runs numbered in chain order
    numbers = [int(row["cluster"]) for row in rows]
    assert numbers == sorted(numbers) and numbers[0] == 1
    _, clusters = read_csv_rows(out / "clusters.csv")
    assert sum(int(c["size"]) for c in clusters) == len(rows)
    assert len(clusters) == numbers[-1] >= BURSTS
    _, errors = read_csv_rows(out / "errors.csv")
    assert [e["path"] for e in errors] == ["broken.png"]
    assert "images in" in first.stdout


def test_links_are_exact_ssim(batch, sorted_runs) -> None:
    """ssim_to_previous is skimage's SSIM of the two canonical images (the product's SSIM)."""
    from skimage.metrics import structural_similarity

    folder, _ = batch
    out = sorted_runs["work"] / "out1"
    size = json.loads((out / "summary.json").read_text(encoding="utf-8"))["settings"]["size"]
    rows = _order(out)
    for previous, row in zip(rows[:3], rows[1:4], strict=True):
        a, b = (
            canonical_to_float(load_canonical(folder / r["path"], size=size))
            for r in (previous, row)
        )
        expected = structural_similarity(a, b, data_range=1.0)
        assert abs(float(row["ssim_to_previous"]) - expected) < 1e-5


def test_start_and_number_of_clusters(batch, sorted_runs) -> None:
    _, bursts = batch
    assert sorted_runs["second"] == 0
    out = sorted_runs["work"] / "out2"
    rows = _order(out)
    assert rows[0]["path"] == "img-05.png"
    assert {row["cluster"] for row in rows} == {"1", "2", "3"}
    _check_bursts(rows, bursts)
    html = (out / "contact_sheet.html").read_text(encoding="utf-8")
    assert "data:image" not in html  # --no-thumbnails


def test_copies_in_cluster_folders_never_move_or_overwrite(batch, sorted_runs) -> None:
    folder, _ = batch
    work = sorted_runs["work"]
    assert sorted_runs["after"] == sorted_runs["before"], "the batch itself was changed"
    header, rows = read_csv_rows(work / "out1" / "order.csv")
    assert header[-1] == "copied_to"
    for row in rows:
        copy = Path(row["copied_to"])
        assert copy.parent.name == f"cluster-{int(row['cluster']):03d}"
        assert copy.name == f"{int(row['rank']):04d}-{Path(row['path']).name}"
        assert copy.read_bytes() == (folder / row["path"]).read_bytes()
    # the second run copied again beside the first copies, which are untouched
    first, now = sorted_runs["copies_after_first"], snapshot(work / "copies")
    assert len(first) == len(rows)
    assert {k: now[k] for k in first} == first
    assert len(now) == 2 * len(rows)


def test_contact_sheet_escapes_names_and_is_self_contained(sorted_runs) -> None:
    html = (sorted_runs["work"] / "out1" / "contact_sheet.html").read_text(encoding="utf-8")
    assert HOSTILE_NAME not in html and "<i>rd" not in html
    assert "we&lt;i&gt;rd &amp; &quot;quoted&quot; &#x27;name&#x27;.png" in html
    rows = _order(sorted_runs["work"] / "out1")
    assert html.count("data:image/jpeg;base64,") == len(rows)
    assert html.count('<section class="cluster"') == int(rows[-1]["cluster"])
    assert "http://" not in html and "https://" not in html


@pytest.mark.browser
def test_contact_sheet_opens_in_chromium(chromium: str, sorted_runs, tmp_path: Path) -> None:
    from browser import load_page

    loaded = load_page(sorted_runs["work"] / "out1" / "contact_sheet.html", chromium=chromium)
    assert loaded.errors == [] and loaded.console == []
    assert all(url.startswith(("file:", "data:")) for url in loaded.requested_urls)
    shot = tmp_path / "screenshot.png"
    shot.write_bytes(loaded.screenshot_png)
    with Image.open(shot) as image:
        assert image.format == "PNG"
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "the screenshot is (nearly) one colour"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}"], "is not a folder"),
        (["{empty}"], "has no image files"),
        (["{batch}", "--start", "nope.png"], "--start nope.png"),
        (["{batch}", "--cut", "0.5", "--clusters", "2"], "not allowed with"),
        (["{batch}", "--threshold", "0.9"], "use --cut"),
        (["{batch}", "--variants", "plain"], "does not use --variants"),
        (["{batch}", "--copy-to", "{batch}/sorted"], "inside the batch folder"),
    ],
)
def test_usage_errors_exit_2(
    arguments: list[str], message: str, batch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, _ = batch
    (tmp_path / "empty").mkdir()
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "batch": folder}
    argv = ["sort", *(a.format(**names) for a in arguments), "--out", str(tmp_path / "out")]
    assert leakcheck_main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (folder / "sorted").exists()


def test_sort_of_a_single_image(tmp_path: Path) -> None:
    save_png(photo_crop(3), tmp_path / "one" / "only.png")
    assert (
        leakcheck_main(["sort", str(tmp_path / "one"), "--out", str(tmp_path / "out"), "--quiet"])
        == 0
    )
    rows = _order(tmp_path / "out")
    assert [(r["rank"], r["path"], r["ssim_to_previous"], r["cluster"]) for r in rows] == [
        ("1", "only.png", "", "1")
    ]


def test_clusters_and_chain_on_a_known_matrix() -> None:
    """Two tight groups {0, 2, 4} and {1, 3} and a loner 5, interleaved by index."""
    from leakcheck.workflows.chain import greedy_chain, single_linkage

    similarity = np.full((6, 6), 0.1)
    for group in ([0, 2, 4], [1, 3]):
        for i in group:
            for j in group:
                similarity[i, j] = 0.95
    similarity[2, 4] = similarity[4, 2] = 0.97
    similarity[4, 1] = similarity[1, 4] = 0.3  # the best link between the groups
    np.fill_diagonal(similarity, 1.0)
    labels, weakest = single_linkage(similarity, cut=0.5)
    assert len(set(labels)) == 3 and labels[0] == labels[2] == labels[4] != labels[1]
    assert weakest[labels[0]] == pytest.approx(0.95)
    assert greedy_chain(similarity, labels, 0).tolist() == [0, 2, 4, 1, 3, 5]
    assert greedy_chain(similarity, labels, 5).tolist() == [5, 0, 2, 4, 1, 3]
    two, _ = single_linkage(similarity, clusters=2)
    assert len(set(two)) == 2 and two[5] not in {two[k] for k in range(5)}
