"""Write a synthetic suite folder in the exact results-store format, for the report tests.

Curves are smooth saturating functions of the update count with seed noise; nothing here is a
measurement. Cells go through the real `CellWriter`, so the files are what the engine writes.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from plasticity.writer import CellWriter, write_json

DEFAULT_RULES: dict[str, dict[str, list[Any]]] = {
    "bp": {"optimizer.lr": [0.01, 0.1]},
    "fa": {"optimizer.lr": [0.01, 0.1]},
}
HOSTILE_NAME = "<script>alert(1)</script>"


def _schedule(budget: int, per_epoch: int) -> list[int]:
    """Update 0 (before training), log-spaced points (1, 2, 3, 5, 8, ...) and every epoch."""
    points, x = {0}, 1.0
    while x <= budget:
        points.add(int(round(x)))
        x *= 1.6
    points.update(range(per_epoch, budget + 1, per_epoch))
    points.add(budget)
    return sorted(points)


def _cell_id(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _variant(rule: str, grid: Mapping[str, Any], display_rule: str | None = None) -> str:
    opt = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in grid.items() if k.startswith("optimizer."))
    rul = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in grid.items() if k.startswith("rule."))
    name = display_rule or rule
    return f"{name}{f'({rul})' if rul else ''} + sgd{f'({opt})' if opt else ''}"


def _provenance() -> dict[str, Any]:
    return {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False,
            "python": "3.11.2", "packages": {"torch": "2.4.1", "numpy": "2.1.0"},
            "platform": "Linux-x86_64", "device": "cpu", "device_name": "demo CPU",
            "dtype": "float32", "command": "plasticity run suites/demo.toml", "hostname": "demo"}


def _grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def write_demo_suite(
    suite_dir: Path,
    *,
    tasks: Sequence[str] = ("digits",),
    rules: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    thresholds: Sequence[float] = (0.9, 0.95, 0.97),
    budget: int = 2000,
    diverged: int = 1,
    error_cell: bool = True,
    incomplete_cell: bool = True,
    feedback: bool = True,
    hostile: bool = False,
    published: bool = True,
    twins: Mapping[str, str] | None = None,
    near_bp: Sequence[str] = (),
    busy: Sequence[str] = (),
    transpose_feedback: Sequence[str] = (),
) -> Path:
    """Write `suite.json` and `runs/*.jsonl` for a fake suite; return the suite folder.

    `diverged` cells (the last rule's last grid point, seeds from the second on) end with status
    "diverged"; `error_cell` adds one errored cell and `incomplete_cell` one `.part` file, both
    as extra seeds. Rules whose name is not "bp" carry per-layer "feedback" metrics. With
    `hostile`, one more rule is displayed as `<script>alert(1)</script>` to test escaping.
    `twins` maps a rule to another whose curves it repeats exactly (as FA and DFA on one hidden
    layer); rules in `near_bp` report a credit angle under 1° to the gradient, the others 30°+;
    cells of rules in `busy` record a load average of 8 on 2 CPUs (the others 0.5); rules in
    `transpose_feedback` report angle(B, Wᵀ) = 0 (backprop's credit by construction).
    """
    twins = dict(twins or {})
    suite_dir = Path(suite_dir)
    runs = suite_dir / "runs"
    rules = dict(rules or DEFAULT_RULES)
    if hostile:
        rules[HOSTILE_NAME] = {}
    name = suite_dir.name
    toml = f'name = "{name}"\n# a <b>comment</b> & more\ntasks = {list(tasks)!r}\nseeds = {list(seeds)!r}\n'
    write_json(suite_dir / "suite.json", {
        "name": name, "description": "Synthetic suite <demo> for checking the report & its escaping.",
        "source": f"suites/{name}.toml", "toml": toml,
        "published": [
            {"task": tasks[0], "rule": "bp", "metric": "test_error", "value": 2.5,
             "source": "Example et al. (2020), Table 1", "note": "same MLP <784-256-10>"},
            {"task": tasks[0], "rule": "fa", "metric": "test_accuracy", "value": 96.0,
             "source": "Example & Other (2016)", "note": ""},
        ] if published else [],
        "created": datetime(2025, 1, 1, tzinfo=timezone.utc).isoformat(),
    })
    per_epoch = max(1, budget // 4)
    schedule = _schedule(budget, per_epoch)
    jobs = []
    for task_index, task in enumerate(tasks):
        for rule_index, (rule, grid) in enumerate(rules.items()):
            points = _grid_points(grid)
            for point_index, point in enumerate(points):
                extra = []
                if task_index == 0 and rule_index == 0 and point_index == 0:
                    extra = (["error"] if error_cell else []) + (["incomplete"] if incomplete_cell else [])
                last_point = rule_index == len(rules) - 1 - hostile and point_index == len(points) - 1
                for s_index, seed in enumerate(list(seeds) + [max(seeds) + 1 + i for i in range(len(extra))]):
                    fate = extra[s_index - len(seeds)] if s_index >= len(seeds) else (
                        "diverged" if task_index == 0 and last_point and 1 <= s_index <= diverged else "complete")
                    jobs.append((task_index, task, rule_index, rule, point, seed, fate))
    names = list(rules)
    for task_index, task, rule_index, rule, point, seed, fate in jobs:
        source = twins.get(rule, rule)
        _write_cell(runs, task, task_index, rule, rule_index, point, seed, fate, schedule, per_epoch,
                    thresholds, budget, feedback and rule not in ("bp",),
                    curve=(source, names.index(source)), near_bp=rule in near_bp, busy=rule in busy,
                    transpose=rule in transpose_feedback)
    return suite_dir


def _write_cell(runs: Path, task: str, task_index: int, rule: str, rule_index: int,
                point: dict[str, Any], seed: int, fate: str, schedule: list[int], per_epoch: int,
                thresholds: Sequence[float], budget: int, with_feedback: bool,
                curve: tuple[str, int] | None = None, near_bp: bool = False, busy: bool = False,
                transpose: bool = False) -> None:
    """Simulate one cell's curve and write it like the engine does (`curve`: the rule name and
    index whose curve to draw, by default the cell's own)."""
    curve_rule, curve_index = curve or (rule, rule_index)
    key = json.dumps([task, curve_rule, point, seed], sort_keys=True).encode()
    rng = np.random.default_rng(int(hashlib.sha256(key).hexdigest()[:8], 16))  # stable across runs
    lr = float(point.get("optimizer.lr", 0.05))
    config = {"suite": runs.parent.name, "task": {"name": task, "params": {}},
              "rule": {"name": rule, "params": {k[5:]: v for k, v in point.items() if k.startswith("rule.")}},
              "optimizer": {"name": "sgd", "params": {"lr": lr}}, "seed": seed,
              "budget": {"updates": budget, "epochs": None, "seconds": None},
              "evaluation": {"schedule": "log"}, "dtype": "float32"}
    header = {"type": "header", "cell_id": _cell_id(config), "config": config,
              "labels": {"variant": _variant(rule, point), "rule": rule, "optimizer": "sgd", "grid": point},
              "thresholds": list(thresholds), "provenance": _provenance(), "started": "2025-01-01T00:00:00+00:00",
              "load_start": {"load_avg": [8.0, 7.5, 6.0] if busy else [0.5, 0.4, 0.3], "cpus": 2,
                             "torch_threads": 2}}
    writer = CellWriter(runs, header["cell_id"])
    writer.write(header)
    rule_index = curve_index
    ceiling = 0.985 - 0.012 * rule_index - 0.03 * task_index - (0.01 if "mse" in map(str, point.values()) else 0)
    tau = 30.0 / lr ** 0.7 * (1 + 0.6 * rule_index) * (1 + 0.1 * rng.standard_normal())
    sec_per_update = 0.004 * (1 + 0.5 * rule_index) * (1 + 0.05 * rng.standard_normal())
    stop = {"diverged": int(schedule[len(schedule) * 2 // 3]), "error": 40,
            "incomplete": int(schedule[len(schedule) // 2])}.get(fate, budget)  # last update written
    first: dict[str, dict[str, float | None]] = {k: {f"{t:g}": None for t in thresholds}
                                                 for k in ("updates_to", "examples_to", "seconds_to")}
    ev: dict[str, Any] = {}
    for u in schedule:
        if u > stop:
            break
        acc = 0.1 + (ceiling - 0.1) * (1 - math.exp(-((u / tau) ** 0.9)))  # 10 classes: chance at 0
        val = float(np.clip(acc + 0.004 * rng.standard_normal(), 0, 1))
        if fate == "diverged" and u > stop * 0.6:
            val -= 0.08 * (u / stop) ** 2  # wobble before blowing up, to show "largest drop"
        seconds = u * sec_per_update
        ev = {"type": "eval", "updates": u, "epoch": u // per_epoch, "examples": u * 32,
              "train_seconds": seconds, "train_loss": 2.3 * (1 - acc) + 0.01, "val_accuracy": val,
              "val_loss": 2.3 * (1 - val) + 0.02,
              "test_accuracy": float(np.clip(val - 0.003 + 0.003 * rng.standard_normal(), 0, 1)),
              "diagnostics": {"grad_norm": lr * 10 / math.sqrt(u + 1)}}
        if with_feedback:
            k = lr / 0.1  # faster learning rates align the feedback sooner
            ev["feedback"] = {f"L{layer}.{name}": value for layer in (1, 2) for name, value in (
                ("rel_err_white", 1.2 * math.exp(-u * k / (200.0 * layer)) + 0.05 * layer),
                ("rel_err_data", 0.9 * math.exp(-u * k / (150.0 * layer)) + 0.02),
                ("angle_B_Wt_deg", 80 * math.exp(-u * k / 300.0) + 8 + 4 * layer))}
            if transpose:
                ev["feedback"].update({f"L{layer}.angle_BWt": 1e-6 for layer in (1, 2)})
            ev["feedback"]["grad_angle"] = 0.2 + 0.1 * math.exp(-u / 100) if near_bp else 30 + 20 * math.exp(-u / 100)
        for t in thresholds:
            key = f"{t:g}"
            if val >= t and first["updates_to"][key] is None:
                first["updates_to"][key] = u
                first["examples_to"][key] = u * 32
                first["seconds_to"][key] = seconds
        writer.write(ev)
    if fate == "incomplete":
        writer.close()
        return
    messages = {"diverged": f"non-finite loss at update {stop + 1}",
                "error": "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA <oops> & friends"}
    # Like the engine: a diverged cell keeps the numbers of its last evaluation.
    final = {"status": fate, "updates": ev.get("updates", 0), "examples": ev.get("examples", 0),
             "train_seconds": ev.get("train_seconds", 0.0), "val_accuracy": ev.get("val_accuracy"),
             "test_accuracy": ev.get("test_accuracy"), **first, "message": messages.get(fate, ""),
             "finished": "2025-01-01T00:10:00+00:00", "wall_seconds": stop * sec_per_update * 1.3}
    writer.finish(final)
