"""Command line: arguments, subcommands and exit codes — nothing else.

``leakcheck --train DIR --valid DIR …`` is the audit; ``sort``, ``place``, ``apply``, ``undo`` and
``cache`` are subcommands. Exit codes: 0 clean / done, 1 leaks or conflicts found, 2 usage or
input error (the contract in ``product.md``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from leakcheck import __version__

EXIT_CLEAN = 0
EXIT_FOUND = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing a multi-line usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see 'leakcheck --help')")


class _SplitAction(argparse.Action):
    """Collect --train/--valid/--test/--split in the order typed."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        splits = list(getattr(namespace, "splits", None) or [])
        if self.const is not None:
            splits.append((self.const, values))
        else:
            name, sep, folder = str(values).partition("=")
            if not sep or not name or not folder:
                raise UsageError(f"--split expects NAME=DIR, got {values!r}")
            splits.append((name, folder))
        namespace.splits = splits


# Flags that map 1:1 onto Settings fields (dest = field name).
_SETTING_FLAGS: list[tuple[list[str], dict[str, Any]]] = [
    (
        ["--threshold"],
        {"type": float, "help": "a pair with SSIM >= T is a near-twin (default 0.9)"},
    ),
    (["--out"], {"help": "report folder (default leakcheck-report/)"}),
    (
        ["--format"],
        {"dest": "formats", "help": "csv,json,html,markdown,junit (default csv,json,html)"},
    ),
    (["--jobs"], {"type": int, "help": "parallel workers (default: all cores, -1)"}),
    (["--size"], {"help": "comparison size N (N×N) or 'native' (default 32)"}),
    (["--color"], {"choices": ["gray", "rgb"], "help": "gray luminance (default) or rgb"}),
    (
        ["--window"],
        {"choices": ["uniform", "gaussian"], "help": "SSIM window (default uniform 7×7)"},
    ),
    (
        ["--labels"],
        {"choices": ["folder", "none"], "help": "first-level subfolder is the class label"},
    ),
    (["--max-pixels"], {"type": int, "dest": "max_pixels", "help": "refuse larger images"}),
    (["--variants"], {"help": "plain, or a list of robust variants"}),
    (["--cache"], {"dest": "cache_dir", "help": "cache folder (default: the user cache folder)"}),
    (["--search"], {"choices": ["exact", "approximate"], "help": "exact (default) or approximate"}),
    (
        ["--min-recall"],
        {"type": float, "dest": "min_recall", "help": "approximate mode: fail below"},
    ),
    (["--backend"], {"help": "joblib backend: threading (default), loky, dask, ray"}),
    (["--scheduler"], {"help": "dask scheduler address, e.g. tcp://HOST:8786"}),
    (["--baseline"], {"help": "accepted pairs (a baseline file or a pairs.csv)"}),
    (
        ["--write-baseline"],
        {"dest": "write_baseline", "help": "write the pairs found as a baseline"},
    ),
    (
        ["--write-manifest"],
        {"dest": "write_manifest", "help": "manifest input: write the fixed manifest"},
    ),
    (["--policy"], {"choices": ["train", "majority", "balanced"], "help": "reassignment policy"}),
    (["--floor"], {"type": float, "help": "also collect scores down to this value for histograms"}),
    (
        ["--html-top-pairs"],
        {"type": int, "dest": "html_top_pairs", "help": "pairs shown in report.html"},
    ),
]


