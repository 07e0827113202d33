#!/usr/bin/env python3
"""Early-epoch validation accuracy of a finished suite, per task and variant (mean ± std over seeds).

For the GOFAU question "does the hybrid update accelerate the first epochs?": the accuracy at
the evaluation nearest each fraction of an epoch (the engine evaluates at log-spaced update
counts and at every epoch), and the hybrid's gain over the additive variant with the same base.

    python scripts/gofau_early.py reports/gofau [--epochs 0.1 0.25 0.5 1 2 3 4]

`--grid E` prints instead, per task, hybrid optimizer and γ schedule, the η_out × η_in table of
test accuracy at the end of epoch E (mean over seeds; "div" when most seeds diverged first),
beside the additive optimizer's: the study over the multiplicative step's two scales
(suites/gofau-study.toml, gofau-study-cnn.toml).

    python scripts/gofau_early.py reports/gofau-study --grid 1
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
    ap.add_argument("--grid", type=float, metavar="E", help="η_out × η_in tables of test accuracy at epoch E")
    args = ap.parse_args(argv)
    if args.grid is not None:
        grid_tables(args.suite_dir, args.grid)
        return
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


def grid_tables(suite_dir: Path, epoch: float) -> None:
    """η_out × η_in tables of test accuracy at `epoch`, per task, hybrid optimizer and γ schedule."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for cell in load_cells(suite_dir, include_partial=False):
        if cell.status not in FINISHED:
            continue
        opt = cell.config["optimizer"]
        p = opt["params"]
        at = [e for e in cell.evals if abs(e["epoch"] - epoch) < 1e-9]
        value = 100 * at[0]["test_accuracy"] if at and at[0].get("test_accuracy") is not None else float("nan")
        key = (cell.config["task"]["name"], opt["name"], p.get("gamma_schedule"), p.get("eta_out"), p.get("eta_in"))
        acc[key].append(value)

    def cell_text(values: list[float]) -> str:
        finite = [v for v in values if v == v]
        if len(finite) * 2 <= len(values):
            return "div"
        return f"{statistics.mean(finite):.2f}"

    for task in sorted({k[0] for k in acc}):
        print(f"\n{task}: test accuracy (%) at epoch {epoch:g}, mean over seeds")
        for opt in sorted({k[1] for k in acc if k[0] == task and k[1].startswith("hybrid-")}):
            base = opt.removeprefix("hybrid-")
            base_values = acc.get((task, base, None, None, None))
            for schedule in sorted({k[2] for k in acc if k[:2] == (task, opt)}, key=str):
                outs = sorted({k[3] for k in acc if k[:3] == (task, opt, schedule)})
                ins = sorted({k[4] for k in acc if k[:3] == (task, opt, schedule)})
                ref = f"; {base}: {cell_text(base_values)}" if base_values else ""
                print(f"  {opt}, gamma {schedule}{ref}")
                print("    " + "eta_out / eta_in".ljust(18) + "".join(f"{i:>10g}" for i in ins))
                for o in outs:
                    print(f"    {o:<18g}" + "".join(f"{cell_text(acc.get((task, opt, schedule, o, i), [])):>10s}"
                                                  for i in ins))


if __name__ == "__main__":
    main()
