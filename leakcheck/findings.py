"""From record pairs to findings: the pairs table, twin groups, accepted pairs (baseline).

Tables are pandas DataFrames with the columns of ``product.md``; extra columns
(``sha256_a``, ``sha256_b``) come after the contract's, for baselines and tools.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leakcheck.engine.compare import RecordPairs
from leakcheck.sources import ImageRecord

PAIR_COLUMNS = [
    "split_a", "path_a", "split_b", "path_b", "ssim", "method", "label_a", "label_b", "accepted",
]  # fmt: skip
PAIR_EXTRA_COLUMNS = ["alignment", "sha256_a", "sha256_b"]
GROUP_COLUMNS = ["group", "split", "path", "label"]
GROUP_LEAK_COLUMNS = ["group", "split_a", "count_a", "split_b", "count_b"]
ERROR_COLUMNS = ["split", "path", "error"]
BASELINE_SCHEMA = "leakcheck-baseline/1"


class BaselineError(ValueError):
    """A baseline file that cannot be read (usage error: exit code 2)."""


def pairs_frame(
    records: Sequence[ImageRecord],
    sha256: Sequence[str],
    pairs: RecordPairs,
    split_order: Sequence[str],
) -> pd.DataFrame:
    """The pairs table, oriented (``split_a`` first in split order; within a split, the smaller
    path first) and sorted by SSIM descending, ties by ``split_a, path_a, split_b, path_b``."""
    rank = {name: k for k, name in enumerate(split_order)}
    rows = []
    for i, j, value, method, alignment in zip(
        pairs.index_a, pairs.index_b, pairs.ssim, pairs.method, pairs.alignment, strict=True
    ):
        a, b = records[i], records[j]
        if (rank[b.split], b.path) < (rank[a.split], a.path):
            i, j, a, b = j, i, b, a
        rows.append(
            (a.split, a.path, b.split, b.path, float(value), method, a.label, b.label, False,
             alignment, sha256[i], sha256[j])
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS + PAIR_EXTRA_COLUMNS)
    if frame.empty:
        return frame.astype({"ssim": float, "accepted": bool})
    frame["_rank_a"] = frame["split_a"].map(rank)
    frame["_rank_b"] = frame["split_b"].map(rank)
    frame = frame.sort_values(
        ["ssim", "_rank_a", "path_a", "_rank_b", "path_b"],
        ascending=[False, True, True, True, True],
        kind="mergesort",
    )
    return frame.drop(columns=["_rank_a", "_rank_b"]).reset_index(drop=True)


def errors_frame(errors: Sequence[tuple[ImageRecord, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(record.split, record.path, reason) for record, reason in errors], columns=ERROR_COLUMNS
    )


# -- twin groups -------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return int(root)

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


@dataclass(frozen=True)
class TwinGroups:
    """Connected groups of near-twins.

    Attributes
    ----------
    members : DataFrame
        ``group, split, path, label`` (plus ``sha256``), one row per image in a group.
    info : DataFrame
        One row per group, largest first: ``group, size, splits, leaking, weakest_link,
        oversized, accepted, lowest_sampled_ssim, sampled_pairs``. ``leaking``: the group spans
        several splits through at least one pair that is not accepted by the baseline;
        ``accepted``: it spans several splits, but only through accepted pairs. ``weakest_link``
        is the lowest SSIM among the pairs that joined it; ``lowest_sampled_ssim`` the lowest
        SSIM among sampled member pairs (see :func:`add_sampled_scores`; NaN until then).
        ``oversized``: far larger than the typical group (more than 10 members and more than ten
        times the median size), a sign that single-link chaining glued unrelated images together.
    """

    members: pd.DataFrame
    info: pd.DataFrame


INFO_COLUMNS = [
    "group", "size", "splits", "leaking", "weakest_link", "oversized", "accepted",
    "lowest_sampled_ssim", "sampled_pairs",
]  # fmt: skip


def group_id(member_sha256: Sequence[str]) -> str:
    """Stable id of a group: a hash of its members' content hashes (order-free)."""
    digest = hashlib.sha256("\n".join(sorted(member_sha256)).encode()).hexdigest()
    return "g" + digest[:12]


