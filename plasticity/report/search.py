"""The report's search section, from `<suite>/search/search.json` (written by plasticity.search.study).

Per task: best-so-far objective against trial number with every rule on one axis (equal budgets
show as equal line lengths), the objective against each searched parameter per rule, and a table
of best configurations with trial counts (complete, pruned, failed), parameter importances and
the search's compute (updates, training seconds).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from .drawing import PALETTE, count_label, log_axis, new_figure, plot_style, to_svg
from .html import Markup, figure, join, section, table, tag

OBJECTIVE_TEXT = {"val_accuracy": "final validation accuracy (%)", "val_auc": "mean validation accuracy over "
                  "updates (%, the area under the curve)", "updates_to_threshold": "updates to the threshold"}


def read_search(suite_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(suite_dir) / "search" / "search.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("studies"), list) else None


def _scale(spec: dict[str, Any], value: float | None) -> float:
    if value is None or not math.isfinite(value):
        return math.nan
    return value * 100 if spec.get("objective") in ("val_accuracy", "val_auc") else value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def best_so_far(trials: list[dict[str, Any]], direction: str) -> list[tuple[int, float]]:
    """(trial number, best complete value up to it) over the trials in order of number."""
    out, best = [], None
    for t in sorted(trials, key=lambda t: t["number"]):
        v = t.get("value") if t.get("state") == "COMPLETE" else None
        if v is not None and (best is None or (v > best if direction == "maximize" else v < best)):
            best = v
        out.append((t["number"] + 1, best if best is not None else math.nan))
    return out


def best_so_far_figure(studies: list[dict[str, Any]], spec: dict[str, Any]) -> Markup | None:
    if not any(s["trials"] for s in studies):
        return None
    with plot_style():
        fig = new_figure(6.4, 3.4)
        ax = fig.add_subplot()
        for i, s in enumerate(studies):
            pts = best_so_far(s["trials"], spec.get("direction", "maximize"))
            if not pts:
                continue
            x, y = zip(*pts)
            ax.step(x, [_scale(spec, v) for v in y], where="post", color=PALETTE[i % len(PALETTE)],
                    label=s["rule"], lw=1.6)
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("best so far: " + OBJECTIVE_TEXT.get(spec.get("objective"), "objective"))
        if spec.get("objective") == "updates_to_threshold":
            log_axis(ax, "y", count_label)
        ax.legend(loc="best", frameon=False)
        return to_svg(fig)


def sensitivity_figure(study: dict[str, Any], spec: dict[str, Any], color: str) -> Markup | None:
    """The objective of every complete trial against each searched parameter (pruned trials as x)."""
    trials = [t for t in study["trials"] if t.get("state") in ("COMPLETE", "PRUNED")]
    names = sorted({n for t in trials for n in t.get("params", {})})
    if not trials or not names:
        return None
    spaces = (spec.get("spaces") or {}).get(study["rule"]) or {}
    with plot_style():
        fig = new_figure(min(2.6 * len(names), 10.4), 2.6)
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names):
            for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
                pts = [(t["params"][name], _scale(spec, t.get("value"))) for t in trials
                       if t.get("state") == state and name in t["params"]]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
                    ax.scatter(xs, ys, marker=marker, color=color if state == "COMPLETE" else "0.55", s=16,
                               label=state.lower())
                else:  # a choice: one column per value
                    cats = sorted({str(x) for t in trials for x in [t["params"].get(name)] if x is not None})
                    ax.scatter([cats.index(str(x)) for x in xs], ys, marker=marker, s=16,
                               color=color if state == "COMPLETE" else "0.55", label=state.lower())
                    ax.set_xticks(range(len(cats)), cats)
            bounds = re.match(r"(log|uniform|int) \[(\S+), (\S+)\]", str(spaces.get(name, "")))
            if bounds:  # the whole searched range, so that the reader sees where trials fell in it
                low, high = float(bounds.group(2)), float(bounds.group(3))
                if bounds.group(1) == "log":
                    log_axis(ax, "x")
                    ax.set_xlim(low / 1.2, high * 1.2)
                else:
                    pad = (high - low) * 0.05
                    ax.set_xlim(low - pad, high + pad)
            ax.set_xlabel(name)
        axes[0].set_ylabel(OBJECTIVE_TEXT.get(spec.get("objective"), "objective").split(" (")[0])
        return to_svg(fig)


def _counts(trials: list[dict[str, Any]]) -> dict[str, int]:
    out = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    for t in trials:
        out[t.get("state", "?")] = out.get(t.get("state", "?"), 0) + 1
    return out


def _sum(trials: list[dict[str, Any]], key: str) -> float:
    return float(sum(t.get(key) or 0 for t in trials if not t.get("reused")))


def best_table(studies: list[dict[str, Any]], spec: dict[str, Any]) -> Markup:
    rows = []
    for s in studies:
        c = _counts(s["trials"])
        best = s.get("best") or {}
        params = ", ".join(f"{k.split('.', 1)[1]}={_fmt(v)}" for k, v in (best.get("params") or {}).items())
        imp = s.get("importance") or {}
        imp_text = ", ".join(f"{k.split('.', 1)[1]} {v:.0%}" for k, v in imp.items()) or "—"
        value = _scale(spec, best.get("value"))
        rows.append([s["rule"], f"{c['COMPLETE']} / {c['PRUNED']} / {c['FAIL']}" + (f" (+{c['RUNNING']} running)"
                                                                                   if c["RUNNING"] else ""),
                     "—" if math.isnan(value) else f"{value:,.2f}", params or "—", imp_text,
                     f"{_sum(s['trials'], 'updates'):,.0f}", f"{_sum(s['trials'], 'train_seconds'):,.1f}"])
    return table(["rule", "trials: complete / pruned / failed", "best", "best configuration",
                  "importance (fANOVA)", "updates (all trials)", "training s (all trials)"], rows,
                 numeric=[2, 5, 6])


def pruning_saved(studies: list[dict[str, Any]]) -> float | None:
    """Share of the trials' full budgets (updates) that pruning did not spend: a study's full budget
    is the updates of its longest complete trial; None when no study has a complete trial."""
    full_total, saved = 0.0, 0.0
    for s in studies:
        ran = [t for t in s["trials"] if not t.get("reused") and t.get("updates") is not None]
        full = max((t["updates"] for t in ran if t.get("state") == "COMPLETE"), default=None)
        if not full:
            continue
        counted = [t for t in ran if t.get("state") in ("COMPLETE", "PRUNED")]
        full_total += full * len(counted)
        saved += sum(full - t["updates"] for t in counted if t.get("state") == "PRUNED")
    return saved / full_total if full_total else None


def last_command_overhead(data: dict[str, Any]) -> tuple[float, int, float, int] | None:
    """(wall seconds, processes, Σ training seconds, trials) of the trials the last search command
    ran itself (started within its wall time, not reused): wall × processes ÷ Σ training seconds is
    what the search cost beyond training. None before a command has finished."""
    from datetime import datetime, timedelta

    wall, jobs, written = data.get("last_wall_seconds"), data.get("last_jobs") or 1, data.get("written")
    if not wall or not written:
        return None
    since = datetime.fromisoformat(written) - timedelta(seconds=wall + 1)
    trials = [t for s in data["studies"] for t in s["trials"]
              if t.get("started") and not t.get("reused") and t.get("train_seconds")
              and datetime.fromisoformat(t["started"]).replace(tzinfo=since.tzinfo) >= since]
    train = sum(t["train_seconds"] for t in trials)
    return (wall, jobs, train, len(trials)) if train else None


def search_note(spec: dict[str, Any], data: dict[str, Any]) -> Markup:
    trials = spec.get("trials") or {}
    if spec.get("equal_trials", True):
        budget_text = f"{spec.get('default_trials')} trials for every rule (an equal budget)"
    else:
        budget_text = ("trials differ by rule, as the suite asks: "
                       + ", ".join(f"{r} {n}" for r, n in trials.items()) + " — rules are NOT compared at "
                       "an equal search budget")
    budget = ", ".join(f"{k} {v:g}" for k, v in (spec.get("budget") or {}).items() if v is not None)
    parts = [
        f"Objective: {OBJECTIVE_TEXT.get(spec.get('objective'), spec.get('objective'))}"
        + (f" (threshold {spec['threshold']:g})" if spec.get("threshold") is not None else "")
        + f", {spec.get('direction')}d. {budget_text}.",
        f"Per trial: {budget}, seed {spec.get('trial_seed')}; sampler {spec.get('sampler')}, pruner "
        f"{spec.get('pruner')} (from {spec.get('prune_after', 0):.0%} of the trial budget on).",
        f"The best configuration of each rule then ran on the fresh seeds {spec.get('final_seeds')} with the "
        f"suite's budget: those are the cells of the tables above. Only validation data enters the search; "
        f"test accuracy is never read by it.",
        f"Study storage: {data.get('storage')}.",
    ]
    cost = last_command_overhead(data)
    if cost is not None:
        wall, jobs, train, n = cost
        parts.append(f"The last search command ran {n} trials in {wall:,.0f} s of wall time with {jobs} process"
                     f"{'es' if jobs > 1 else ''}; its trials trained for {train:,.0f} s in all, so the search "
                     f"cost {wall * jobs / train:.2f} × its training time (wall × processes ÷ training seconds: "
                     f"start-up, evaluation, the study's bookkeeping).")
    saved = pruning_saved(data["studies"])
    if saved is not None:
        parts.append(f"Pruning saved {saved:.0%} of the updates the pruned and complete trials would have run "
                     f"at full budget.")
    return join(tag("p", p, class_="note") for p in parts)


def search_section(suite_dir: Path) -> Markup:
    """The whole search section, or nothing for a suite without a search."""
    data = read_search(suite_dir)
    if data is None:
        return Markup("")
    spec = data.get("spec") or {}
    body: list[Any] = [search_note(spec, data)]
    tasks = list(dict.fromkeys(s["task"] for s in data["studies"]))
    for task in tasks:
        studies = [s for s in data["studies"] if s["task"] == task]
        body.append(tag("h3", f"Task: {task}"))
        body.append(figure(best_so_far_figure(studies, spec), f"best so far against trials, {task}",
                           "Best objective so far against trial number, every rule on one axis."))
        body.append(best_table(studies, spec))
        for i, s in enumerate(studies):
            body.append(figure(sensitivity_figure(s, spec, PALETTE[i % len(PALETTE)]),
                               f"objective against parameters, {s['rule']}",
                               f"{s['rule']}: objective of each trial against each searched parameter "
                               f"(o complete, x pruned at its last report)."))
    return section("search", "Hyperparameter search", join(body))

