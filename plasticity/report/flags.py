"""Warnings about what a task's results cannot tell apart, shown above its summary.

- variants whose curves are identical seed by seed: the same validation accuracy and loss at
  every evaluation of every shared seed (FA and DFA on a network with one hidden layer compute
  the same thing), so their rows are one result under two names;
- rules other than backprop whose credit stays within `BP_ANGLE_DEG` of the true gradient at every
  measurement: on this network they reduce to backprop, and their numbers say nothing about
  the rule's credit assignment. Rules whose feedback is Wᵀ itself (angle(B, Wᵀ) = 0 in every
  layer: backprop's credit by construction, as GOFAU's rules, which differ from "bp" only in the
  optimizer) are not flagged: they are backprop on purpose, not by accident of the network.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..results import FINISHED

BP_RULE = "bp"
BP_ANGLE_DEG = 1.0
TRANSPOSE_FLOOR_DEG = 0.01  # angle(B, Wᵀ) below this everywhere: B is Wᵀ (rounding aside)
_DIGITS = 12  # curves compared to 12 significant digits: exact, but blind to JSON round-trip noise


def _signature(rows: pd.DataFrame) -> tuple:
    """A variant's curves as comparable data: per seed, the (updates, val acc., val loss) points."""
    out = []
    for seed, sub in rows.sort_values(["seed", "updates"]).groupby("seed", sort=True):
        points = sub[["updates", "val_accuracy", "val_loss"]].to_numpy(dtype=float)
        rounded = [tuple(float(f"{v:.{_DIGITS}g}") if np.isfinite(v) else str(v) for v in p) for p in points]
        out.append((seed, tuple(rounded)))
    return tuple(out)


def identical_groups(curves: pd.DataFrame) -> list[list[str]]:
    """Groups (two or more) of variants whose finished cells have identical curves seed by seed.

    `curves` holds one task's evaluation rows (see `tables.curves_frame`); variants are compared
    over the same set of seeds only.
    """
    finished = curves[curves["status"].isin(FINISHED)]
    groups: dict[tuple, list[str]] = {}
    for variant, rows in finished.groupby("variant", sort=False):
        if rows["val_accuracy"].notna().any():
            groups.setdefault(_signature(rows), []).append(str(variant))
    return [sorted(g) for g in groups.values() if len(g) > 1]


@dataclass(frozen=True)
class NearBackprop:
    """A non-backprop variant whose whole-network credit angle never exceeded `max_angle`."""
    variant: str
    rule: str
    max_angle: float
    measurements: int


def reduces_to_backprop(feedback: pd.DataFrame, cells: pd.DataFrame,
                        limit_deg: float = BP_ANGLE_DEG) -> list[NearBackprop]:
    """Non-BP variants whose angle between credit and true gradient (all layers together) stayed
    within `limit_deg` at every measurement of every finished seed."""
    if feedback.empty or cells.empty:
        return []
    rules = dict(zip(cells["variant"], cells["rule"]))
    transpose = feedback[feedback["metric"] == "angle_BWt"].groupby("variant")["value"].max()
    by_construction = set(transpose[transpose <= TRANSPOSE_FLOOR_DEG].index)
    overall = feedback[(feedback["metric"] == "grad_angle") & (feedback["layer"] == "")
                       & feedback["status"].isin(FINISHED)]
    out = []
    for variant, rows in overall.groupby("variant", sort=False):
        rule = str(rules.get(variant, ""))
        if rule == BP_RULE or variant in by_construction or rows.empty:
            continue
        peak = float(rows["value"].max())
        if peak <= limit_deg:
            out.append(NearBackprop(str(variant), rule, peak, len(rows)))
    return out