def twin_groups(flagged: pd.DataFrame, labels: dict[tuple[str, str], str]) -> TwinGroups:
    """Union–find over flagged pairs (any split combination).

    ``flagged`` needs ``split_a, path_a, split_b, path_b, ssim, sha256_a, sha256_b`` and
    optionally ``accepted``; ``labels`` maps ``(split, path)`` to a label. Single-link chaining
    can glue unrelated images together, so each group reports its weakest link (the lowest SSIM
    among the pairs that joined it) and whether it is far larger than the rest (``oversized``).
    """
    nodes: dict[tuple[str, str], int] = {}
    sha: dict[int, str] = {}
    for side in ("a", "b"):
        for split, path, digest in zip(
            flagged[f"split_{side}"], flagged[f"path_{side}"], flagged[f"sha256_{side}"],
            strict=True,
        ):  # fmt: skip
            node = nodes.setdefault((split, path), len(nodes))
            sha[node] = digest
    finder = _UnionFind(len(nodes))
    for sa, pa, sb, pb in zip(
        flagged["split_a"], flagged["path_a"], flagged["split_b"], flagged["path_b"], strict=True
    ):
        finder.union(nodes[(sa, pa)], nodes[(sb, pb)])
    root_of = {key: finder.find(node) for key, node in nodes.items()}
    members_by_root: dict[int, list[tuple[str, str]]] = {}
    for key, root in root_of.items():
        members_by_root.setdefault(root, []).append(key)
    id_of_root = {
        root: group_id([sha[nodes[key]] for key in keys]) for root, keys in members_by_root.items()
    }
    accepted = (
        flagged["accepted"].astype(bool)
        if "accepted" in flagged
        else pd.Series(False, index=flagged.index)
    )
    weakest: dict[int, float] = {}
    open_leak: set[int] = set()  # groups with a cross-split pair the baseline does not accept
    for sa, pa, sb, value, is_accepted in zip(
        flagged["split_a"], flagged["path_a"], flagged["split_b"], flagged["ssim"], accepted,
        strict=True,
    ):  # fmt: skip
        root = root_of[(sa, pa)]
        weakest[root] = min(weakest.get(root, 1.0), float(value))
        if sa != sb and not is_accepted:
            open_leak.add(root)
    member_rows = [
        (id_of_root[root], split, path, labels.get((split, path), ""), sha[nodes[(split, path)]])
        for root, keys in members_by_root.items()
        for split, path in sorted(keys)
    ]
    members = pd.DataFrame(member_rows, columns=GROUP_COLUMNS + ["sha256"])
    sizes = [len(keys) for keys in members_by_root.values()]
    typical = float(np.median(sizes)) if sizes else 0.0
    info_rows = []
    for root, keys in members_by_root.items():
        splits = sorted({split for split, _ in keys})
        spans = len(splits) > 1
        info_rows.append(
            (id_of_root[root], len(keys), ";".join(splits), spans and root in open_leak,
             weakest.get(root, 1.0), len(keys) > max(10.0, 10 * typical),
             spans and root not in open_leak, np.nan, 0)
        )  # fmt: skip
    info = pd.DataFrame(info_rows, columns=INFO_COLUMNS).astype(
        {"leaking": bool, "oversized": bool, "accepted": bool, "lowest_sampled_ssim": float}
    )
    info = info.sort_values(["size", "group"], ascending=[False, True], kind="mergesort")
    members = members.sort_values(["group", "split", "path"], kind="mergesort")
    return TwinGroups(members.reset_index(drop=True), info.reset_index(drop=True))


#: Member pairs whose exact SSIM is computed per group for ``lowest_sampled_ssim``.
MAX_SAMPLED_PAIRS = 50


def sampled_member_pairs(size: int, group: str, max_pairs: int = MAX_SAMPLED_PAIRS) -> np.ndarray:
    """Member index pairs ``(i, j)``, ``i < j``, of a group of ``size``: all of them when there
    are at most ``max_pairs``, else a sample seeded by the group id (the same every run)."""
    first, second = np.triu_indices(size, k=1)
    pairs = np.stack([first, second], axis=1)
    if len(pairs) <= max_pairs:
        return pairs
    seed = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16)
    chosen = np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False)
    return pairs[np.sort(chosen)]


