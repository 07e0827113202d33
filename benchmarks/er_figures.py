"""The ER note's figures, read from a finished suite's runs (no training here).

For each cell (task parameters, variant, seed): test accuracy after exactly one update and after
one epoch, the final and best test accuracy (best over evaluation points; selecting on test is
optimistic and is printed only beside the final one), the number of updates and the training
seconds to each validation threshold, and the status.

    python benchmarks/er_figures.py reports/er [reports/er-cifar10 ...]
"""
from __future__ import annotations

import sys
from pathlib import Path

from plasticity.results import load_cells


def _at(evals: list[dict], updates: float) -> dict | None:
    """The first evaluation at or after `updates` updates."""
    return next((e for e in evals if e["updates"] >= updates), None)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def report(folder: Path) -> None:
    print(f"== {folder}")
    rows = []
    for cell in load_cells(folder, include_partial=False):
        cfg, evals, final = cell.config, cell.evals, cell.final or {}
        task = cfg["task"]["params"]
        shape = f"{cfg['task']['name']} hidden={list(task.get('hidden', []))} batch={task.get('batch_size')}"
        per_epoch = next((e["updates"] / e["epoch"] for e in evals if e.get("epoch")), None)
        one = _at(evals, 1)
        epoch = _at(evals, per_epoch) if per_epoch else None
        reached = "  ".join(
            f"{float(t) * 100:g}%: {u if u is not None else '—'} upd / "
            f"{'—' if s is None else f'{s:.1f} s'}"
            for (t, u), s in zip((final.get("updates_to") or {}).items(), (final.get("seconds_to") or {}).values()))
        best = max((e["test_accuracy"] for e in evals if e.get("test_accuracy") is not None), default=None)
        rows.append((shape, cell.header["labels"]["variant"].split(" [")[0], cfg["seed"],
                     f"1 update: {_pct(one and one['test_accuracy'])}  1 epoch: "
                     f"{_pct(epoch and epoch['test_accuracy'])} ({epoch and epoch['updates']} upd)  "
                     f"final: {_pct(final.get('test_accuracy'))} after {final.get('updates')} upd, "
                     f"{final.get('train_seconds', 0):.1f} s  best: {_pct(best)}  [{final.get('status')}]",
                     reached))
    for shape, variant, seed, accs, reached in sorted(rows):
        print(f"{shape} | {variant} | seed {seed}\n    test acc. % — {accs}\n    to val. acc. — {reached}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["reports/er"]:
        report(Path(arg))
