"""report.html: real datasets, the real CLI in a subprocess, the page parsed and opened in Chromium.

The hostile dataset is the sample data plus a twin pair whose names and labels are HTML, whose
labels differ (label noise), and an unreadable file with an HTML name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO_ROOT / "sample_data"
ALL_FORMATS = "csv,json,html,markdown,junit"

HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"
PIPE_NAME = "twin|pipe.png"
HOSTILE_LABEL = "<b>dogs"
BROKEN_NAME = "<script>broken.jpg"
#: The sample data's planted pairs (sample_data/planted_twins.csv) plus the hostile twin pair.
EXPECTED_PAIRS = 7


def synthetic_texture(seed: int, side: int = 96) -> np.ndarray:
    """A smooth random RGB texture: far from every photo crop in the sample data."""
    noise = np.random.default_rng(seed).integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(noise).resize((side, side), Image.BICUBIC))


def make_hostile_dataset(root: Path) -> dict[str, Path]:
    """Copy the sample data into ``root`` and plant the hostile twin pair and a broken file."""
    splits = {}
    for split in ("train", "valid", "test"):
        shutil.copytree(SAMPLE_DATA / split, root / split)
        splits[split] = root / split
    twin = synthetic_texture(7)
    (root / "train" / "cats").mkdir()
    (root / "valid" / HOSTILE_LABEL).mkdir()
    Image.fromarray(twin).save(root / "train" / "cats" / HOSTILE_NAME)
    Image.fromarray(twin).save(root / "valid" / HOSTILE_LABEL / PIPE_NAME)
    (root / "valid" / HOSTILE_LABEL / BROKEN_NAME).write_bytes(b"this is not a JPEG <b>at all</b>")
    return splits


def run_leakcheck(
    splits: dict[str, Path], out: Path, *extra: object, cache_dir: Path
) -> subprocess.CompletedProcess:
    """The real command line, in a subprocess, with its own cache folder."""
    arguments = [arg for name, folder in splits.items() for arg in (f"--{name}", str(folder))]
    env = dict(os.environ, LEAKCHECK_CACHE_DIR=str(cache_dir))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "leakcheck", *arguments, "--out", str(out), "--quiet",
         *map(str, extra)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


class Page(HTMLParser):
    """Tags with their attributes, and the visible text, of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_parts: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture(scope="module")
