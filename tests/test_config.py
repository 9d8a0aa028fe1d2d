"""``--config FILE``: the shipped presets, settings and ``[splits]`` from TOML, flags winning."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest
from conftest import REPO_ROOT, RunCli, read_csv_rows, save_png

from leakcheck.cli import _audit_parser, main, resolve_inputs
from leakcheck.settings import Settings, SettingsError, read_config, settings_from_mapping

CONFIGS = REPO_ROOT / "configs"
FIELDS = [field.name for field in dataclasses.fields(Settings)]


def settings_of(path: Path) -> Settings:
    return settings_from_mapping(read_config(path).settings)


def test_default_toml_equals_the_built_in_defaults() -> None:
    config = read_config(CONFIGS / "default.toml")
    assert config.splits == {} and config.manifest is None
    assert settings_from_mapping(config.settings) == Settings()


def test_default_toml_documents_every_setting() -> None:
    text = (CONFIGS / "default.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    for name in FIELDS:
        # an active key, or one commented out (settings whose default has no TOML value)
        pattern = re.compile(rf"^(# )?{name} = ")
        where = [k for k, line in enumerate(lines) if pattern.match(line)]
        assert len(where) == 1, f"{name} is not documented exactly once in default.toml"
        comment = lines[where[0] - 1]
        assert comment.startswith("# ") and not pattern.match(comment), (
            f"{name} has no comment above it"
        )
    active = set(tomllib.loads(text))
    assert active <= set(FIELDS), active - set(FIELDS)
    unset = {f.name for f in dataclasses.fields(Settings) if getattr(Settings(), f.name) is None}
    assert active == set(FIELDS) - unset  # every setting with a TOML value is spelled out


def test_default_toml_shows_an_example_splits_table() -> None:
    text = (CONFIGS / "default.toml").read_text(encoding="utf-8")
    example = "\n".join(
        line.removeprefix("# ") for line in text.splitlines() if line.startswith("# [splits]")
        or re.match(r"^# (train|valid|test) = ", line)
    )  # fmt: skip
    assert set(tomllib.loads(example)["splits"]) == {"train", "valid", "test"}


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_every_preset_uses_only_known_settings(preset: str) -> None:
    config = read_config(CONFIGS / preset)
    assert set(config.settings) <= set(FIELDS)
    settings_of(CONFIGS / preset)  # and the values pass the checks


def test_presets_say_what_they_are_for() -> None:
    strict = settings_of(CONFIGS / "strict.toml")
    assert strict.threshold == 0.85 and strict.within is True
    fast = settings_of(CONFIGS / "fast-large.toml")
    assert fast.search == "approximate" and fast.variants == ("plain",)


# --- flags over the config file over the defaults -----------------------------------------------


def resolved(tmp_path: Path, toml: str, *flags: str):
    config = tmp_path / "leakcheck.toml"
    config.write_text(toml, encoding="utf-8")
    namespace = _audit_parser().parse_args(["--config", str(config), *flags])
    return resolve_inputs(namespace)


def test_config_sets_settings_and_flags_win(tmp_path: Path) -> None:
    toml = 'threshold = 0.7\nsize = "native"\nwithin = true\nformats = ["csv"]\njobs = 2\n'
    toml += '[splits]\ntrain = "data/train"\nvalid = "data/valid"\n'
    splits, manifest, settings = resolved(tmp_path, toml)
    assert splits == {"train": tmp_path / "data/train", "valid": tmp_path / "data/valid"}
    assert manifest is None
    assert settings == Settings(threshold=0.7, size=None, within=True, formats=("csv",), jobs=2)
    splits, _, settings = resolved(
        tmp_path, toml, "--threshold", "0.95", "--size", "40", "--format", "csv,json",
        "--jobs", "1", "--test", "t", "--split", "train=elsewhere",
    )  # fmt: skip
    assert settings.threshold == 0.95 and settings.size == 40 and settings.jobs == 1
    assert settings.formats == ("csv", "json") and settings.within is True
    # flags first in split order, then the config's; a flag's folder wins over the config's
    assert list(splits) == ["test", "train", "valid"]
    assert splits["train"] == Path("elsewhere")


def test_config_booleans_are_overridden_by_flags(tmp_path: Path) -> None:
    toml = "cache = true\nthumbnails = true\nquiet = false\n"
    _, _, settings = resolved(
        tmp_path, toml, "--train", "a", "--valid", "b", "--no-cache", "--no-thumbnails", "--quiet"
    )
    assert (settings.cache, settings.thumbnails, settings.quiet) == (False, False, True)


def test_config_relative_splits_and_manifest_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    config = tmp_path / "sub" / "c.toml"
    config.write_text('manifest = "../m.csv"\n[splits]\nholdout = "../h"\n', encoding="utf-8")
    read = read_config(config)
    assert read.manifest.resolve() == (tmp_path / "m.csv").resolve()
    assert read.splits["holdout"].resolve() == (tmp_path / "h").resolve()


@pytest.mark.parametrize(
    "toml", ["threshold = = 1\n", "[splits\n", "threshold = 2.0\n", "colour = 'rgb'\n",
             "[splits]\ntrain = 3\n[splits]\n"],
)  # fmt: skip
def test_bad_config_is_a_settings_error(tmp_path: Path, toml: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml, encoding="utf-8")
    with pytest.raises(SettingsError):
        settings_from_mapping(read_config(config).settings)


@pytest.mark.parametrize(
    "toml",
    ['threshold = "high"\n', 'max_pixels = "lots"\n', 'floor = "low"\n', 'jobs = "two"\n',
     'within = "yes"\n', "formats = 5\n"],
)  # fmt: skip
def test_config_value_of_the_wrong_type_exits_2(
    tmp_path: Path, toml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, split in enumerate(("train", "valid")):
        save_png(_crop(k), tmp_path / split / "a.png")
    config = tmp_path / "bad.toml"
    config.write_text(toml, encoding="utf-8")
    try:
        code = main(["--config", str(config), "--train", str(tmp_path / "train"), "--valid",
                     str(tmp_path / "valid"), "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    except Exception as error:  # a crash is the bug this test documents
        pytest.fail(f"crashed: {type(error).__name__}: {error}")
    assert code == 2
    assert capsys.readouterr().err.startswith("leakcheck: error:")


def _crop(index: int):
    from conftest import photo_crop

    return photo_crop(index, 40)


# --- end to end ---------------------------------------------------------------------------------


def test_config_file_drives_a_real_run_and_flags_win(
    tmp_path: Path, run_cli: RunCli, distinct_crops
) -> None:
    crops = distinct_crops(5)
    data = tmp_path / "project" / "data"
    for k in range(3):
        save_png(crops[k], data / "train" / "cats" / f"{k}.png")
    save_png(crops[0], data / "valid" / "cats" / "copy.png")
    save_png(crops[3], data / "valid" / "dogs" / "3.png")
    save_png(crops[4], data / "holdout" / "4.png")
    config = tmp_path / "project" / "leakcheck.toml"
    config.write_text(
        "threshold = -1\nsize = 24\nlabels = 'none'\nformats = ['csv']\nquiet = true\n"
        "[splits]\ntrain = 'data/train'\nvalid = 'data/valid'\n",
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    completed = run_cli("--config", config, "--out", "report", cwd=elsewhere)
    assert completed.returncode == 1, completed.stderr
    assert completed.stdout == completed.stderr == ""
    summary = json.loads((elsewhere / "report" / "summary.json").read_text(encoding="utf-8"))
    assert summary["settings"]["threshold"] == -1 and summary["settings"]["size"] == 24
    assert list(summary["splits"]) == ["train", "valid"]
    _, rows = read_csv_rows(elsewhere / "report" / "pairs.csv")
    assert len(rows) == 3 * 2 and all(row["label_a"] == "" for row in rows)
    assert not (elsewhere / "report" / "report.html").exists()

    completed = run_cli(
        "--config", config, "--out", "report2", "--threshold", "0.9", "--labels", "folder",
        "--split", f"holdout={data / 'holdout'}", cwd=elsewhere,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    summary = json.loads((elsewhere / "report2" / "summary.json").read_text(encoding="utf-8"))
    assert summary["settings"]["threshold"] == 0.9
    assert list(summary["splits"]) == ["holdout", "train", "valid"]
    _, rows = read_csv_rows(elsewhere / "report2" / "pairs.csv")
    assert [(r["path_a"], r["path_b"], r["label_a"], r["method"]) for r in rows] == [
        ("cats/0.png", "cats/copy.png", "cats", "exact")
    ]
