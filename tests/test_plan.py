"""The reassignment planner: policies, what moves together, balance within product.md's tolerances.

The first tests call :func:`leakcheck.fixes.plan.make_plan` on small tables; the last ones run the
real audit on a labelled dataset of real PNG files with twenty planted twin groups.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from planted_twins import SPLITS, build_dataset, file_hashes, reaudit, split_counts

from leakcheck.fixes.plan import REASSIGNMENT_COLUMNS, make_plan

SPLIT_ORDER = ["train", "valid", "test"]


def table(
    counts: dict[str, int], labels: tuple[str, ...] = ("a",), manifest: bool = False
) -> pd.DataFrame:
    """``counts[split]`` images per split, labels cycling through ``labels``."""
    rows = []
    for split, n in counts.items():
        for k in range(n):
            rows.append((split, f"{split}_{k:03d}.png", labels[k % len(labels)], ""))
    frame = pd.DataFrame(rows, columns=["split", "path", "label", "group"])
    return frame if manifest else frame.drop(columns="group")


def twin_members(groups: dict[str, list[tuple[str, str]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(group, split, path) for group, keys in groups.items() for split, path in keys],
        columns=["group", "split", "path"],
    )


def final_splits(plan, keys) -> set[str]:
    return {plan.final_split[key] for key in keys}


# -- policies ---------------------------------------------------------------------------------


def test_train_policy_moves_every_leaking_group_into_train() -> None:
    images = table({"train": 10, "valid": 5, "test": 5})
    groups = {
        "g1": [("train", "train_000.png"), ("valid", "valid_000.png")],
        "g2": [("valid", "valid_001.png"), ("test", "test_001.png")],  # does not touch train
    }
    plan = make_plan(twin_members(groups), images, SPLIT_ORDER, policy="train")
    assert list(plan.moves.columns) == REASSIGNMENT_COLUMNS
    assert set(plan.moves["to_split"]) == {"train"}
    assert sorted(plan.moves["path"]) == ["test_001.png", "valid_000.png", "valid_001.png"]
    assert plan.moves["reason"].str.startswith("train policy").all()


def test_majority_policy_goes_where_most_of_the_group_is_and_ties_go_to_the_earlier_split() -> None:
    images = table({"train": 10, "valid": 10, "test": 10})
    groups = {
        "g1": [("train", "train_000.png"), ("valid", "valid_000.png"), ("valid", "valid_001.png")],
        "g2": [("valid", "valid_002.png"), ("test", "test_000.png")],
    }
    plan = make_plan(twin_members(groups), images, SPLIT_ORDER, policy="majority")
    moves = plan.moves.set_index("path")
    assert moves.loc["train_000.png", "to_split"] == "valid"
    assert "2 of 3 images are in valid" in moves.loc["train_000.png", "reason"]
    assert moves.loc["test_000.png", "to_split"] == "valid"  # tie valid/test: the earlier one
    assert len(plan.moves) == 2


@pytest.mark.parametrize("policy", ["train", "majority", "balanced"])
def test_every_leaking_group_ends_in_exactly_one_split_and_nothing_else_moves(policy: str) -> None:
    rng = np.random.default_rng(3)
    images = table({"train": 60, "valid": 20, "test": 20}, labels=("x", "y"))
    keys = list(zip(images["split"], images["path"], strict=True))
    order = rng.permutation(len(keys))
    groups, start = {}, 0
    for g, size in enumerate([2, 3, 4, 2, 5, 3, 2]):
        groups[f"g{g}"] = [keys[k] for k in order[start : start + size]]
        start += size
    plan = make_plan(twin_members(groups), images, SPLIT_ORDER, policy=policy)
    for members in groups.values():
        assert len(final_splits(plan, members)) == 1
    grouped = {key for members in groups.values() for key in members}
    moved = set(zip(plan.moves["from_split"], plan.moves["path"], strict=True))
    assert moved <= grouped
    assert all(plan.final_split[key] == key[0] for key in keys if key not in grouped)


def test_groups_inside_one_split_and_accepted_groups_do_not_move() -> None:
    images = table({"train": 10, "valid": 10})
    groups = {
        "inside": [("train", "train_000.png"), ("train", "train_001.png")],
        "accepted": [("train", "train_002.png"), ("valid", "valid_002.png")],
        "leak": [("train", "train_003.png"), ("valid", "valid_003.png")],
    }
    plan = make_plan(twin_members(groups), images, ["train", "valid"], fixing_groups={"leak"})
    assert plan.moves["group"].tolist() == ["leak"]
    assert plan.balance["groups_moved"] == 1


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="policy"):
        make_plan(twin_members({}), table({"train": 2, "valid": 2}), ["train", "valid"],
                  policy="random")  # fmt: skip


# -- what moves together ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["train", "majority", "balanced"])
def test_a_manifest_group_is_never_separated(policy: str) -> None:
    images = table({"train": 20, "valid": 10, "test": 10}, manifest=True)
    patient = ["valid_000.png", "valid_001.png", "valid_002.png"]
    images.loc[images["path"].isin(patient), "group"] = "patient7"
    # one of the patient's images has a twin in train: the whole patient moves, or the twin does
    groups = {"g1": [("train", "train_000.png"), ("valid", "valid_000.png")]}
    plan = make_plan(twin_members(groups), images, SPLIT_ORDER, policy=policy)
    together = [("train", "train_000.png")] + [("valid", p) for p in patient]
    assert len(final_splits(plan, together)) == 1
    if policy == "train":
        assert set(plan.moves["path"]) == set(patient)
        assert "manifest group patient7" in plan.moves["reason"].iloc[0]
        assert plan.moves["group"].iloc[0] == "g1+manifest:patient7"


def test_a_manifest_group_found_in_two_splits_is_joined_without_any_twin() -> None:
    images = table({"train": 20, "valid": 10}, manifest=True)
    images.loc[images["path"].isin(["train_005.png", "valid_004.png"]), "group"] = "video3"
    plan = make_plan(twin_members({}), images, ["train", "valid"], policy="balanced")
    assert len(plan.moves) == 1
    assert final_splits(plan, [("train", "train_005.png"), ("valid", "valid_004.png")]) in (
        {"train"},
        {"valid"},
    )
    assert plan.moves["group"].tolist() == ["manifest:video3"]


def test_linked_images_move_with_their_group() -> None:
    images = table({"train": 20, "valid": 10})
    groups = {"g1": [("train", "train_000.png"), ("valid", "valid_000.png")]}
    link = (("valid", "valid_000.png"), ("valid", "valid_001.png"), 0.93)
    plan = make_plan(twin_members(groups), images, ["train", "valid"], policy="train",
                     links=[link])  # fmt: skip
    assert sorted(plan.moves["path"]) == ["valid_000.png", "valid_001.png"]
    assert "near-twins inside valid (SSIM 0.9300)" in plan.moves["reason"].iloc[0]


# -- balance ------------------------------------------------------------------------------------


def test_balanced_sends_mirrored_groups_opposite_ways_so_sizes_stay() -> None:
    images = table({"train": 30, "valid": 30})
    groups = {
        f"g{k}": [("train", f"train_{k:03d}.png"), ("valid", f"valid_{k:03d}.png")]
        for k in range(4)
    }
    plan = make_plan(twin_members(groups), images, ["train", "valid"], policy="balanced")
    assert plan.balance["split_sizes_after"] == {"train": 30, "valid": 30}
    assert len(plan.moves) == 4  # one image per group: never the costlier move to a third split
    assert plan.moves["reason"].str.startswith("balanced: keeps ").all()
    assert "(was 50.0%)" in plan.moves["reason"].iloc[0]


def test_balanced_keeps_class_shares_when_sizes_alone_would_not() -> None:
    labels = ("cat", "dog")
    images = table({"train": 100, "valid": 100}, labels=labels)
    label_of = dict(zip(images["path"], images["label"], strict=True))
    cats = [p for p in images["path"] if label_of[p] == "cat"]
    dogs = [p for p in images["path"] if label_of[p] == "dog"]
    # cat groups lean to train, dog groups lean to valid: sizes alone would not care which way
    groups = {}
    for k in range(3):
        groups[f"cat{k}"] = [("train", cats[k]), ("valid", cats[50 + k])]
        groups[f"dog{k}"] = [("train", dogs[k]), ("valid", dogs[50 + k])]
    plan = make_plan(twin_members(groups), images, ["train", "valid"], policy="balanced")
    assert plan.balance["within_tolerance"]
    after = plan.balance["class_counts_after"]
    assert abs(after["train"]["cat"] - 50) <= 1 and abs(after["valid"]["dog"] - 50) <= 1


def test_a_group_that_cannot_fit_the_tolerance_stays_together_and_says_so() -> None:
    images = table({"train": 6, "valid": 4}, labels=("x", "y"))
    groups = {"g1": [("train", "train_000.png"), ("valid", "valid_000.png"),
                     ("valid", "valid_002.png")]}  # fmt: skip
    plan = make_plan(twin_members(groups), images, ["train", "valid"], policy="balanced")
    assert len(final_splits(plan, groups["g1"])) == 1
    assert not plan.balance["within_tolerance"]
    assert plan.moves["reason"].str.contains("cannot be placed within the balance tolerance").all()


def test_balance_report_counts_match_the_moves() -> None:
    images = table({"train": 12, "valid": 6, "test": 6}, labels=("x", "y", "z"))
    groups = {"g1": [("train", "train_000.png"), ("test", "test_000.png")],
              "g2": [("valid", "valid_001.png"), ("test", "test_001.png")]}  # fmt: skip
    plan = make_plan(twin_members(groups), images, SPLIT_ORDER, policy="majority")
    sizes = dict(plan.balance["split_sizes_before"])
    for row in plan.moves.itertuples(index=False):
        sizes[row.from_split] -= 1
        sizes[row.to_split] += 1
    assert sizes == plan.balance["split_sizes_after"]
    assert plan.balance["class_counts_before"]["train"] == {"x": 4, "y": 4, "z": 4}
    assert sum(plan.balance["class_counts_after"]["train"].values()) == sizes["train"]


def test_the_same_input_gives_the_same_plan() -> None:
    images = table({"train": 40, "valid": 20, "test": 20}, labels=("x", "y"))
    groups = {f"g{k}": [("train", f"train_{k:03d}.png"), ("valid", f"valid_{k:03d}.png"),
                        ("test", f"test_{k:03d}.png")] for k in range(5)}  # fmt: skip
    first = make_plan(twin_members(groups), images, SPLIT_ORDER)
    second = make_plan(twin_members(groups), images.sample(frac=1, random_state=1), SPLIT_ORDER)
    pd.testing.assert_frame_equal(first.moves, second.moves)


# -- on a real dataset --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    return build_dataset(tmp_path_factory.mktemp("planted") / "data")


def shares(counts: dict[str, dict[str, int]]) -> tuple[dict[str, float], dict]:
    total = sum(sum(per_label.values()) for per_label in counts.values())
    split_share = {s: sum(c.values()) / total for s, c in counts.items()}
    class_share = {
        s: {label: n / sum(c.values()) for label, n in c.items()} for s, c in counts.items()
    }
    return split_share, class_share


def test_balanced_plan_on_planted_groups_meets_the_tolerances(
    planted, tmp_path: Path, run_cli
) -> None:
    """Audit → apply → re-audit on 339 labelled PNGs with twenty twin groups of 2-6 images."""
    data = tmp_path / "data"
    shutil.copytree(planted.root, data)
    splits = [arg for s in SPLITS for arg in (f"--{s}", str(data / s))]
    report = tmp_path / "report"
    audit = run_cli(*splits, "--size", "32", "--out", report, "--format", "csv", "--quiet")
    assert audit.returncode == 1, audit.stderr
    summary = json.loads((report / "summary.json").read_text())
    assert summary["leaking_groups"] == len(planted.groups) == 20
    with (report / "reassignments.csv").open() as handle:
        moves = list(csv.DictReader(handle))
    largest_moved = max(
        len(members)
        for members in planted.groups
        if any((m["from_split"], m["path"]) in members for m in moves)
    )
    before, hashes = split_counts(data), file_hashes(data)
    assert run_cli("apply", report, "--yes").returncode == 0
    again = reaudit({split: data / split for split in SPLITS}, size=32)
    assert again.exit_code == 0, again.pairs
    assert file_hashes(data) == hashes
    after = split_counts(data)
    total = sum(sum(c.values()) for c in before.values())
    size_before, class_before = shares(before)
    size_after, class_after = shares(after)
    size_tolerance = max(0.01, largest_moved / total)
    for split in SPLITS:
        assert abs(size_after[split] - size_before[split]) <= size_tolerance + 1e-12, split
        for label, share in class_before[split].items():
            assert abs(class_after[split].get(label, 0) - share) <= 0.02 + 1e-12, (split, label)
    assert summary["balance"]["within_tolerance"]
    assert summary["balance"]["split_sizes_after"] == {s: sum(c.values()) for s, c in after.items()}
    counted = {
        s: {k: n for k, n in c.items() if n} for s, c in summary["class_counts_after"].items()
    }
    assert counted == after
