"""Command line: `plasticity run | report | list | check`."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from . import registry
from .errors import PlasticityError
from .params import describe

KIND_WORDS = {"rules": "rule", "tasks": "task", "optimizers": "optimizer"}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugins", action="append", default=[], metavar="DIR",
                   help="extra plugin folder with rule/task files (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plasticity", description="Benchmark biologically-plausible learning rules.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite (skipping complete cells) and write its report")
    run.add_argument("suite", nargs="?", default="quick", help="suite name in suites/ or path to a TOML file (default: quick)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    run.add_argument("--jobs", type=int, default=1, help="worker processes running cells in parallel (default: 1)")
    run.add_argument("--data-dir", type=Path, default=None, help="data folder (default: $PLASTICITY_DATA or ~/.cache/plasticity)")
    run.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<suite name>)")
    run.add_argument("--no-report", action="store_true", help="only run; build the report later with `plasticity report`")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_common(run)

    rep = sub.add_parser("report", help="rebuild index.html and results.csv of a suite folder from its runs")
    rep.add_argument("dir", type=Path, help="suite output folder, e.g. reports/quick")

    lst = sub.add_parser("list", help="show registered rules, tasks and optimizers with their parameters")
    lst.add_argument("kind", nargs="?", choices=sorted(KIND_WORDS), help="only this kind")
    _add_common(lst)

    chk = sub.add_parser("check", help="run the conformance checks on one rule")
    chk.add_argument("rule", help="registered rule name")
    _add_common(chk)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    registry.load_plugins(args.plugins)
    kinds = [args.kind] if args.kind else ["rules", "tasks", "optimizers"]
    for kind in kinds:
        print(f"{kind}:")
        for entry in registry.entries(KIND_WORDS[kind]):
            print(f"  {entry.name:<16} {entry.summary}")
            extra = ""
            if kind == "rules":
                obj = entry.obj
                extra = "  optimizer: none (closed-form)" if not obj.uses_optimizer else \
                    f"  default optimizer: {obj.default_optimizer[0]} {obj.default_optimizer[1]}"
            if kind == "tasks":
                extra = f"  thresholds: {', '.join(f'{t:g}' for t in entry.obj.thresholds)}; budget: {entry.obj.budget}"
            for name, tp, default in describe(entry.obj.Params):
                print(f"      {name} = {default!r}  ({tp})")
            if extra:
                print(f"    {extra.strip()}")
        print()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_suite
    from .suite import load_suite

    if args.jobs < 1:
        raise PlasticityError(f"--jobs must be at least 1, got {args.jobs}")
    registry.load_plugins(args.plugins)
    suite = load_suite(args.suite, [Path(p).resolve() for p in args.plugins])
    out = args.out or Path("reports") / suite.name
    print(f"suite {suite.name}: {len(suite.cells)} cells -> {out}", file=sys.stderr)
    try:
        summary = run_suite(suite, out, args.device, args.jobs, args.data_dir, progress=not args.no_progress)
    except KeyboardInterrupt as exc:
        # Ctrl-C, SIGTERM and SIGHUP alike: workers stopped, only .part files left; exit 128 + signal
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"\ninterrupted by {signal.Signals(signum).name}: finished cells are kept in {out / 'runs'}; "
              f"run the same command again to resume", file=sys.stderr)
        return 128 + signum
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.finished.items())) or "nothing to run"
    if summary.by_other_run:
        counts += f" ({summary.by_other_run} of them finished by another run)"
    print(f"{summary.total} cells: {summary.skipped} already complete, {counts}", file=sys.stderr)
    for err in summary.errors:
        print(f"  error: {err}", file=sys.stderr)
    if not args.no_report:
        from .report import build_report
        html = build_report(out)
        print(f"report: {html.resolve()}")
    return 1 if summary.errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report
    if not (args.dir / "runs").is_dir():
        raise PlasticityError(f"{args.dir} has no runs/ folder: give the output folder of `plasticity run`, "
                              f"e.g. reports/quick")
    print(f"report: {build_report(args.dir).resolve()}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .testing import check_rule
    registry.load_plugins(args.plugins)
    results = check_rule(args.rule)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name}: {r.detail}")
    failed = [r for r in results if not r.passed]
    print(f"rule '{args.rule}': {len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "report": cmd_report, "list": cmd_list, "check": cmd_check}[args.command]
    try:
        return handler(args)
    except PlasticityError as exc:
        print(f"plasticity: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and closed early: stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
