"""Every setting of an audit in one frozen dataclass, and the TOML config files that fill it.

Flags win over the config file, which wins over the defaults. ``configs/default.toml`` documents
every key; its keys are the field names below.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

#: Comparison size chosen on the robustness harness (benchmarks/README.md, "Robustness"): at 32
#: plain SSIM already tolerates sensor noise, blur and downscaling, and costs a quarter of 64.
DEFAULT_SIZE = 32
#: Robust variant families tried by default (``--variants``; each one pays for its cost on
#: ``benchmarks/robustness.py``, see benchmarks/README.md). ``("plain",)`` is plain SSIM only.
DEFAULT_VARIANTS = ("plain", "hflip", "tone", "exposure", "shift", "crop", "rotate")
DEFAULT_THRESHOLD = 0.9
COLOR_MODES = ("gray", "rgb")
WINDOWS = ("uniform", "gaussian")
LABEL_MODES = ("folder", "none")
SEARCH_MODES = ("exact", "approximate")
POLICIES = ("train", "majority", "balanced")
FORMATS = ("csv", "json", "html", "markdown", "junit")
DEFAULT_FORMATS = ("csv", "json", "html")


class SettingsError(ValueError):
    """A setting has a value leakcheck cannot use; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    """Every knob of an audit. Field names are the config file's keys and the flags' long names."""

    threshold: float = DEFAULT_THRESHOLD
    size: int | None = DEFAULT_SIZE  # None means "native": compare at the original size
    color: str = "gray"
    window: str = "uniform"
    labels: str = "folder"
    max_pixels: int | None = Image.MAX_IMAGE_PIXELS
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    cache: bool = True
    cache_dir: Path | None = None
    search: str = "exact"
    min_recall: float | None = None
    jobs: int = -1
    backend: str = "threading"
    scheduler: str | None = None
    baseline: Path | None = None
    write_baseline: Path | None = None
    write_manifest: Path | None = None
    policy: str = "balanced"
    within: bool = False
    floor: float | None = None
    thumbnails: bool = True
    formats: tuple[str, ...] = DEFAULT_FORMATS
    out: Path = field(default_factory=lambda: Path("leakcheck-report"))
    quiet: bool = False
    html_top_pairs: int = 200
    html_max_bytes: int = 20_000_000

    def __post_init__(self) -> None:
        check_settings(self)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The settings as plain JSON values (for ``summary.json``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["size"] = "native" if self.size is None else self.size
        return out


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SettingsError(message)


#: The type each setting must have (config files and the API can give anything).
_NUMBER = (int, float)
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "threshold": _NUMBER, "min_recall": _NUMBER, "floor": _NUMBER,
    "size": (int,), "max_pixels": (int,), "jobs": (int,), "html_top_pairs": (int,),
    "html_max_bytes": (int,), "cache": (bool,), "within": (bool,), "thumbnails": (bool,),
    "quiet": (bool,), "color": (str,), "window": (str,), "labels": (str,), "search": (str,),
    "backend": (str,), "scheduler": (str,), "policy": (str,), "variants": (tuple,),
    "formats": (tuple,), "cache_dir": (Path,), "baseline": (Path,), "write_baseline": (Path,),
    "write_manifest": (Path,), "out": (Path,),
}  # fmt: skip
_OPTIONAL = {"size", "max_pixels", "min_recall", "floor", "scheduler", "cache_dir", "baseline",
             "write_baseline", "write_manifest"}  # fmt: skip


def _check_types(settings: Settings) -> None:
    for name, types in _SETTING_TYPES.items():
        value = getattr(settings, name)
        if value is None and name in _OPTIONAL:
            continue
        # bool is an int in Python, but `jobs = true` is a mistake, not 1 worker
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types).replace("tuple", "list")
            raise SettingsError(
                f"{name} must be a {expected}, got {value!r} ({type(value).__name__})"
            )
        if isinstance(value, tuple) and not all(isinstance(item, str) for item in value):
            raise SettingsError(f"{name} must be a list of names, got {list(value)!r}")