def _audit_parser() -> _Parser:
    parser = _Parser(
        prog="leakcheck",
        description="Audit image dataset splits for cross-split near-twins by SSIM.",
        epilog="Subcommands: leakcheck sort DIR | place NEW_DIR … | apply REPORT_DIR | "
        "undo JOURNAL | cache info|clear. Exit codes: 0 clean, 1 leaks found, 2 usage error.",
        argument_default=argparse.SUPPRESS,
    )
    add_split_arguments(parser)
    add_setting_arguments(parser)
    parser.add_argument("--within", action="store_true", help="also report twins inside a split")
    parser.add_argument("--version", action="version", version=f"leakcheck {__version__}")
    return parser


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    for name in ("train", "valid", "test"):
        parser.add_argument(f"--{name}", action=_SplitAction, const=name, metavar="DIR",
                            help=f"the {name} split folder")  # fmt: skip
    parser.add_argument("--split", action=_SplitAction, metavar="NAME=DIR",
                        help="another named split (repeatable)")  # fmt: skip
    parser.add_argument("--manifest", help="CSV with columns path, split [, label, group]")
    parser.add_argument("--config", help="TOML config file (flags win)")


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    for flags, options in _SETTING_FLAGS:
        parser.add_argument(*flags, **options)
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--no-cache", dest="cache", action="store_false", help="no cache")
    parser.add_argument("--no-thumbnails", dest="thumbnails", action="store_false",
                        help="leave every image out of report.html")  # fmt: skip


_NOT_SETTINGS = {"splits", "manifest", "config", "command"}


def resolve_inputs(namespace: argparse.Namespace) -> tuple[dict[str, Path], Path | None, Any]:
    """Splits, manifest and Settings from flags over the config file over the defaults."""
    from leakcheck.settings import read_config, settings_from_mapping

    given = vars(namespace)
    config = read_config(Path(given["config"])) if "config" in given else None
    values: dict[str, Any] = dict(config.settings) if config else {}
    values.update({k: v for k, v in given.items() if k not in _NOT_SETTINGS})
    settings = settings_from_mapping(values)
    splits: dict[str, Path] = {}
    for name, folder in given.get("splits", []):
        if name in splits:
            raise UsageError(f"split '{name}' is given twice")
        splits[name] = Path(folder)
    if config:
        for name, folder in config.splits.items():
            splits.setdefault(name, folder)
    manifest = (
        Path(given["manifest"]) if "manifest" in given else (config.manifest if config else None)
    )
    if not splits and manifest is None:
        raise UsageError(
            "no splits given: use --train DIR --valid DIR [--test DIR], --split NAME=DIR or --manifest FILE"
        )
    return splits, manifest, settings


def run_audit(argv: Sequence[str]) -> int:
    from leakcheck.audit import audit
    from leakcheck.engine.backends import joblib_backend
    from leakcheck.formats import write_report
    from leakcheck.progress import Progress

    namespace = _audit_parser().parse_args(argv)
    splits, manifest, settings = resolve_inputs(namespace)
    prepare_out_folder(Path(settings.out))
    progress = Progress(enabled=not settings.quiet)
    with joblib_backend(settings.backend, settings.scheduler):
        result = audit(splits, manifest=manifest, settings=settings, progress=progress)
    write_report(result, settings.out, settings.formats)
    if not settings.quiet:
        print(verdict_line(result))
        for line in plan_lines(result):
            print(line)
    return result.exit_code