def hostile_splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_hostile_dataset(tmp_path_factory.mktemp("hostile-data"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def hostile_report(
    hostile_splits: dict[str, Path], cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("hostile-report")
    completed = run_leakcheck(hostile_splits, out, "--format", ALL_FORMATS, cache_dir=cache_dir)
    assert completed.returncode == 1, completed.stderr
    return out


def read_page(report: Path) -> tuple[str, Page]:
    html = (report / "report.html").read_text(encoding="utf-8")
    return html, Page(html)


def test_report_shows_every_planted_pair(hostile_report: Path) -> None:
    html, page = read_page(hostile_report)
    planted = (SAMPLE_DATA / "planted_twins.csv").read_text().splitlines()[1:]
    for line in planted:
        _, path_a, _, path_b, _ = line.split(",")
        assert path_a in page.text and path_b in page.text
    assert f"cats/{HOSTILE_NAME}" in page.text
    assert f"{HOSTILE_LABEL}/{PIPE_NAME}" in page.text
    assert "LEAK: 7 cross-split near-twin pairs" in page.text
    assert page.text.count("SSIM 1.00000") >= 3  # two exact sample pairs and the hostile pair


def test_user_strings_are_text_not_markup(hostile_report: Path) -> None:
    html, page = read_page(hostile_report)
    assert "<img src=x onerror" not in html
    assert "<b>dogs" not in html and "<script>" not in html.lower()
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html
    assert not any("onerror" in attrs for _, attrs in page.tags)
    assert not page.named("script")
    # Every <img> is one of ours: 2 thumbnails and 1 difference map per pair.
    images = page.named("img")
    assert len(images) == 3 * EXPECTED_PAIRS
    assert all(str(attrs["src"]).startswith("data:image/") for attrs in images)
    # The unreadable file is listed, escaped.
    assert BROKEN_NAME in page.text and "&lt;script&gt;broken.jpg" in html


def test_label_noise_is_highlighted(hostile_report: Path) -> None:
    html, page = read_page(hostile_report)
    assert page.text.count("label noise") == 1
    noisy_block = html[html.index('class="pair noise"') :]
    noisy_block = noisy_block[: noisy_block.index("</dl>")]
    assert "cats" in noisy_block and "&lt;b&gt;dogs" in noisy_block


def test_report_is_self_contained(hostile_report: Path) -> None:
    html, page = read_page(hostile_report)
    assert "http://" not in html and "https://" not in html
    for _, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:  # an inline image, an anchor, or a sibling report file
                assert re.fullmatch(r"data:image/\w+;base64,[\w+/=]+|#[\w-]+|[\w-]+\.\w+", value)
    assert not page.named("script") and not page.named("link") and not page.named("iframe")
    assert "url(" not in html and "@import" not in html


def test_histogram_and_threshold_table(hostile_report: Path) -> None:
    html, page = read_page(hostile_report)
    assert len(page.named("svg")) == 1
    assert "threshold 0.9" in page.text
    assert "search threshold" in page.text
    highlighted = html[html.index('<tr class="highlight">') :]
    assert highlighted.startswith('<tr class="highlight"><td>0.90</td><td class="number">7</td>')


def test_no_thumbnails_leaves_every_image_out(
    hostile_splits: dict[str, Path], cache_dir: Path, tmp_path: Path
) -> None:
    completed = run_leakcheck(
        hostile_splits, tmp_path, "--format", "html", "--no-thumbnails", cache_dir=cache_dir
    )
    assert completed.returncode == 1, completed.stderr
    html, page = read_page(tmp_path)
    assert "data:image" not in html
    assert not page.named("img")
    assert f"cats/{HOSTILE_NAME}" in page.text
    assert "--no-thumbnails" in page.text


def test_top_pairs_flag_limits_thumbnails(
    hostile_splits: dict[str, Path], cache_dir: Path, tmp_path: Path
) -> None:
    completed = run_leakcheck(
        hostile_splits, tmp_path, "--format", "csv,html", "--html-top-pairs", "2",
        cache_dir=cache_dir,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    html, page = read_page(tmp_path)
    assert len(page.named("img")) == 6
    assert "top 2" in page.text and "all 7 are in pairs.csv" in page.text
    assert {"href": "pairs.csv"} in page.named("a")


def test_size_limit_is_respected(cache_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "leakcheck.toml"
    config.write_text("threshold = -1\nhtml_max_bytes = 200000\n", encoding="utf-8")
    splits = {name: SAMPLE_DATA / name for name in ("train", "valid", "test")}
    out = tmp_path / "report"
    completed = run_leakcheck(
        splits, out, "--config", config, "--format", "csv,html", cache_dir=cache_dir
    )
    assert completed.returncode == 1, completed.stderr
    size = (out / "report.html").stat().st_size
    html, page = read_page(out)
    assert size <= 200_000
    thumbnails = len(page.named("img"))
    assert 0 < thumbnails < 3 * 200
    assert "Thumbnails stop at pair #" in page.text and "200,000 bytes" in page.text


def test_accepted_pairs_are_marked(
    hostile_splits: dict[str, Path], hostile_report: Path, cache_dir: Path, tmp_path: Path
) -> None:
    completed = run_leakcheck(
        hostile_splits, tmp_path, "--format", "html", "--baseline",
        hostile_report / "pairs.csv", "--no-thumbnails", cache_dir=cache_dir,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    html, page = read_page(tmp_path)
    assert page.text.count("accepted (baseline)") >= EXPECTED_PAIRS
    assert "Clean: no cross-split near-twin" in page.text


def test_undecodable_thumbnail_shows_a_placeholder(tmp_path: Path) -> None:
    import leakcheck
    from leakcheck.formats import write_report

    splits = make_hostile_dataset(tmp_path / "data")
    result = leakcheck.audit(splits, cache=False)
    (splits["train"] / "cats" / HOSTILE_NAME).write_bytes(b"gone")  # broken after the audit
    out = tmp_path / "report"
    write_report(result, out, ["html"])
    html, page = read_page(out)
    assert page.text.count("no preview") == 2  # the thumbnail and the difference map
    assert len(page.named("img")) == 3 * EXPECTED_PAIRS - 2


# -- in a real browser -------------------------------------------------------------------------


def _check_screenshot(png: bytes, tmp_path: Path) -> None:
    shot = tmp_path / "screenshot.png"
    shot.write_bytes(png)
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "the screenshot is (nearly) one colour"


@pytest.mark.browser
def test_browser_check_catches_errors(chromium: str, tmp_path: Path) -> None:
    """The detection itself: a page with a console error, an exception and an external image."""
    from browser import load_page

    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><p>x</p><img src='https://example.invalid/x.png'>"
        "<script>console.error('deliberate'); throw new Error('boom');</script>",
        encoding="utf-8",
    )
    loaded = load_page(page, chromium=chromium)
    assert any("deliberate" in error for error in loaded.errors)
    assert any("boom" in error for error in loaded.errors)
    assert "https://example.invalid/x.png" in loaded.requested_urls


@pytest.mark.browser
def test_report_renders_in_chromium(chromium: str, hostile_report: Path, tmp_path: Path) -> None:
    from browser import load_page

    loaded = load_page(hostile_report / "report.html", chromium=chromium)
    assert loaded.errors == []
    assert loaded.console == []
    assert all(url.startswith(("file:", "data:")) for url in loaded.requested_urls)
    assert sum(url.startswith("data:image/") for url in loaded.requested_urls) >= 3
    _check_screenshot(loaded.screenshot_png, tmp_path)


def test_thumbnail_of_a_large_rotated_photo_keeps_its_shape(tmp_path: Path) -> None:
    """Images over LARGE_IMAGE_PIXELS take the reduced decoding path; the aspect stays right."""
    import base64
    import io

    from leakcheck.formats.thumbnails import LARGE_IMAGE_PIXELS, thumbnail_data_uri

    photo = Image.fromarray(synthetic_texture(3, side=96)).resize((6000, 3000))
    assert LARGE_IMAGE_PIXELS < 6000 * 3000
    exif = photo.getexif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    photo.save(tmp_path / "large.jpg", exif=exif, quality=85)
    uri = thumbnail_data_uri(tmp_path / "large.jpg", max_pixels=None)
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumbnail:
        assert thumbnail.size == (64, 128)