def add_sampled_scores(
    groups: TwinGroups,
    pixels_of: Callable[[Sequence[tuple[str, str]]], dict[tuple[str, str], np.ndarray]],
    score_pairs: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    *,
    min_size: int = 3,
    max_pairs: int = MAX_SAMPLED_PAIRS,
) -> TwinGroups:
    """Fill ``lowest_sampled_ssim`` and ``sampled_pairs`` of every group.

    The weakest link only looks at the pairs that joined a group; a chain A~B~C… can still hold
    two members that share nothing. For groups of at least ``min_size`` members, the exact SSIM
    of up to ``max_pairs`` member pairs (not only linking ones) is computed; the lowest is
    reported. A group of two has one pair: its link.

    Parameters
    ----------
    groups : TwinGroups
    pixels_of : callable
        ``(split, path)`` keys → canonical arrays ``(C, H, W)`` (keys it cannot load are left
        out).
    score_pairs : callable
        ``(pixels, index_a, index_b)`` → the SSIM of each listed pair of the stack ``pixels``.
    """
    info = groups.info.copy()
    small = info["size"] < min_size
    info.loc[small, "lowest_sampled_ssim"] = info.loc[small, "weakest_link"]
    info.loc[small, "sampled_pairs"] = info.loc[small, "size"] * (info.loc[small, "size"] - 1) // 2
    large = info.loc[~small, "group"].tolist()
    if not large:
        return TwinGroups(groups.members, info)
    sampled: dict[str, tuple[list[tuple[str, str]], np.ndarray]] = {}
    for group, frame in groups.members[groups.members["group"].isin(large)].groupby("group"):
        keys = list(zip(frame["split"], frame["path"], strict=True))
        pairs = sampled_member_pairs(len(keys), str(group), max_pairs)
        used = np.unique(pairs)  # only the sampled members are loaded
        sampled[str(group)] = ([keys[k] for k in used], np.searchsorted(used, pairs))
    found = pixels_of([key for keys, _ in sampled.values() for key in keys])
    row_of = {group: row for row, group in zip(info.index, info["group"], strict=True)}
    for group, (keys, pairs) in sampled.items():
        if not all(key in found for key in keys):
            continue  # a file changed since the audit: leave the score empty
        stack = np.stack([found[key] for key in keys])
        values = score_pairs(stack, pairs[:, 0], pairs[:, 1])
        info.loc[row_of[group], "lowest_sampled_ssim"] = float(np.min(values))
        info.loc[row_of[group], "sampled_pairs"] = len(pairs)
    return TwinGroups(groups.members, info)


# -- accepted pairs ----------------------------------------------------------------------------


def write_baseline(pairs: pd.DataFrame, path: Path) -> None:
    """Write the pairs as accepted pairs: unordered content-hash pairs, paths for people."""
    entries = [
        {
            "sha256": sorted([row.sha256_a, row.sha256_b]),
            "split_a": row.split_a,
            "path_a": row.path_a,
            "split_b": row.split_b,
            "path_b": row.path_b,
            "ssim": round(float(row.ssim), 6),
        }  # fmt: skip
        for row in pairs.itertuples(index=False)
    ]
    document = {"schema": BASELINE_SCHEMA, "pairs": entries}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Baseline:
    """Accepted pairs read from a file: content-hash pairs, or ``(split, path)`` pairs when the
    file is a ``pairs.csv``."""

    keys: frozenset[frozenset]
    by_content: bool


def read_baseline(baseline: Path) -> Baseline:
    """Read a baseline file (see :func:`apply_baseline`).

    Raises
    ------
    BaselineError
        The file is missing, unreadable, or neither a leakcheck baseline nor a ``pairs.csv``.
    """
    baseline = Path(baseline)
    try:
        text = baseline.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BaselineError(f"baseline {baseline} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BaselineError(f"baseline {baseline} cannot be read ({error})") from None
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
            schema = document.get("schema", BASELINE_SCHEMA)
            if not str(schema).startswith("leakcheck-baseline/"):
                raise ValueError(f"schema {schema!r}")
            keys = frozenset(frozenset(entry["sha256"]) for entry in document["pairs"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise BaselineError(
                f"baseline {baseline} is not a leakcheck baseline ({error})"
            ) from None
        return Baseline(keys, by_content=True)
    try:
        table = pd.read_csv(baseline, dtype=str, keep_default_na=False)
        keys = frozenset(
            frozenset(((r.split_a, r.path_a), (r.split_b, r.path_b)))
            for r in table.itertuples(index=False)
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, AttributeError, ValueError) as error:
        raise BaselineError(
            f"baseline {baseline} is neither a leakcheck baseline nor a pairs.csv ({error})"
        ) from None
    return Baseline(keys, by_content=False)


def apply_baseline(pairs: pd.DataFrame, baseline: Path | Baseline) -> tuple[pd.DataFrame, int, int]:
    """Mark pairs covered by ``baseline`` as accepted.

    The baseline is either a file written by :func:`write_baseline` (matched by unordered content
    hashes, so it survives renames and moves) or a ``pairs.csv`` (matched by unordered
    ``(split, path)`` pairs). Returns ``(pairs, accepted, stale)`` where ``stale`` counts baseline
    entries that match no pair any more.
    """
    if not isinstance(baseline, Baseline):
        baseline = read_baseline(baseline)
    keys = baseline.keys
    pairs = pairs.copy()
    if baseline.by_content:
        pair_keys = [
            frozenset((a, b)) for a, b in zip(pairs["sha256_a"], pairs["sha256_b"], strict=True)
        ]
    else:
        pair_keys = [
            frozenset(((sa, pa), (sb, pb)))
            for sa, pa, sb, pb in zip(
                pairs["split_a"], pairs["path_a"], pairs["split_b"], pairs["path_b"], strict=True
            )
        ]
    matched = [key in keys for key in pair_keys]
    pairs["accepted"] = matched
    used = {key for key, hit in zip(pair_keys, matched, strict=True) if hit}
    return pairs, int(sum(matched)), len(keys - used)
