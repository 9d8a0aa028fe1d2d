"""Workflows built on the audit's pipeline: ``leakcheck sort`` and ``leakcheck place``.

Both read images the way an audit does (sources → sha256 → canonical arrays through the cache)
and compare them with the same engine; this module holds the two steps they share.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from leakcheck.cache import Cache
from leakcheck.cli import UsageError
from leakcheck.decoding import DecodedImages, decode_sources, hash_sources
from leakcheck.progress import Progress
from leakcheck.settings import Settings, read_config, settings_from_mapping
from leakcheck.sources import SplitSource

__all__ = ["decode_through_cache", "check_unused_flags", "hide_unused_flags", "workflow_settings"]


def hide_unused_flags(parser: argparse.ArgumentParser, unused: Collection[str]) -> dict[str, str]:
    """Hide the audit's setting flags that a workflow does not use, and refuse them when typed.

    Call before parsing; returns ``{dest: flag}`` for :func:`check_unused_flags`. A config file may still
    hold those settings (it is shared with the audit); only flags typed for the workflow are
    refused, so that none is silently ignored.
    """
    flags: dict[str, str] = {}
    for action in parser._actions:  # argparse has no public way to hide an added option
        if action.dest in unused and action.option_strings:
            action.help = argparse.SUPPRESS
            flags[action.dest] = action.option_strings[0]
    return flags


def check_unused_flags(given: Mapping[str, Any], flags: Mapping[str, str], command: str) -> None:
    """Raise :class:`UsageError` naming the flags in ``given`` that ``command`` does not use."""
    typed = sorted(flag for dest, flag in flags.items() if dest in given)
    if typed:
        raise UsageError(f"leakcheck {command} does not use {', '.join(typed)}")


def workflow_settings(given: Mapping[str, Any], *, default_out: Path) -> Settings:
    """Settings of a workflow from its flags over ``--config`` over the defaults.

    ``out`` comes from the ``--out`` flag only (else ``default_out``): a config file's ``out`` is
    an audit's report folder, which a workflow must not write its ``summary.json`` into.
    """
    values = dict(given)
    config_path = values.pop("config", None)
    config = read_config(Path(config_path)) if config_path is not None else None
    merged: dict[str, Any] = dict(config.settings) if config else {}
    merged.pop("out", None)
    merged.update(values)
    merged.setdefault("out", default_out)
    return settings_from_mapping(merged)


def decode_through_cache(
    sources: Sequence[SplitSource], settings: Settings, progress: Progress
) -> DecodedImages:
    """Hash every file, then decode the canonical arrays through the cache (as the audit does).

    Raises
    ------
    SourceError
        ``--size native`` with images of different shapes.
    """
    hashed = hash_sources(sources, settings.jobs)
    cache = Cache(settings.cache_dir) if settings.cache else None
    try:
        with progress.bar("decoding", total=len(hashed.sha256_of)) as bar:
            return decode_sources(sources, hashed, settings, cache, on_progress=bar)
    finally:
        if cache is not None:
            cache.close()
