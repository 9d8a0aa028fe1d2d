"""Fixing the splits: the plan an audit proposes, and its journaled, reversible application.

``apply`` carries out a report's ``reassignments.csv`` or ``placement.csv`` behind a write-ahead
journal; ``undo`` restores the previous tree from that journal.
"""

from leakcheck.fixes.apply import (
    ApplyError,
    ApplyOutcome,
    PlanError,
    PlannedOperation,
    apply_plan,
    read_plan,
    undo_journal,
)

__all__ = [
    "ApplyError",
    "ApplyOutcome",
    "PlanError",
    "PlannedOperation",
    "apply_plan",
    "read_plan",
    "undo_journal",
]
