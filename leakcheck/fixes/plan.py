"""Reassignment plans: move every leaking group of images into exactly one split.

What moves together (a *unit*): the members of a twin group, every image that shares a manifest
``group`` id (patient, session, video) with one of them, and images the caller links to them
(near-twins inside one split that a move would otherwise separate, see
:mod:`leakcheck.fixes.companions`). A unit needs fixing when it spans several splits and holds a
leaking twin group (one not accepted by the baseline), a manifest group found in several splits, or
a link. Each such unit ends in exactly one split; nothing else moves.

Policies:

* ``train``: every unit goes to ``train`` (the first split when there is none);
* ``majority``: to the split that holds most of the unit (ties: the earlier split);
* ``balanced`` (default): per unit, the split that keeps the final split sizes, and where labels
  exist the class shares inside each split, closest to the original ones. Units are placed largest
  first, each against every split (not only those it touches), then improved one unit at a time
  (and, while the plan is still out of tolerance, two units at a time) until no change helps.
  Candidates are compared by, in order: how far split sizes go beyond the tolerance of
  ``product.md`` (±1 point of all images, or the largest moved unit's size when larger); how far
  the worst class share within a split goes beyond ±2 points, then all of them; the sum of squared
  deviations of split shares and class shares; the number of images moved. A unit that cannot be
  placed within the tolerances still moves whole, and its ``reason`` says which one it breaks.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

REASSIGNMENT_COLUMNS = ["path", "from_split", "to_split", "group", "reason"]
POLICIES = ("train", "majority", "balanced")
#: Balance tolerances of ``product.md``: split share (fraction of all images), class share.
SIZE_TOLERANCE = 0.01
CLASS_TOLERANCE = 0.02
#: Rounds of one-unit improvements after the greedy placement.
MAX_PASSES = 20
#: Pairs of units are tried together (a swap) only while the plan is out of tolerance and there
#: are at most this many units: the search is quadratic.
MAX_UNITS_FOR_SWAPS = 120
#: Floating-point slack when comparing two candidate plans.
EPSILON = 1e-12

Key = tuple[str, str]  # (split, path)
Link = tuple[Key, Key, float]  # two images that must stay together, and their SSIM


@dataclass
class _Unit:
    """Images that move together, and what holds them together."""

    rows: list[int]
    counts: np.ndarray  # (splits, classes): where its images are now
    twin_groups: list[str] = field(default_factory=list)
    manifest_groups: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def total(self) -> np.ndarray:
        return self.counts.sum(axis=0)

    @property
    def name(self) -> str:
        """The ``group`` column: its twin group id, or every part joined by ``+``."""
        parts = sorted(self.twin_groups) + [f"manifest:{g}" for g in sorted(self.manifest_groups)]
        if not parts:
            return "linked"
        if len(parts) > 4:
            parts = parts[:4] + [f"{len(parts) - 4}more"]
        return "+".join(parts)


@dataclass(frozen=True)
class ReassignmentPlan:
    """A plan and what it does to the splits.

    Attributes
    ----------
    moves : DataFrame
        ``path, from_split, to_split, group, reason``: one row per image that moves.
    final_split : dict
        Every image ``(split, path)`` → the split it ends in.
    balance : dict
        Split sizes, shares and class counts before and after, the tolerances and the largest
        deviations (see :func:`balance_report`).
    """

    moves: pd.DataFrame
    final_split: dict[Key, str]
    balance: dict[str, Any]


def make_plan(
    members: pd.DataFrame,
    images: pd.DataFrame,
    split_order: Sequence[str],
    *,
    policy: str = "balanced",
    fixing_groups: Collection[str] | None = None,
    links: Sequence[Link] = (),
) -> ReassignmentPlan:
    """Plan the moves that put every leaking unit into exactly one split.

    Parameters
    ----------
    members : DataFrame
        Twin-group members: ``group, split, path``.
    images : DataFrame
        Every audited image: ``split, path, label`` and optionally ``group`` (manifest group id,
        empty when none).
    split_order : sequence of str
        The splits, in the audit's order.
    policy : {"balanced", "train", "majority"}
    fixing_groups : collection of str, optional
        Twin groups that leak (default: every group found in more than one split). Pass the
        groups whose cross-split pairs are not all accepted by the baseline.
    links : sequence of ((split, path), (split, path), ssim)
        Further pairs of images that must end in the same split.

    Returns
    -------
    ReassignmentPlan

    Examples
    --------
    >>> plan = make_plan(result.groups, result.images, ["train", "valid"], policy="balanced")
    >>> plan.moves[["path", "from_split", "to_split"]]
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    split_order = list(split_order)
    images = images.reset_index(drop=True)
    if len(images) and not set(images["split"]) <= set(split_order):
        unknown = sorted(set(images["split"]) - set(split_order))
        raise ValueError(f"images name splits {unknown} that are not in split_order")
    labels = sorted(set(images["label"].astype(str))) if len(images) else [""]
    split_of = {name: k for k, name in enumerate(split_order)}
    label_of = {name: k for k, name in enumerate(labels)}
    split_index = images["split"].map(split_of).to_numpy(dtype=np.int64)
    label_index = images["label"].astype(str).map(label_of).to_numpy(dtype=np.int64)
    counts_before = np.zeros((len(split_order), len(labels)), dtype=np.int64)
    np.add.at(counts_before, (split_index, label_index), 1)

    splits, paths = images["split"].astype(str).tolist(), images["path"].astype(str).tolist()
    manifest = (
        images["group"].fillna("").astype(str).tolist() if "group" in images else [""] * len(paths)
    )
    if fixing_groups is None:
        spread = members.groupby("group")["split"].nunique()
        fixing_groups = set(spread[spread > 1].index)
    fixing_groups = set(fixing_groups)
    splits_of_manifest_group: dict[str, set[str]] = {}
    for split, group in zip(splits, manifest, strict=True):
        if group:
            splits_of_manifest_group.setdefault(group, set()).add(split)
    leaking_manifest = {g for g, names in splits_of_manifest_group.items() if len(names) > 1}
    found = _units(
        members, splits, paths, manifest, split_index, label_index, counts_before.shape, links
    )
    units = [unit for unit in found if _needs_fixing(unit, fixing_groups, leaking_manifest)]
    units.sort(key=lambda unit: (-unit.size, unit.name))
    objective = _Objective(counts_before, max((u.size for u in units), default=0))
    if policy == "train":
        train = split_of.get("train", 0)
        targets = [train for _ in units]
    elif policy == "majority":
        targets = [int(np.argmax(unit.counts.sum(axis=1))) for unit in units]
    else:
        targets = _balanced_targets(units, objective)

    counts_after = objective.counts_with(units, targets)
    balance = balance_report(counts_before, counts_after, split_order, labels, objective, policy)
    rows = []
    final_split = dict(zip(zip(splits, paths, strict=True), splits, strict=True))
    for unit, target in zip(units, targets, strict=True):
        reason = _reason(unit, target, policy, objective, counts_after, split_order, labels)
        for row in sorted(unit.rows, key=lambda r: (split_index[r], paths[r])):
            final_split[(splits[row], paths[row])] = split_order[target]
            if split_index[row] != target:
                rows.append((paths[row], splits[row], split_order[target], unit.name, reason))
    moves = pd.DataFrame(rows, columns=REASSIGNMENT_COLUMNS)
    balance["groups_moved"] = len(units)
    return ReassignmentPlan(moves, final_split, balance)