def prepare_out_folder(out: Path) -> None:
    """Create the report folder before the audit, so a bad ``--out`` fails at once, not after it."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create the report folder {out} ({error.strerror or error})"
        ) from None


def plan_lines(result: Any) -> list[str]:
    """The reassignment plan in a few lines (sizes before → after), and group warnings."""
    summary = result.summary
    lines = []
    oversized = summary.get("oversized_groups") or []
    if oversized:
        lines.append(
            f"leakcheck: warning: {len(oversized)} twin group(s) far larger than the rest "
            f"({', '.join(oversized[:3])}): single-link chaining may have joined unrelated "
            "images; check weakest_link and lowest_sampled_ssim in groups.csv before moving files"
        )
    balance = summary.get("balance") or {}
    if summary.get("reassignments") and balance:
        sizes = ", ".join(
            f"{name} {before}→{balance['split_sizes_after'][name]}"
            for name, before in balance["split_sizes_before"].items()
        )
        fits = "" if balance.get("within_tolerance") else " (outside the balance tolerance)"
        folders = all(info.get("root") for info in summary["splits"].values())
        then = (
            f"then 'leakcheck apply {result.settings.out}'"
            if folders
            else "then --write-manifest FILE for a fixed manifest"
        )
        lines.append(
            f"leakcheck: plan ({balance['policy']}): move {summary['reassignments']} image(s), "
            f"sizes {sizes}{fits}; see reassignments.csv, {then}"
        )
    if summary.get("manifest_written"):
        lines.append(f"leakcheck: fixed manifest written to {summary['manifest_written']}")
    return lines


def verdict_line(result: Any) -> str:
    summary = result.summary
    sizes = ", ".join(f"{name} {info['images']}" for name, info in summary["splits"].items())
    errors = sum(info["errors"] for info in summary["splits"].values())
    verdict = (
        f"LEAK: {summary['near_twin_pairs'] - summary['accepted_pairs']} cross-split near-twin "
        f"pair(s) at SSIM >= {result.settings.threshold}"
        if result.exit_code
        else f"clean: no cross-split near-twin at SSIM >= {result.settings.threshold}"
    )
    if summary["group_leaks"]:
        verdict += f"; {summary['group_leaks']} group id(s) in several splits"
    extra = f"; {errors} unreadable file(s) in errors.csv" if errors else ""
    return f"leakcheck: {verdict} ({sizes} images{extra}). Report: {result.settings.out}/"


def run_apply(argv: Sequence[str]) -> int:
    from leakcheck.fixes.apply import apply_plan

    parser = _Parser(
        prog="leakcheck apply", description="Carry out a report's plan (dry run by default)."
    )
    parser.add_argument("report_dir", help="the report folder of an audit or of place")
    parser.add_argument("--yes", action="store_true", help="really move/copy the files")
    namespace = parser.parse_args(argv)
    apply_plan(Path(namespace.report_dir), yes=namespace.yes)
    return EXIT_CLEAN


def run_undo(argv: Sequence[str]) -> int:
    from leakcheck.fixes.apply import undo_journal

    parser = _Parser(prog="leakcheck undo", description="Undo an apply from its journal.")
    parser.add_argument("journal", help="REPORT_DIR/journal-<timestamp>.csv")
    namespace = parser.parse_args(argv)
    undo_journal(Path(namespace.journal))
    return EXIT_CLEAN


def run_cache(argv: Sequence[str]) -> int:
    from leakcheck.cache import Cache

    parser = _Parser(prog="leakcheck cache", description="Show or empty the cache.")
    parser.add_argument("action", choices=["info", "clear"])
    parser.add_argument("--cache", dest="cache_dir", help="cache folder")
    namespace = parser.parse_args(argv)
    with Cache(Path(namespace.cache_dir) if namespace.cache_dir else None) as cache:
        if namespace.action == "info":
            info = cache.info()
            print(
                f"{info['directory']}: {info['arrays']} images, {info['results']} results, "
                f"{info['bytes'] / 1e6:.1f} MB of {info['max_bytes'] / 1e6:.0f} MB"
            )
        else:
            print(f"removed {cache.clear()} entries from {cache.directory}")
    return EXIT_CLEAN


def _workflow(name: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        import importlib

        module = importlib.import_module(f"leakcheck.workflows.{name}")
        return int(module.main(argv))

    return run


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "apply": run_apply,
    "undo": run_undo,
    "cache": run_cache,
    "sort": _workflow("sort"),
    "place": _workflow("place"),
}


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Errors that mean "the input or the flags are wrong": one line, exit code 2."""
    from leakcheck.findings import BaselineError
    from leakcheck.fixes.apply import PlanError
    from leakcheck.settings import SettingsError
    from leakcheck.sources import SourceError

    return (SettingsError, SourceError, BaselineError, PlanError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``leakcheck`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = SUBCOMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else run_audit(argv)
    except (UsageError, *_usage_error_types()) as error:
        print(f"leakcheck: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("leakcheck: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