def check_settings(settings: Settings) -> None:
    """Raise :class:`SettingsError` naming the first setting of the wrong type or out of range."""
    _check_types(settings)
    s = settings
    _require(-1.0 <= s.threshold <= 1.0, f"threshold must be in [-1, 1], got {s.threshold}")
    _require(
        s.size is None or (isinstance(s.size, int) and s.size >= 11),
        f"size must be an integer >= 11 (the SSIM window must fit) or 'native', got {s.size!r}",
    )
    _require(s.color in COLOR_MODES, f"color must be one of {COLOR_MODES}, got {s.color!r}")
    _require(s.window in WINDOWS, f"window must be one of {WINDOWS}, got {s.window!r}")
    _require(s.labels in LABEL_MODES, f"labels must be one of {LABEL_MODES}, got {s.labels!r}")
    _require(
        s.max_pixels is None or s.max_pixels > 0,
        f"max_pixels must be positive, got {s.max_pixels}",
    )
    _require(s.search in SEARCH_MODES, f"search must be one of {SEARCH_MODES}, got {s.search!r}")
    _require(
        s.min_recall is None or 0.0 <= s.min_recall <= 1.0,
        f"min_recall must be in [0, 1], got {s.min_recall}",
    )
    _require(s.jobs != 0, "jobs must be a positive number of workers or -1 (all cores), not 0")
    _require(s.policy in POLICIES, f"policy must be one of {POLICIES}, got {s.policy!r}")
    _require(
        s.floor is None or -1.0 <= s.floor <= s.threshold,
        f"floor must be in [-1, threshold={s.threshold}], got {s.floor}",
    )
    unknown = [f for f in s.formats if f not in FORMATS]
    _require(not unknown, f"unknown format(s) {unknown}; choose from {FORMATS}")
    _require(s.html_top_pairs >= 0, "html_top_pairs must be >= 0")
    _require(s.html_max_bytes > 0, "html_max_bytes must be positive")


def parse_size(value: str | int | None) -> int | None:
    """``"native"`` → None, ``"64"`` → 64."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "native"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"size must be an integer or 'native', got {value!r}") from None


def parse_list(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"csv,json"`` or ``["csv", "json"]`` → ``("csv", "json")``."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"expected a list of names like 'csv,json', got {value!r}")
    return tuple(item.strip() for item in value if item.strip())


_PATH_FIELDS = {"cache_dir", "baseline", "write_baseline", "write_manifest", "out"}
_LIST_FIELDS = {"variants", "formats"}


def coerce_setting(name: str, value: Any) -> Any:
    """Turn a config or flag value into the type of field ``name``."""
    if name == "size":
        return parse_size(value)
    if name in _LIST_FIELDS:
        return parse_list(value)
    if name in _PATH_FIELDS:
        return None if value is None else Path(value)
    return value


def settings_from_mapping(values: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Build :class:`Settings` from ``values`` (config keys or keyword arguments) over ``base``."""
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown setting(s) {unknown}; known settings: {sorted(known)}")
    coerced = {name: coerce_setting(name, value) for name, value in values.items()}
    return dataclasses.replace(base or Settings(), **coerced)


@dataclass(frozen=True)
class ConfigFile:
    """A parsed TOML config: settings plus optional split folders and manifest."""

    settings: dict[str, Any]
    splits: dict[str, Path]
    manifest: Path | None


def read_config(path: Path) -> ConfigFile:
    """Read a TOML config file. Relative split and manifest paths are relative to the file.

    Layout: top-level keys are settings; an optional ``[splits]`` table maps split names to
    folders; an optional ``manifest`` key names a manifest CSV.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None
    base = Path(path).parent
    splits_table = data.pop("splits", {}) or {}
    if not isinstance(splits_table, dict):
        raise SettingsError(f"{path}: [splits] must be a table of name = folder")
    splits = {str(k): base / os.path.expanduser(str(v)) for k, v in splits_table.items()}
    manifest = data.pop("manifest", None)
    return ConfigFile(
        settings=data,
        splits=splits,
        manifest=None if manifest is None else base / os.path.expanduser(str(manifest)),
    )