# -- units ---------------------------------------------------------------------------------------


def _units(
    members: pd.DataFrame,
    splits: list[str],
    paths: list[str],
    manifest: list[str],
    split_index: np.ndarray,
    label_index: np.ndarray,
    shape: tuple[int, int],
    links: Sequence[Link],
) -> list[_Unit]:
    """Connected components over twin groups, manifest group ids and links."""
    rows_of: dict[Key, list[int]] = {}
    for row, key in enumerate(zip(splits, paths, strict=True)):
        rows_of.setdefault(key, []).append(row)
    parent = list(range(len(paths)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(rows: Sequence[int]) -> None:
        for row in rows[1:]:
            a, b = find(rows[0]), find(row)
            if a != b:
                parent[max(a, b)] = min(a, b)

    together: dict[str, list[int]] = {}  # twin group → rows; "\0" + manifest id → rows
    twin_of: dict[int, str] = {}
    for group, split, path in zip(members["group"], members["split"], members["path"], strict=True):
        for row in rows_of.get((split, path), []):
            together.setdefault(str(group), []).append(row)
            twin_of[row] = str(group)
    for row, group in enumerate(manifest):
        if group:
            together.setdefault("\0" + group, []).append(row)
    for rows in [*together.values(), *rows_of.values()]:  # rows_of: one file listed twice
        join(rows)
    link_of: dict[int, list[Link]] = {}
    for a, b, value in links:
        ends = rows_of.get(a, [])[:1] + rows_of.get(b, [])[:1]
        if len(ends) == 2:
            join(ends)
            link_of.setdefault(ends[0], []).append((a, b, float(value)))
    by_root: dict[int, list[int]] = {}
    for row in {r for rows in together.values() for r in rows} | {
        r for ends in link_of.values() for a, b, _ in ends for r in rows_of[a] + rows_of[b]
    }:
        by_root.setdefault(find(row), []).append(row)
    units = []
    for rows in by_root.values():
        rows.sort()
        counts = np.zeros(shape, dtype=np.int64)
        np.add.at(counts, (split_index[rows], label_index[rows]), 1)
        units.append(
            _Unit(
                rows=rows,
                counts=counts,
                twin_groups=sorted({twin_of[r] for r in rows if r in twin_of}),
                manifest_groups=sorted({manifest[r] for r in rows} - {""}),
                links=[link for r in rows for link in link_of.get(r, [])],
            )
        )
    return units


def _needs_fixing(unit: _Unit, fixing_groups: set[str], leaking_manifest: set[str]) -> bool:
    """It spans several splits through a leaking twin group, a manifest group or a link."""
    if int((unit.counts.sum(axis=1) > 0).sum()) < 2:
        return False
    return bool(
        unit.links
        or any(group in fixing_groups for group in unit.twin_groups)
        or any(group in leaking_manifest for group in unit.manifest_groups)
    )


# -- balance -------------------------------------------------------------------------------------


class _Objective:
    """How far a plan's split sizes and class shares are from the original ones."""

    def __init__(self, counts_before: np.ndarray, largest_unit: int) -> None:
        self.before = counts_before
        self.total = max(int(counts_before.sum()), 1)
        self.sizes_before = counts_before.sum(axis=1)
        self.shares_before = _class_shares(counts_before)
        self.labelled = counts_before.shape[1] > 1
        #: Allowed size deviation, in images: ±1 point of all images, or the largest moved unit.
        self.size_tolerance = max(SIZE_TOLERANCE * self.total, float(largest_unit))

    def deviations(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per split: size deviation in images; per split and class: class share deviation."""
        size_deviation = counts.sum(axis=1) - self.sizes_before
        if not self.labelled:
            return size_deviation, np.zeros(counts.shape)
        return size_deviation, _class_shares(counts) - self.shares_before

    def cost(self, counts: np.ndarray) -> tuple[float, float, float, float]:
        """Lower is better, compared in order: split sizes beyond their tolerance (images), the
        worst class share beyond its tolerance, all class shares beyond it, and the sum of
        squared deviations of split and class shares.

        Sizes come first: their tolerance always has room for one group, while a class share
        in a small split moves by more than 2 points with a single image.
        """
        size_deviation, class_deviation = self.deviations(counts)
        size_excess = np.maximum(np.abs(size_deviation) - self.size_tolerance - EPSILON, 0)
        class_excess = np.maximum(np.abs(class_deviation) - CLASS_TOLERANCE - EPSILON, 0)
        spread = ((size_deviation / self.total) ** 2).sum() + (class_deviation**2).sum()
        return (
            float(size_excess.sum()),
            float(class_excess.max(initial=0.0)),
            float(class_excess.sum()),
            float(spread),
        )

    def within_tolerance(self, counts: np.ndarray) -> bool:
        cost = self.cost(counts)
        return cost[0] <= 0 and cost[1] <= 0

    def counts_with(self, units: Sequence[_Unit], targets: Sequence[int]) -> np.ndarray:
        counts = self.before.copy()
        for unit, target in zip(units, targets, strict=True):
            counts -= unit.counts
            counts[target] += unit.total
        return counts


def _class_shares(counts: np.ndarray) -> np.ndarray:
    sizes = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, sizes, out=np.zeros(counts.shape), where=sizes > 0)


def _better(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Is candidate ``a`` (cost..., moves) strictly better than ``b``?"""
    for x, y in zip(a, b, strict=True):
        if x < y - EPSILON:
            return True
        if x > y + EPSILON:
            return False
    return False


def _balanced_targets(units: Sequence[_Unit], objective: _Objective) -> list[int]:
    n_splits = objective.before.shape[0]
    moves = [[unit.size - int(unit.counts[t].sum()) for t in range(n_splits)] for unit in units]
    targets: list[int] = []
    counts = objective.before.copy()
    # greedy, largest first: each unit to the split that leaves the best state
    for u, unit in enumerate(units):
        counts -= unit.counts
        best, best_key = 0, None
        for t in range(n_splits):
            counts[t] += unit.total
            key = (*objective.cost(counts), moves[u][t])
            counts[t] -= unit.total
            if best_key is None or _better(key, best_key):
                best, best_key = t, key
        counts[best] += unit.total
        targets.append(best)
    total_moves = sum(moves[u][t] for u, t in enumerate(targets))
    current: tuple[float, ...] = (*objective.cost(counts), total_moves)
    for _ in range(MAX_PASSES):
        changed = False
        for u, unit in enumerate(units):
            old = targets[u]
            for t in range(n_splits):
                if t == old:
                    continue
                counts[old] -= unit.total
                counts[t] += unit.total
                key = (*objective.cost(counts), current[-1] - moves[u][old] + moves[u][t])
                if _better(key, current):
                    targets[u], current, old, changed = t, key, t, True
                else:
                    counts[t] -= unit.total
                    counts[old] += unit.total
        in_tolerance = current[0] <= 0 and current[1] <= 0
        if not changed and (in_tolerance or len(units) > MAX_UNITS_FOR_SWAPS):
            break
        if not changed:
            changed, current = _try_swaps(units, targets, counts, moves, objective, current)
            if not changed:
                break
    return targets


def _try_swaps(
    units: Sequence[_Unit],
    targets: list[int],
    counts: np.ndarray,
    moves: list[list[int]],
    objective: _Objective,
    current: tuple[float, ...],
) -> tuple[bool, tuple[float, ...]]:
    """Move two units at once (the first improvement found); ``targets`` and ``counts`` are
    updated in place."""
    n_splits = counts.shape[0]
    for u in range(len(units)):
        for v in range(u + 1, len(units)):
            old_u, old_v = targets[u], targets[v]
            for t in range(n_splits):
                for s in range(n_splits):
                    if t == old_u or s == old_v:
                        continue
                    change_u, change_v = units[u].total, units[v].total
                    counts[old_u] -= change_u
                    counts[t] += change_u
                    counts[old_v] -= change_v
                    counts[s] += change_v
                    moved = current[-1] - moves[u][old_u] + moves[u][t] - moves[v][old_v]
                    key = (*objective.cost(counts), moved + moves[v][s])
                    if _better(key, current):
                        targets[u], targets[v] = t, s
                        return True, key
                    counts[s] -= change_v
                    counts[old_v] += change_v
                    counts[t] -= change_u
                    counts[old_u] += change_u
    return False, current


def balance_report(
    counts_before: np.ndarray,
    counts_after: np.ndarray,
    split_order: Sequence[str],
    labels: Sequence[str],
    objective: _Objective,
    policy: str,
) -> dict[str, Any]:
    """Split sizes, shares and class counts before and after, and the largest deviations.

    Shares and deviations are in percentage points; ``within_tolerance`` applies the balanced
    policy's tolerances whatever the policy.
    """
    size_deviation, class_deviation = objective.deviations(counts_after)
    total = objective.total

    def classes(counts: np.ndarray) -> dict[str, dict[str, int]]:
        return {
            name: {label: int(counts[k, j]) for j, label in enumerate(labels) if label}
            for k, name in enumerate(split_order)
        }

    max_size = float(np.abs(size_deviation).max()) if len(size_deviation) else 0.0
    max_class = float(np.abs(class_deviation).max()) if class_deviation.size else 0.0
    sizes_before = dict(zip(split_order, counts_before.sum(axis=1).tolist(), strict=True))
    sizes_after = dict(zip(split_order, counts_after.sum(axis=1).tolist(), strict=True))
    return {
        "policy": policy,
        "split_sizes_before": sizes_before,
        "split_sizes_after": sizes_after,
        "split_shares_before": {n: round(100 * v / total, 3) for n, v in sizes_before.items()},
        "split_shares_after": {n: round(100 * v / total, 3) for n, v in sizes_after.items()},
        "class_counts_before": classes(counts_before),
        "class_counts_after": classes(counts_after),
        "size_tolerance_images": round(objective.size_tolerance, 3),
        "size_tolerance_points": round(100 * objective.size_tolerance / total, 3),
        "class_tolerance_points": round(100 * CLASS_TOLERANCE, 3),
        "max_size_deviation_images": int(round(max_size)),
        "max_size_deviation_points": round(100 * max_size / total, 3),
        "max_class_deviation_points": round(100 * max_class, 3),
        "within_tolerance": objective.within_tolerance(counts_after),
    }


# -- reasons -------------------------------------------------------------------------------------


def _reason(
    unit: _Unit,
    target: int,
    policy: str,
    objective: _Objective,
    counts_after: np.ndarray,
    split_order: Sequence[str],
    labels: Sequence[str],
) -> str:
    name = split_order[target]
    held = unit.counts.sum(axis=1)
    if policy == "train":
        text = f"train policy: the group goes to {name}"
    elif policy == "majority":
        text = f"majority policy: {held[target]} of {unit.size} images are in {name}"
    else:
        before = objective.sizes_before[target] / objective.total
        after = counts_after[target].sum() / objective.total
        text = f"balanced: keeps {name} at {after:.1%} (was {before:.1%})"
        main_label = int(np.argmax(unit.total))
        if objective.labelled and labels[main_label]:
            shares = _class_shares(counts_after)[target, main_label]
            was = objective.shares_before[target, main_label]
            text += f", class {labels[main_label]} {shares:.1%} of it (was {was:.1%})"
    extras = []
    if len(unit.twin_groups) > 1 or unit.manifest_groups:
        parts = [f"twin group {g}" for g in unit.twin_groups] + [
            f"manifest group {g}" for g in unit.manifest_groups
        ]
        extras.append("keeps together " + ", ".join(parts))
    for a, b, value in unit.links[:3]:
        extras.append(
            f"{a[1]} and {b[1]} are near-twins inside {a[0]} (SSIM {value:.4f}): kept together"
        )
    outside = _outside_tolerance(unit, target, objective, counts_after, split_order, labels)
    if outside:
        extras.append("cannot be placed within the balance tolerance: " + outside)
    return "; ".join([text, *extras])


def _outside_tolerance(
    unit: _Unit,
    target: int,
    objective: _Objective,
    counts_after: np.ndarray,
    split_order: Sequence[str],
    labels: Sequence[str],
) -> str:
    """The tolerances broken in the splits this unit leaves or enters, for its classes."""
    size_deviation, class_deviation = objective.deviations(counts_after)
    touched = sorted({target, *np.flatnonzero(unit.counts.sum(axis=1)).tolist()})
    notes = []
    for k in touched:
        if abs(size_deviation[k]) > objective.size_tolerance + EPSILON:
            notes.append(
                f"{split_order[k]} {size_deviation[k]:+d} images "
                f"(tolerance ±{objective.size_tolerance:.0f})"
            )
        for j in np.flatnonzero(unit.total):
            if abs(class_deviation[k, j]) > CLASS_TOLERANCE + EPSILON:
                notes.append(
                    f"class {labels[j]} in {split_order[k]} {100 * class_deviation[k, j]:+.1f} "
                    "points (tolerance ±2)"
                )
    return ", ".join(notes)
