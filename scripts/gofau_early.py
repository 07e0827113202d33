#!/usr/bin/env python3
"""Early-epoch validation accuracy of a finished suite, per task and variant (mean ± std over seeds).

For the GOFAU question "does the hybrid update accelerate the first epochs?": the accuracy at
the evaluation nearest each fraction of an epoch (the engine evaluates at log-spaced update
counts and at every epoch), and the hybrid's gain over the additive variant with the same base.

    python scripts/gofau_early.py reports/gofau [--epochs 0.1 0.25 0.5 1 2 3 4]
"""
from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from plasticity.results import FINISHED, load_cells


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite_dir", type=Path)
    ap.add_argument("--epochs", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1, 2, 3, 4])
    args = ap.parse_args(argv)
    table: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for cell in load_cells(args.suite_dir, include_partial=False):
        if cell.status not in FINISHED:
            continue
        task, variant = cell.config["task"]["name"], cell.header["labels"]["variant"]
        last = cell.evals[-1]["epoch"]
        for e in args.epochs:
            if e <= last + 1e-9:
                nearest = min(cell.evals, key=lambda r: abs(r["epoch"] - e))
                table[(task, variant)][e].append(nearest["val_accuracy"] * 100)

    def fmt(values: list[float]) -> str:
        if not values:
            return "—"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):5.1f} ± {sd:3.1f}"

    for task in sorted({t for t, _ in table}):
        print(f"\n{task}: validation accuracy (%) at epoch, mean ± std over seeds (n)")
        print(f"  {'variant':24s}" + "".join(f"{e:>14g}" for e in args.epochs))
        for (t, variant), by_epoch in sorted(table.items()):
            if t == task:
                n = max(len(v) for v in by_epoch.values())
                print(f"  {variant + f' ({n})':24s}" + "".join(f"{fmt(by_epoch.get(e, [])):>14s}" for e in args.epochs))
        for (t, variant), by_epoch in sorted(table.items()):
            if t != task or "hybrid-" not in variant:
                continue
            additive = variant.replace("hybrid-", "")
            if (task, additive) in table:
                gains = [statistics.mean(by_epoch[e]) - statistics.mean(table[(task, additive)][e])
                         if by_epoch.get(e) and table[(task, additive)].get(e) else float("nan")
                         for e in args.epochs]
                print(f"  {'gain ' + variant.split(' + ')[-1] + ' (pp)':24s}" + "".join(f"{g:>+14.1f}" for g in gains))


if __name__ == "__main__":
    main()
