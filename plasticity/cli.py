"""Command line: `plasticity run | report | list | check`."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

from . import __version__, registry
from .errors import PlasticityError
from .execution import EXECUTORS, parse_slurm_option
from .params import describe

KIND_WORDS = {"rules": "rule", "tasks": "task", "optimizers": "optimizer"}
LIST_KINDS = (*KIND_WORDS, "suites")


def _list_kind(word: str) -> str:
    """`list rule` means `list rules` (and so for every kind)."""
    return word if word in LIST_KINDS or f"{word}s" not in LIST_KINDS else f"{word}s"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugins", action="append", default=[], metavar="DIR",
                   help="extra plugin folder with rule/task files (repeatable)")


def _slurm_option(text: str) -> dict:
    try:
        return parse_slurm_option(text)
    except PlasticityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plasticity", description="Benchmark biologically-plausible learning rules.")
    parser.add_argument("--version", action="version",
                        version=f"plasticity {__version__} ({Path(__file__).resolve().parent})")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite (skipping complete cells) and write its report")
    run.add_argument("suite", nargs="?", default="quick",
                     help="path to a TOML file, or a suite name: ./suites/NAME.toml, else a built-in suite "
                          "(`plasticity list suites`; default: quick)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    run.add_argument("--jobs", type=int, default=None,
                     help="cells running at once: local worker processes (default: 1), or Ray tasks or Slurm tasks "
                          "(default: as many as the cluster takes)")
    run.add_argument("--data-dir", type=Path, default=None,
                     help="data folder (default: $PLASTICITY_DATA or ~/.cache/plasticity)")
    run.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<suite name>)")
    run.add_argument("--no-report", action="store_true",
                     help="only run; build the report later with `plasticity report`")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--max-cells", type=int, default=None, metavar="N",
                     help="refuse a suite that expands to more than N cells (default: 10000)")
    run.add_argument("--keep-stale", action="store_true",
                     help="keep finished cells whose fingerprint (code, versions) changed instead of rerunning "
                          "them; the report marks them stale")
    run.add_argument("--storage", default=None, metavar="URL",
                     help="suites with [search]: the Optuna storage (default: sqlite under <out>/search/): "
                          "sqlite:///path, postgresql://..., mysql://... or journal:PATH (a shared file system)")
    run.add_argument("--search-only", action="store_true",
                     help="suites with [search]: run the search and stop before the final stage")
    ex = run.add_argument_group("where the cells run (overrides the suite's [execution] table)")
    ex.add_argument("--executor", choices=EXECUTORS, default=None,
                    help="local worker processes (default), a Ray cluster, or Slurm job arrays through submitit")
    ex.add_argument("--ray-address", default=None, metavar="ADDRESS",
                    help="Ray cluster to connect to (default: $RAY_ADDRESS, else a local Ray is started)")
    ex.add_argument("--cells-per-gpu", type=int, default=None, metavar="N",
                    help="pack N cells onto each GPU, each in its own process (Ray, Slurm)")
    ex.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE", type=_slurm_option,
                    help="a Slurm setting of [execution.slurm], e.g. partition=gpu, time=120 (minutes), cpus=4, "
                         "gpus=1, mem=16G, array_parallelism=64, backend=local (repeatable)")
    _add_common(run)

    rep = sub.add_parser("report", help="rebuild index.html and results.csv of a suite folder from its runs")
    rep.add_argument("dir", type=Path, help="suite output folder, e.g. reports/quick")

    lst = sub.add_parser("list", help="show registered rules, tasks and optimizers with their parameters, "
                                      "and the suites")
    lst.add_argument("kind", nargs="?", type=_list_kind, choices=LIST_KINDS,
                     help="only this kind (singular or plural: rule, rules, ...)")
    _add_common(lst)

    chk = sub.add_parser("check", help="run the conformance checks on one rule")
    chk.add_argument("rule", help="registered rule name")
    _add_common(chk)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    registry.load_plugins(args.plugins)
    kinds = [args.kind] if args.kind else list(LIST_KINDS)
    width = max(60, shutil.get_terminal_size().columns - 1)
    for kind in kinds:
        if kind == "suites":
            _list_suites(width, [Path(p).resolve() for p in args.plugins])
            continue
        print(f"{kind}:")
        for entry in registry.entries(KIND_WORDS[kind]):
            print(textwrap.fill(entry.summary, width, initial_indent=f"  {entry.name:<16} ",
                                subsequent_indent=" " * 19, break_on_hyphens=False))
            if entry.aliases:
                print(f"    also accepted under its old name{'s' if len(entry.aliases) > 1 else ''}: "
                      f"{', '.join(entry.aliases)}")
            _print_params(entry.obj.Params, width)
            if kind == "rules":
                obj = entry.obj
                print("    optimizer: none (closed-form)" if not obj.uses_optimizer else
                      f"    default optimizer: {obj.default_optimizer[0]} {obj.default_optimizer[1]}")
                types = obj.layer_types
                print("    layers: any model (autograd)" if types is None else
                      f"    layers: {', '.join(t.__name__ for t in types)}"
                      + (" (with pooling, batch norm, residual sums between them)" if len(types) > 1 else " (MLP)"))
            if kind == "tasks":
                print(f"    thresholds: {', '.join(f'{t:g}' for t in entry.obj.thresholds)}; "
                      f"budget: {entry.obj.budget}")
        print()
    return 0


def _print_params(params_cls: type, width: int) -> None:
    """One line per parameter: `name = default`, its description, its type (descriptions wrap)."""
    rows = [(f"{p.name} = {p.default!r}", f"{p.help} ({p.type})" if p.help else f"({p.type})")
            for p in describe(params_cls)]
    col = min(max((len(left) for left, _ in rows), default=0), 30)
    for left, right in rows:
        indent = " " * (6 + col + 2)
        print(textwrap.fill(right, width, initial_indent=f"      {left:<{col}}  ", subsequent_indent=indent,
                            break_on_hyphens=False) if len(left) <= col else
              f"      {left}\n" + textwrap.fill(right, width, initial_indent=indent, subsequent_indent=indent))


def _list_suites(width: int, plugins: list[Path]) -> None:
    """Each suite found by name (a local `suites/` folder, then the built-in ones) with where it comes
    from, its cell count and description; one that does not load shows its error on its line, and
    the listing goes on."""
    from .catalog import BUILTIN_SUITES, LOCAL, local_dir, suite_files
    from .suite import load_suite

    local = local_dir()
    print("suites (run one with `plasticity run NAME`):")
    print(f"  built-in: {BUILTIN_SUITES}")
    if local is not None:
        print(f"  local:    {local} (a local suite wins over a built-in one of the same name)")
    for found in suite_files():
        lead = f"  {found.name:<24} {found.origin:<8} "
        if found.overrides is not None:
            note = "[runs instead of the built-in one] "
        elif found.overridden_by is not None:
            note = f"[not run by name: the {LOCAL} {found.name} runs instead] "
        else:
            note = ""
        try:
            suite = load_suite(found.path, plugins)
        except Exception as exc:  # noqa: BLE001  a broken suite must not hide the others
            message = " ".join(str(exc).split()) or type(exc).__name__
            if not isinstance(exc, PlasticityError):
                message = f"{type(exc).__name__}: {message}"
            if len(message) > 2 * width:
                message = message[:2 * width - 1] + "…"
            print(textwrap.fill(f"{note}cannot be loaded: {message}", width, initial_indent=lead,
                                subsequent_indent=" " * len(lead)))
            continue
        cells = len({c.cell_id for c in suite.cells})
        text = f"{cells:>4} cells  {note}{suite.description or '(no description)'}"
        print(textwrap.fill(text, width, initial_indent=lead, subsequent_indent=" " * (len(lead) + 12),
                            break_on_hyphens=False))
    print()


def cmd_run(args: argparse.Namespace) -> int:
    from . import api
    from .suite import MAX_CELLS

    if args.jobs is not None and args.jobs < 1:
        raise PlasticityError(f"--jobs must be at least 1, got {args.jobs}")
    max_cells = MAX_CELLS if args.max_cells is None else args.max_cells
    if max_cells < 1:
        raise PlasticityError(f"--max-cells must be at least 1, got {max_cells}")
    suite = api.load(args.suite, args.plugins, max_cells=max_cells)
    _check_executor_flags(args, suite.execution.executor)
    out = args.out or api.default_out(suite)
    try:
        result = api.run(suite, out, args.jobs, args.device, data_dir=args.data_dir, plugins=args.plugins,
                         report=not args.no_report, progress=not args.no_progress, keep_stale=args.keep_stale,
                         executor=args.executor, ray_address=args.ray_address, cells_per_gpu=args.cells_per_gpu,
                         slurm={k: v for option in args.slurm for k, v in option.items()}, storage=args.storage,
                         search_only=args.search_only)
    except KeyboardInterrupt as exc:
        # Ctrl-C, SIGTERM and SIGHUP alike: workers stopped, only .part files left; exit 128 + signal
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"\ninterrupted by {signal.Signals(signum).name}: finished cells are kept in {out / 'runs'}; "
              f"run the same command again to resume", file=sys.stderr)
        return 128 + signum
    if result.report is not None:
        print(f"report: {result.report.resolve()}")
    return 1 if result.errors else 0


#: the flags that only one kind of executor reads, and the executors that read each
EXECUTOR_FLAGS = {"ray_address": ("--ray-address", ("ray",)), "slurm": ("--slurm", ("slurm",)),
                  "cells_per_gpu": ("--cells-per-gpu", ("ray", "slurm"))}


def _check_executor_flags(args: argparse.Namespace, suite_executor: str) -> None:
    """Refuse a flag of another executor than the one that runs: whoever typed it expected that
    executor, and the run would silently go elsewhere without it."""
    executor = args.executor or suite_executor
    source = ("--executor" if args.executor else "the suite's [execution] table" if suite_executor != "local"
              else "the default")
    for attr, (flag, readers) in EXECUTOR_FLAGS.items():
        if getattr(args, attr) in (None, []) or executor in readers:
            continue
        choices = " or ".join(f"--executor {r}" for r in readers)
        raise PlasticityError(f"{flag} applies to {choices}, but this run uses the {executor} executor "
                              f"({source}): add {choices}, or drop {flag}")


def cmd_report(args: argparse.Namespace) -> int:
    from .api import build
    print(f"report: {build(args.dir).resolve()}")
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
    except OSError as exc:
        # A folder given on the command line that is a file, unwritable, or on a full disk: the
        # operating system's reason and the path, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"plasticity: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
