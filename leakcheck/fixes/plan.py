"""Reassignment plans: move every leaking twin group into exactly one split.

Policies:

* ``train``: the whole group goes to the first split (``train`` when present);
* ``majority``: to the split that holds most of the group (ties: earlier split);
* ``balanced`` (default): per group, the split whose choice keeps the final split sizes — and,
  where labels exist, the class proportions inside each split — closest to the original ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

REASSIGNMENT_COLUMNS = ["path", "from_split", "to_split", "group", "reason"]


def plan_reassignments(
    members: pd.DataFrame,
    images: pd.DataFrame,
    split_order: Sequence[str],
    *,
    policy: str = "balanced",
) -> pd.DataFrame:
    """One row per image that must move: ``path, from_split, to_split, group, reason``.

    ``members`` are twin-group members (``group, split, path, label``); ``images`` lists every
    audited image (``split, path, label``) for the balance targets.
    """
    if policy not in ("train", "majority", "balanced"):
        raise ValueError(f"policy must be train, majority or balanced, got {policy!r}")
    rows: list[tuple[str, str, str, str, str]] = []
    if members.empty:
        return pd.DataFrame(rows, columns=REASSIGNMENT_COLUMNS)
    rank = {name: k for k, name in enumerate(split_order)}
    sizes = {name: int((images["split"] == name).sum()) for name in split_order}
    total = max(sum(sizes.values()), 1)
    target_share = {name: sizes[name] / total for name in split_order}
    leaking = [
        (group, frame)
        for group, frame in members.groupby("group", sort=True)
        if frame["split"].nunique() > 1
    ]
    # big groups first: they constrain the balance most
    leaking.sort(key=lambda item: (-len(item[1]), item[0]))
    for group, frame in leaking:
        counts = frame["split"].value_counts().to_dict()
        candidates = sorted(counts, key=lambda name: rank[name])
        if policy == "train":
            target = "train" if "train" in counts else split_order[0]
            reason = f"{policy} policy"
        elif policy == "majority":
            target = max(candidates, key=lambda name: (counts[name], -rank[name]))
            reason = f"majority policy: {counts[target]} of {len(frame)} images in {target}"
        else:
            target = min(
                candidates,
                key=lambda name: (_imbalance(sizes, counts, name, target_share, total), rank[name]),
            )
            reason = "balanced policy: keeps split proportions closest to the original"
        for row in frame.sort_values(["split", "path"]).itertuples(index=False):
            if row.split != target:
                rows.append((row.path, row.split, target, group, reason))
        for name, count in counts.items():
            sizes[name] -= count
        sizes[target] += len(frame)
    return pd.DataFrame(rows, columns=REASSIGNMENT_COLUMNS)


def _imbalance(
    sizes: dict[str, int],
    counts: dict[str, int],
    target: str,
    target_share: dict[str, float],
    total: int,
) -> float:
    after = dict(sizes)
    for name, count in counts.items():
        after[name] -= count
    after[target] += sum(counts.values())
    return max(abs(after[name] / total - target_share[name]) for name in after)
