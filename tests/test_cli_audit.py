"""``leakcheck --train … --valid …`` end to end: exit codes, report files, odd and broken files.

Every test runs the real command in a subprocess (``run_cli``) on real folders of real image files
and checks what a user or a CI script would check: the exit code, stderr, and the report files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_DATA, RunCli, _run_cli, photo_crop, read_csv_rows, save_png
from image_factory import BROKEN_KINDS, VALID_KINDS, write_variant
from PIL import Image

PAIR_COLUMNS = [
    "split_a", "path_a", "split_b", "path_b", "ssim", "method", "label_a", "label_b", "accepted",
]  # fmt: skip
SUMMARY_KEYS = {
    "schema_version", "version", "skimage_version", "settings", "splits", "pairs_by_split_pair",
    "pairs_total", "pairs_computed", "pairs_pruned", "images_decoded", "images_from_cache",
    "timings", "counts_by_threshold", "exit_code",
}  # fmt: skip
SPLIT_KEYS = {"images", "errors", "skipped_by_extension"}
SSIM_TEXT = re.compile(r"^-?\d\.\d{6,}$")
FAST = ("--size", "32", "--format", "csv,json")

Pair = frozenset[tuple[str, str]]


def pair_key(row: dict[str, str]) -> Pair:
    return frozenset({(row["split_a"], row["path_a"]), (row["split_b"], row["path_b"])})


def report(out: Path) -> tuple[list[str], list[dict[str, str]], dict]:
    columns, rows = read_csv_rows(out / "pairs.csv")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return columns, rows, summary


def cli_main(*args: object) -> int:
    """The CLI in this process (``--quiet``), for checks that need no fresh interpreter."""
    from leakcheck.cli import main

    return main([*map(str, args), "--quiet"])


def assert_one_line_error(completed: subprocess.CompletedProcess, *needles: str) -> str:
    assert completed.returncode == 2, completed.stdout + completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("leakcheck: error: "), lines[0]
    assert "Traceback" not in completed.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- the sample data ---------------------------------------------------------------------------


def planted_pairs() -> set[Pair]:
    return {pair_key(row) for row in read_csv_rows(SAMPLE_DATA / "planted_twins.csv")[1]}


def sample_splits(root: Path = SAMPLE_DATA) -> list[str]:
    return ["--train", str(root / "train"), "--valid", str(root / "valid"), "--test",
            str(root / "test")]  # fmt: skip


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("sample-report")
    completed = _run_cli(*sample_splits(), "--out", out, "--format", "csv,json")
    return out, completed


def test_sample_data_exits_1_and_reports_exactly_the_planted_twins(sample_report) -> None:
    out, completed = sample_report
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "LEAK" in completed.stdout
    columns, rows, summary = report(out)
    assert {pair_key(row) for row in rows} == planted_pairs()
    assert len(rows) == len(planted_pairs())
    order = ["train", "valid", "test"]
    for row in rows:  # oriented: split_a before split_b in split order
        assert order.index(row["split_a"]) < order.index(row["split_b"])
        assert float(row["ssim"]) >= 0.9
    assert summary["exit_code"] == 1
    assert summary["pairs_total"] == 31 * 13 + 31 * 14 + 13 * 14
    assert sum(summary["pairs_by_split_pair"].values()) == len(rows)


def test_sample_data_without_the_twins_exits_0(tmp_path: Path, run_cli: RunCli) -> None:
    root = tmp_path / "data"
    for split in ("train", "valid", "test"):
        shutil.copytree(SAMPLE_DATA / split, root / split)
    for row in read_csv_rows(SAMPLE_DATA / "planted_twins.csv")[1]:
        (root / row["split_b"] / row["path_b"]).unlink()
    completed = run_cli(*sample_splits(root), "--out", tmp_path / "out", "--format", "csv")
    assert completed.returncode == 0, completed.stderr
    assert "clean" in completed.stdout
    columns, rows, summary = report(tmp_path / "out")
    assert rows == [] and columns[: len(PAIR_COLUMNS)] == PAIR_COLUMNS
    assert summary["exit_code"] == 0


def test_default_formats_write_a_report_without_a_crash(tmp_path: Path, run_cli: RunCli) -> None:
    completed = run_cli(*sample_splits(), "--out", tmp_path, "--quiet")
    assert "Traceback" not in completed.stderr, completed.stderr[-2000:]
    assert completed.returncode == 1
    assert (tmp_path / "pairs.csv").is_file() and (tmp_path / "summary.json").is_file()


# --- usage errors: exit code 2, one line on stderr ----------------------------------------------


def _usage_cases(root: Path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """name → (arguments, words the one-line message must contain)."""
    crops = [photo_crop(k, 40) for k in range(4)]
    good_a, good_b = root / "good_a", root / "good_b"
    save_png(crops[0], good_a / "a.png")
    save_png(crops[1], good_b / "b.png")
    (root / "empty").mkdir()
    (root / "no_images").mkdir()
    (root / "no_images" / "readme.txt").write_text("nothing to see")
    save_png(crops[2], good_a / "inner" / "c.png")
    for kind in BROKEN_KINDS:
        write_variant(kind, crops[3], root / "broken" / kind)
    save_png(crops[2][:30, :40], root / "odd_shape" / "small.png")  # 40x40 in good_a
    tiny = np.random.default_rng(0).integers(0, 256, (2, 6, 9, 3), dtype=np.uint8)
    save_png(tiny[0], root / "tiny_a" / "a.png")
    save_png(tiny[1], root / "tiny_b" / "b.png")
    (root / "a_file").write_text("not a folder")
    (root / "bad.toml").write_text("threshold = = 0.5\n[splits\n", encoding="utf-8")
    (root / "unknown_key.toml").write_text("treshold = 0.5\n", encoding="utf-8")
    a, b = ["--train", str(good_a)], ["--valid", str(good_b)]
    return {
        "missing_folder": ([*a, "--valid", str(root / "nowhere")], ("does not exist", "valid")),
        "empty_folder": ([*a, "--valid", str(root / "empty")], ("valid", "no image files")),
        "no_image_files": ([*a, "--valid", str(root / "no_images")], ("no image files",)),
        "nested_folders": ([*a, "--valid", str(good_a / "inner")], ("nested",)),
        "same_folder": ([*a, "--valid", str(good_a)], ("same folder",)),
        "only_undecodable": ([*a, "--valid", str(root / "broken")], ("valid", "no decodable")),
        "one_split": (a, ("at least two splits",)),
        "no_split": ([], ("no splits given",)),
        "bad_config": ([*a, *b, "--config", str(root / "bad.toml")], ("TOML",)),
        "missing_config": ([*a, *b, "--config", str(root / "none.toml")], ("not found",)),
        "unknown_config_key": (
            [*a, *b, "--config", str(root / "unknown_key.toml")],
            ("treshold",),
        ),  # fmt: skip
        "native_shapes": (
            [*a, "--valid", str(root / "odd_shape"), "--size", "native"],
            ("--size native", "same shape"),
        ),  # fmt: skip
        "threshold_too_high": ([*a, *b, "--threshold", "1.5"], ("threshold", "1.5")),
        "threshold_not_a_number": ([*a, *b, "--threshold", "high"], ("threshold",)),
        "size_too_small": ([*a, *b, "--size", "5"], ("size",)),
        "jobs_zero": ([*a, *b, "--jobs", "0"], ("jobs",)),
        "unknown_flag": ([*a, *b, "--frobnicate"], ("--frobnicate",)),
        "bad_split_flag": ([*a, "--split", "valid"], ("NAME=DIR",)),
        "split_twice": ([*a, "--split", f"train={good_b}"], ("twice",)),
        "unknown_format": ([*a, *b, "--format", "csv,pdf"], ("pdf",)),
        "unknown_variant": ([*a, *b, "--variants", "plain,warp"], ("warp",)),
        "native_smaller_than_window": (
            ["--train", str(root / "tiny_a"), "--valid", str(root / "tiny_b"), "--size", "native"],
            ("6x9", "SSIM window", "--size N"),
        ),
        "out_is_a_file": ([*a, *b, "--out", str(root / "a_file")], ("--out", "not a folder")),
        "cache_unusable": ([*a, *b, "--cache", str(root / "a_file" / "cache")], ("cache",)),
    }


#: The cases of the issue run as real subprocesses; the others run ``cli.main`` in this process
#: (the same code, without paying the interpreter's start-up for each).
SUBPROCESS_CASES = [
    "missing_folder", "empty_folder", "nested_folders", "only_undecodable", "one_split",
    "bad_config", "native_shapes", "threshold_too_high",
]  # fmt: skip
IN_PROCESS_CASES = [
    "no_image_files", "same_folder", "no_split", "missing_config", "unknown_config_key",
    "threshold_not_a_number", "size_too_small", "jobs_zero", "unknown_flag", "bad_split_flag",
    "split_twice", "unknown_format", "unknown_variant", "native_smaller_than_window",
    "out_is_a_file", "cache_unusable",
]  # fmt: skip


@pytest.fixture(scope="module")
def usage_cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("usage")
    return root, _usage_cases(root)


@pytest.fixture(scope="module")
def usage_runs(usage_cases) -> dict[str, subprocess.CompletedProcess]:
    """The subprocess cases, run at once (they are independent, and mostly start-up time)."""
    root, cases = usage_cases

    def run(name: str) -> subprocess.CompletedProcess:
        return _run_cli(*cases[name][0], "--out", root / "out", "--quiet")

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(SUBPROCESS_CASES, pool.map(run, SUBPROCESS_CASES), strict=True))


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_usage_error_exits_2_with_one_line(usage_cases, usage_runs, name: str) -> None:
    completed = usage_runs[name]
    assert_one_line_error(completed, *usage_cases[1][name][1])
    assert completed.stdout == ""


@pytest.mark.parametrize("name", IN_PROCESS_CASES)
def test_more_usage_errors_exit_2_with_one_line(
    usage_cases, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from leakcheck.cli import main

    root, cases = usage_cases
    arguments, needles = cases[name]
    out = [] if "--out" in arguments else ["--out", str(root / "out")]
    code = main([*map(str, arguments), *out, "--quiet"])
    captured = capsys.readouterr()
    completed = subprocess.CompletedProcess([], code, captured.out, captured.err)
    assert_one_line_error(completed, *needles)
    assert captured.out == ""


def test_missing_folder_is_one_line_even_without_quiet(tmp_path: Path, run_cli: RunCli) -> None:
    save_png(photo_crop(0, 40), tmp_path / "train" / "a.png")
    completed = run_cli("--train", tmp_path / "train", "--valid", tmp_path / "valid",
                        "--out", tmp_path / "out")  # fmt: skip
    assert_one_line_error(completed, str(tmp_path / "valid"))


# --- the report files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leaky_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Pair, str]]:
    """Three labelled splits of distinct crops with planted twins of every method.

    Returns the root and the planted pairs with their expected method.
    """
    from conftest import distinct_indices

    root = tmp_path_factory.mktemp("leaky")
    crops = [photo_crop(index, 48) for index in distinct_indices(40)[:18]]
    layout = {"train": range(0, 8), "valid": range(8, 13), "test": range(13, 18)}
    labels = ("cats", "dogs")
    for split, indices in layout.items():
        for k in indices:
            save_png(crops[k], root / split / labels[k % 2] / f"img{k:02d}.png")
    planted: dict[Pair, str] = {}

    def plant(split: str, path: str, source: int, method: str, pixels: np.ndarray) -> None:
        target = root / split / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if method == "same_file":
            target.symlink_to(root / "train" / labels[source % 2] / f"img{source:02d}.png")
        elif path.endswith(".bmp"):
            Image.fromarray(pixels).save(target, format="BMP")
        else:
            save_png(pixels, target)
        planted[frozenset({("train", f"{labels[source % 2]}/img{source:02d}.png"),
                           (split, path)})] = method  # fmt: skip

    rng = np.random.default_rng(3)
    noisy = np.clip(crops[1] + rng.normal(0, 6, crops[1].shape), 0, 255).astype(np.uint8)
    plant("valid", "dogs/twin of 1, noisy.png", 1, "ssim", noisy)
    plant("valid", "cats/exact-2.bmp", 2, "exact", crops[2])
    plant("test", "cats/exact-2 again.png", 2, "exact", crops[2])
    plant("test", "link to 4.png", 4, "same_file", crops[4])
    brighter = np.clip(crops[6].astype(int) + 12, 0, 255).astype(np.uint8)
    plant("test", "cats/ünïcødé, 6.png", 6, "ssim", brighter)
    # the two exact copies of img02 in valid and test are twins of each other as well
    planted[frozenset({("valid", "cats/exact-2.bmp"), ("test", "cats/exact-2 again.png")})] = (
        "exact"
    )
    return root, planted


def leaky_splits(root: Path) -> list[str]:
    return sample_splits(root)


@pytest.fixture(scope="module")
def leaky_report(leaky_dataset, tmp_path_factory: pytest.TempPathFactory):
    root, planted = leaky_dataset
    out = tmp_path_factory.mktemp("leaky-report")
    completed = _run_cli(*leaky_splits(root), "--out", out, *FAST)
    return out, completed, planted


def test_planted_twins_of_every_method_are_found(leaky_report) -> None:
    out, completed, planted = leaky_report
    assert completed.returncode == 1, completed.stderr
    _, rows, _ = report(out)
    found = {pair_key(row): row["method"] for row in rows}
    assert set(found) == set(planted)
    for pair, method in planted.items():
        if method == "ssim":  # plain SSIM, or a robust variant that scores at least as high
            assert found[pair].startswith("ssim"), (pair, found[pair])
        else:
            assert found[pair] == method, (pair, found[pair])
    for row in rows:
        if row["method"] in ("exact", "same_file"):
            assert float(row["ssim"]) == 1.0


def test_pairs_csv_columns_sort_order_and_formatting(leaky_report) -> None:
    out, _, _ = leaky_report
    columns, rows, _ = report(out)
    assert columns[: len(PAIR_COLUMNS)] == PAIR_COLUMNS
    order = {"train": 0, "valid": 1, "test": 2}
    # sorted on the full-precision values (pairs.json): 8 decimals can print 1 for 0.999999999
    exact = json.loads((out / "pairs.json").read_text(encoding="utf-8"))["pairs"]
    assert [(p["split_a"], p["path_a"], p["split_b"], p["path_b"]) for p in exact] == [
        (r["split_a"], r["path_a"], r["split_b"], r["path_b"]) for r in rows
    ]
    keys = [
        (-p["ssim"], order[p["split_a"]], p["path_a"], order[p["split_b"]], p["path_b"])
        for p in exact
    ]
    assert keys == sorted(keys)
    for row, pair in zip(rows, exact, strict=True):
        assert abs(float(row["ssim"]) - pair["ssim"]) <= 1e-6
    for row in rows:
        assert SSIM_TEXT.match(row["ssim"]), row["ssim"]
        for side in ("a", "b"):
            path = row[f"path_{side}"]
            assert not Path(path).is_absolute() and "\\" not in path
            assert path.split("/")[0] in ("cats", "dogs") or "/" not in path
            expected_label = path.split("/")[0] if "/" in path else ""
            assert row[f"label_{side}"] == expected_label
        assert row["accepted"] == "false"
        assert order[row["split_a"]] <= order[row["split_b"]]
    raw = (out / "pairs.csv").read_text(encoding="utf-8")
    assert '"dogs/twin of 1, noisy.png"' in raw  # a comma in a name is quoted, not split
    assert "cats/ünïcødé, 6.png" in raw


def test_summary_json_has_every_documented_key(leaky_dataset, leaky_report) -> None:
    out, _, planted = leaky_report
    _, rows, summary = report(out)
    assert set(summary) >= SUMMARY_KEYS
    assert summary["schema_version"] >= 1 and summary["version"]
    import skimage

    assert summary["skimage_version"] == skimage.__version__
    assert list(summary["splits"]) == ["train", "valid", "test"]
    for info in summary["splits"].values():
        assert set(info) >= SPLIT_KEYS
    assert summary["splits"]["train"]["images"] == 8
    assert summary["splits"]["valid"]["images"] == 7
    assert summary["splits"]["test"]["images"] == 8
    assert summary["pairs_by_split_pair"] == {"train/valid": 2, "train/test": 3, "valid/test": 1}
    assert summary["pairs_total"] == 8 * 7 + 8 * 8 + 7 * 8
    identical = sum(row["method"] in ("exact", "same_file") for row in rows)
    assert summary["pairs_skipped_as_identical"] == identical == 4
    assert summary["pairs_computed"] > 0 and summary["pairs_pruned"] >= 0
    # each distinct file is read once (a symlink to a file of another split is the same file)
    files = {p.resolve() for p in leaky_dataset[0].glob("*/**/*.*") if p.is_file()}
    assert summary["images_decoded"] + summary["images_from_cache"] == len(files) == 22
    assert summary["exit_code"] == 1
    assert summary["settings"]["threshold"] == 0.9 and summary["settings"]["size"] == 32
    assert all(isinstance(v, (int, float)) for v in summary["timings"].values())
    assert summary["counts_by_threshold"]["0.90"] == len(rows) == len(planted)
    assert (out / "pairs.json").is_file()


def test_labels_none_leaves_label_columns_empty(leaky_dataset, tmp_path: Path) -> None:
    root, planted = leaky_dataset
    assert cli_main(*leaky_splits(root), "--out", tmp_path, *FAST, "--labels", "none") == 1
    _, rows, _ = report(tmp_path)
    assert len(rows) == len(planted)
    assert all(row["label_a"] == row["label_b"] == "" for row in rows)


def test_jobs_1_and_2_give_identical_pairs_csv(leaky_dataset, tmp_path: Path) -> None:
    root, _ = leaky_dataset
    outputs = []
    for options in (["--jobs", "1"], ["--jobs", "2"]):
        out = tmp_path / "-".join(options)
        completed = _run_cli(*leaky_splits(root), "--out", out, *FAST, "--threshold", "0.2",
                             "--no-cache", "--quiet", *options)  # fmt: skip
        assert completed.returncode == 1, completed.stderr
        outputs.append((out / "pairs.csv").read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") > 10


def test_threshold_minus_one_reports_every_cross_split_pair(leaky_dataset, tmp_path) -> None:
    root, _ = leaky_dataset
    assert cli_main(*leaky_splits(root), "--out", tmp_path, *FAST, "--threshold", "-1") == 1
    _, rows, summary = report(tmp_path)
    assert len(rows) == summary["pairs_total"] == 8 * 7 + 8 * 8 + 7 * 8
    assert len({pair_key(row) for row in rows}) == len(rows)


# --- progress and --quiet ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory: pytest.TempPathFactory, distinct_crops) -> Path:
    root = tmp_path_factory.mktemp("clean")
    for k, rgb in enumerate(distinct_crops(6)):
        save_png(rgb, root / ("train" if k < 3 else "valid") / f"{k}.png")
    return root


def test_quiet_clean_run_prints_nothing(clean_dataset: Path, tmp_path: Path) -> None:
    completed = _run_cli("--train", clean_dataset / "train", "--valid", clean_dataset / "valid",
                         "--out", tmp_path, *FAST, "--quiet")  # fmt: skip
    assert completed.returncode == 0
    assert completed.stdout == "" and completed.stderr == ""
    assert (tmp_path / "summary.json").is_file()


def test_progress_bars_on_stderr_and_verdict_on_stdout(clean_dataset: Path, tmp_path) -> None:
    completed = _run_cli("--train", clean_dataset / "train", "--valid", clean_dataset / "valid",
                         "--out", tmp_path, *FAST, "--no-cache")  # fmt: skip
    assert completed.returncode == 0
    assert "decoding" in completed.stderr and "comparing" in completed.stderr
    assert "100%" in completed.stderr
    assert completed.stdout.startswith("leakcheck: clean")
    assert "%|" not in completed.stdout


# --- unreadable files and odd but valid ones ------------------------------------------------------


def test_broken_files_land_in_errors_csv_and_do_not_change_the_exit_code(
    tmp_path: Path, distinct_crops
) -> None:
    crops = distinct_crops(6)
    root = tmp_path / "data"
    for k in range(3):
        save_png(crops[k], root / "train" / f"good{k}.png")
        save_png(crops[k + 3], root / "valid" / f"good{k}.png")
    broken = {}
    for n, kind in enumerate(BROKEN_KINDS):
        split = ("train", "valid")[n % 2]
        written = write_variant(kind, crops[0], root / split / "bad" / kind)
        broken[(split, written.relative_to(root / split).as_posix())] = kind
    (root / "valid" / "folder.png").mkdir()  # a folder named like an image is not an image file
    extra = {  # not images, whatever their extension
        ("train", "bad/notes.GIF"): b"GIF? no, a shopping list\n",
        ("valid", "bad/random.webp"): bytes(range(256)) * 8,
        ("valid", "bad/empty.tiff"): b"",
        ("train", "bad/header-only.bmp"): b"BM" + bytes(20),
    }
    for (split, path), data in extra.items():
        (root / split / path).write_bytes(data)
        broken[(split, path)] = "not an image"
    completed = _run_cli("--train", root / "train", "--valid", root / "valid",
                         "--out", tmp_path / "out", *FAST, "--quiet")  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    columns, rows = read_csv_rows(tmp_path / "out" / "errors.csv")
    assert columns == ["split", "path", "error"]
    assert {(row["split"], row["path"]) for row in rows} == set(broken)
    for row in rows:
        assert row["error"].strip(), row
        assert "\n" not in row["error"] and str(root) not in row["error"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["splits"]["train"]["errors"] + summary["splits"]["valid"]["errors"] == len(
        broken
    )
    assert summary["splits"]["train"]["images"] == summary["splits"]["valid"]["images"] == 3
    # with a twin added, the exit code is 1 and the errors are still listed
    save_png(crops[1], root / "valid" / "twin.png")
    code = cli_main("--train", root / "train", "--valid", root / "valid",
                    "--out", tmp_path / "out2", *FAST)  # fmt: skip
    assert code == 1
    assert len(read_csv_rows(tmp_path / "out2" / "errors.csv")[1]) == len(broken)


ODD_NAMES = {
    "png": "plain name.png",
    "jpeg": "photo, with comma.jpg",
    "cmyk_jpeg": "cmyk.jpg",
    "png16": "sixteen-bit.png",
    "palette_png": "palette.png",
    "la_png": "la.png",
    "rgba_png": "rgba.png",
    "exif_rotated_jpeg": "rotated.jpeg",
    "animated_gif": "animated.gif",
    "multipage_tiff": "pages.tif",
    "bmp": "ünïcødé.bmp",
    "webp": "日本語 名前.webp",
    "float_tiff": 'quote "float".tiff',
    "png_named_jpg": "really a png.jpg",
}


def test_odd_but_valid_files_are_decoded_and_their_twins_found(tmp_path: Path) -> None:
    """train: the plain PNG of a photo crop per kind; valid: the crop written as that kind."""
    from conftest import distinct_indices

    indices = distinct_indices(40)[: len(VALID_KINDS)]
    assert set(ODD_NAMES) == set(VALID_KINDS)
    root = tmp_path / "data"
    expected: dict[str, Pair] = {}
    for kind, index in zip(VALID_KINDS, indices, strict=True):
        rgb = np.asarray(Image.fromarray(photo_crop(index, 96)).resize((72, 56)))
        save_png(rgb, root / "train" / f"{kind}.png")
        name = ODD_NAMES[kind]
        written = write_variant(kind, rgb, root / "valid" / "odd" / name)
        written = written.rename(written.with_name(name))  # the factory picks the suffix
        expected[kind] = frozenset({("train", f"{kind}.png"), ("valid", f"odd/{name}")})
    completed = _run_cli("--train", root / "train", "--valid", root / "valid",
                         "--out", tmp_path / "out", *FAST, "--quiet")  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    assert read_csv_rows(tmp_path / "out" / "errors.csv")[1] == []
    _, rows, _ = report(tmp_path / "out")
    found = {pair_key(row): float(row["ssim"]) for row in rows}
    missing = [kind for kind, pair in expected.items() if found.get(pair, -2.0) < 0.9]
    assert not missing, {kind: found.get(expected[kind]) for kind in missing}
    assert set(found) == set(expected.values())  # and nothing else


def test_byte_different_files_with_identical_pixels_are_exact_twins(tmp_path: Path) -> None:
    from conftest import distinct_indices

    a, b, c = (photo_crop(index, 40) for index in distinct_indices(40)[:3])
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "valid").mkdir()
    Image.fromarray(a).save(root / "train" / "a.png", compress_level=9)
    save_png(b, root / "train" / "b.png")
    Image.fromarray(a).save(root / "valid" / "a-fast.png", compress_level=0)
    Image.fromarray(a).save(root / "valid" / "a.bmp")
    Image.fromarray(a).save(root / "valid" / "a.tiff", compression="tiff_lzw")
    save_png(c, root / "valid" / "c.png")
    files = [root / "train" / "a.png", root / "valid" / "a-fast.png", root / "valid" / "a.bmp"]
    assert len({f.read_bytes() for f in files}) == 3
    completed = _run_cli("--train", root / "train", "--valid", root / "valid",
                         "--out", tmp_path / "out", *FAST, "--quiet")  # fmt: skip
    assert completed.returncode == 1
    _, rows, _ = report(tmp_path / "out")
    assert {(row["path_a"], row["path_b"], row["method"], row["ssim"]) for row in rows} == {
        ("a.png", "a-fast.png", "exact", "1.00000000"),
        ("a.png", "a.bmp", "exact", "1.00000000"),
        ("a.png", "a.tiff", "exact", "1.00000000"),
    }


def test_out_folder_keeps_unrelated_files(clean_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "journal-20240101T000000.csv").write_text("keep me\n")
    (out / "notes.md").write_text("mine\n")
    (out / "pairs.csv").write_text("stale\n")
    code = cli_main("--train", clean_dataset / "train", "--valid", clean_dataset / "valid",
                    "--out", out, *FAST)  # fmt: skip
    assert code == 0
    assert (out / "journal-20240101T000000.csv").read_text() == "keep me\n"
    assert (out / "notes.md").read_text() == "mine\n"
    assert (out / "pairs.csv").read_text().startswith("split_a,path_a")
