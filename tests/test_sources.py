"""Which files an audit reads: hidden files, symlinks, extensions, labels, paths.

Each test builds real split folders of real image files and runs the real audit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import RunCli, save_png
from image_factory import write_variant

import leakcheck
from leakcheck.sources import SourceError, collect_sources

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")


def audit(root: Path, **options: object) -> leakcheck.AuditResult:
    splits = {name: root / name for name in ("train", "valid") if (root / name).exists()}
    options.setdefault("size", 32)
    options.setdefault("jobs", 1)
    return leakcheck.audit(splits, **options)


def listed(root: Path, split: str = "train") -> list[str]:
    sources = collect_sources({"train": root / "train", "valid": root / "valid"})
    return [record.path for source in sources if source.name == split for record in source.records]


def pair_set(result: leakcheck.AuditResult) -> set[tuple[str, str, str, str, str]]:
    return {
        (row.split_a, row.path_a, row.split_b, row.path_b, row.method)
        for row in result.pairs.itertuples(index=False)
    }


@pytest.fixture
def two_splits(tmp_path: Path, distinct_crops) -> Path:
    """train: three distinct crops; valid: two other distinct crops (no near-twin)."""
    crops = distinct_crops(5)
    for k in range(3):
        save_png(crops[k], tmp_path / "train" / f"t{k}.png")
    for k in range(3, 5):
        save_png(crops[k], tmp_path / "valid" / f"v{k}.png")
    return tmp_path


def test_hidden_files_and_folders_are_skipped(two_splits: Path, distinct_crops) -> None:
    twin = distinct_crops(1)[0]  # t0.png's pixels: a leak, were these files read
    save_png(twin, two_splits / "valid" / ".hidden.png")
    save_png(twin, two_splits / "valid" / ".cache" / "t0.png")
    save_png(twin, two_splits / "valid" / "cats" / ".thumbs" / "t0.png")
    (two_splits / "valid" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    result = audit(two_splits)
    assert result.exit_code == 0
    assert listed(two_splits, "valid") == ["v3.png", "v4.png"]
    assert result.summary["splits"]["valid"]["skipped_by_extension"] == {}
    assert result.summary["splits"]["valid"]["images"] == 2


@needs_symlinks
def test_symlinked_folders_are_followed(two_splits: Path, tmp_path_factory, distinct_crops) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    save_png(distinct_crops(1)[0], elsewhere / "dogs" / "copy.png")
    (two_splits / "valid" / "linked").symlink_to(elsewhere, target_is_directory=True)
    result = audit(two_splits)
    assert "linked/dogs/copy.png" in listed(two_splits, "valid")
    assert ("train", "t0.png", "valid", "linked/dogs/copy.png", "exact") in pair_set(result)
    label = result.images.set_index("path").loc["linked/dogs/copy.png", "label"]
    assert label == "linked"


@needs_symlinks
def test_a_symlink_loop_is_walked_once(two_splits: Path, distinct_crops) -> None:
    inner = two_splits / "train" / "inner"
    save_png(distinct_crops(6)[5], inner / "deep.png")
    (inner / "loop").symlink_to(two_splits / "train", target_is_directory=True)
    (inner / "self").symlink_to(inner, target_is_directory=True)
    (two_splits / "train" / "up").symlink_to("inner/loop", target_is_directory=True)
    paths = listed(two_splits)
    assert sorted(paths) == ["inner/deep.png", "t0.png", "t1.png", "t2.png"]
    assert audit(two_splits).summary["splits"]["train"]["images"] == 4


@needs_symlinks
def test_same_file_reachable_from_two_splits(two_splits: Path) -> None:
    (two_splits / "valid" / "alias.png").symlink_to(two_splits / "train" / "t1.png")
    result = audit(two_splits)
    assert result.exit_code == 1
    rows = result.pairs
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row.split_a, row.path_a, row.split_b, row.path_b) == (
        "train", "t1.png", "valid", "alias.png",
    )  # fmt: skip
    assert row.method == "same_file"
    assert row.ssim == 1.0


@needs_symlinks
def test_dangling_symlink_is_an_error_row_not_a_crash(two_splits: Path) -> None:
    (two_splits / "valid" / "gone.png").symlink_to(two_splits / "nowhere.png")
    result = audit(two_splits)
    assert result.exit_code == 0
    errors = result.errors
    assert list(errors["path"]) == ["gone.png"]
    assert errors.iloc[0]["split"] == "valid"
    assert errors.iloc[0]["error"]


def test_files_skipped_by_extension_are_counted_per_extension(
    two_splits: Path, run_cli: RunCli, tmp_path_factory
) -> None:
    train = two_splits / "train"
    (train / "notes.txt").write_text("hello")
    (train / "more.TXT").write_text("hello")
    (train / "labels.csv").write_text("a,b\n")
    (train / "README").write_text("no extension")
    (train / "sub").mkdir()
    (train / "sub" / "clip.mp4").write_bytes(b"\0" * 10)
    out = tmp_path_factory.mktemp("report")
    completed = run_cli(
        "--train", train, "--valid", two_splits / "valid", "--out", out, "--format", "csv",
        "--size", 32, "--quiet",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["splits"]["train"]["skipped_by_extension"] == {
        ".txt": 2, ".csv": 1, "(none)": 1, ".mp4": 1,
    }  # fmt: skip
    assert summary["splits"]["train"]["images"] == 3
    assert summary["splits"]["valid"]["skipped_by_extension"] == {}


def test_extensions_are_case_insensitive(tmp_path: Path, distinct_crops) -> None:
    crops = distinct_crops(4)
    save_png(crops[0], tmp_path / "train" / "a.PNG")
    write_variant("jpeg", crops[1], tmp_path / "train" / "b")
    (tmp_path / "train" / "b.jpg").rename(tmp_path / "train" / "b.JpEg")
    write_variant("bmp", crops[2], tmp_path / "train" / "c")
    (tmp_path / "train" / "c.bmp").rename(tmp_path / "train" / "c.BMP")
    save_png(crops[0], tmp_path / "valid" / "A.Png")
    save_png(crops[3], tmp_path / "valid" / "d.TIFF")
    result = audit(tmp_path)
    assert sorted(result.images["path"]) == ["A.Png", "a.PNG", "b.JpEg", "c.BMP", "d.TIFF"]
    assert result.errors.empty
    assert pair_set(result) == {("train", "a.PNG", "valid", "A.Png", "exact")}


def test_png_named_jpg_is_audited_normally(tmp_path: Path, distinct_crops) -> None:
    crops = distinct_crops(3)
    save_png(crops[0], tmp_path / "train" / "photo.png")
    save_png(crops[1], tmp_path / "train" / "other.png")
    write_variant("png_named_jpg", crops[0], tmp_path / "valid" / "photo")
    save_png(crops[2], tmp_path / "valid" / "third.png")
    result = audit(tmp_path)
    assert result.errors.empty
    assert pair_set(result) == {("train", "photo.png", "valid", "photo.jpg", "exact")}


def test_labels_come_from_first_level_subfolders(tmp_path: Path, distinct_crops) -> None:
    crops = distinct_crops(3)
    save_png(crops[0], tmp_path / "train" / "cats" / "deep" / "er" / "x.png")
    save_png(crops[1], tmp_path / "train" / "loose.png")
    save_png(crops[0], tmp_path / "valid" / "dogs" / "y.png")
    save_png(crops[2], tmp_path / "valid" / "z.png")
    result = audit(tmp_path)
    row = result.pairs.iloc[0]
    assert (row.path_a, row.label_a, row.path_b, row.label_b) == (
        "cats/deep/er/x.png", "cats", "dogs/y.png", "dogs",
    )  # fmt: skip
    labels = dict(zip(result.images["path"], result.images["label"], strict=True))
    assert labels["loose.png"] == "" and labels["z.png"] == ""
    unlabelled = audit(tmp_path, labels="none")
    row = unlabelled.pairs.iloc[0]
    assert (row.label_a, row.label_b) == ("", "")
    assert set(unlabelled.images["label"]) == {""}


def test_empty_folder_and_only_non_images_are_refused(tmp_path: Path, distinct_crops) -> None:
    save_png(distinct_crops(1)[0], tmp_path / "train" / "a.png")
    (tmp_path / "valid").mkdir()
    with pytest.raises(SourceError, match="valid"):
        audit(tmp_path)
    (tmp_path / "valid" / "notes.txt").write_text("no images here")
    (tmp_path / "valid" / ".hidden.png").write_bytes(b"")
    with pytest.raises(SourceError, match="no image files"):
        audit(tmp_path)


@pytest.mark.parametrize("inner", ["train/valid", "train/sub/valid", "train"])
def test_nested_or_identical_split_folders_are_refused(
    tmp_path: Path, distinct_crops, inner: str
) -> None:
    crops = distinct_crops(2)
    save_png(crops[0], tmp_path / "train" / "a.png")
    save_png(crops[1], tmp_path / inner / "b.png")
    with pytest.raises(SourceError, match="nested|same folder"):
        leakcheck.audit({"train": tmp_path / "train", "valid": tmp_path / inner}, size=32)
    with pytest.raises(SourceError, match="nested|same folder"):
        leakcheck.audit({"valid": tmp_path / inner, "train": tmp_path / "train"}, size=32)


def test_manifest_paths_are_reported_as_written(tmp_path: Path, distinct_crops) -> None:
    crops = distinct_crops(3)
    save_png(crops[0], tmp_path / "images" / "one.png")
    save_png(crops[0], tmp_path / "images" / "sub" / "one again.png")
    save_png(crops[1], tmp_path / "images" / "two.png")
    save_png(crops[2], tmp_path / "images" / "three.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,split,label\n"
        "images/one.png,train,a\n"
        "images/two.png,train,b\n"
        "images/sub/one again.png,test,a\n"
        "images/three.png,test,c\n"
        "images/notes.txt,test,c\n",
        encoding="utf-8",
    )
    result = leakcheck.audit(manifest=manifest, size=32, jobs=1)
    assert result.split_order == ["train", "test"]
    assert pair_set(result) == {
        ("train", "images/one.png", "test", "images/sub/one again.png", "exact")
    }
    assert result.summary["splits"]["test"]["skipped_by_extension"] == {".txt": 1}


def test_paths_use_forward_slashes_and_are_relative(two_splits: Path, distinct_crops) -> None:
    save_png(distinct_crops(1)[0], two_splits / "valid" / "a" / "b" / "c.png")
    result = audit(two_splits)
    row = result.pairs.iloc[0]
    assert row.path_b == "a/b/c.png"
    assert not Path(row.path_a).is_absolute()
    assert all("\\" not in path for path in result.images["path"])
    assert np.all(result.images["split"].isin(["train", "valid"]))


def test_collect_sources_keeps_the_order_given(two_splits: Path) -> None:
    sources = collect_sources({"valid": two_splits / "valid", "train": two_splits / "train"})
    assert [source.name for source in sources] == ["valid", "train"]


def test_hard_link_in_two_splits_is_the_same_file(two_splits: Path) -> None:
    os.link(two_splits / "train" / "t1.png", two_splits / "valid" / "hard.png")
    result = audit(two_splits)
    assert pair_set(result) == {("train", "t1.png", "valid", "hard.png", "same_file")}


def test_a_changed_file_is_audited_again_despite_the_cache(
    two_splits: Path, distinct_crops
) -> None:
    first = audit(two_splits, cache=True)
    again = audit(two_splits, cache=True)
    assert first.exit_code == again.exit_code == 0
    assert again.summary["comparison_from_cache"] is True
    save_png(distinct_crops(1)[0], two_splits / "valid" / "v3.png")  # now a copy of t0.png
    changed = audit(two_splits, cache=True)
    assert changed.summary["comparison_from_cache"] is False
    assert pair_set(changed) == {("train", "t0.png", "valid", "v3.png", "exact")}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_called_png_is_an_error_row_not_a_hang(two_splits: Path) -> None:
    os.mkfifo(two_splits / "valid" / "pipe.png")
    result = audit(two_splits)
    assert result.exit_code == 0
    assert list(result.errors["path"]) == ["pipe.png"]
    assert "not a regular file" in result.errors.iloc[0]["error"]
