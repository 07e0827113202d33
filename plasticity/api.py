"""Run suites and build reports from Python (a notebook, a script): the steps of `plasticity run`
and `plasticity report`, which are a thin layer over these functions.

    import plasticity

    result = plasticity.run("quick")              # a name, a path to a TOML file, or a dict
    result.cells, result.evals                    # the frames of `plasticity.load_results` (read on first use)
    result.report                                 # the report's index.html
    plasticity.report("reports/quick")            # rebuild a report from its runs

Errors are `plasticity.PlasticityError` (and its `ConfigError`, `DataError`, `RegistryError`),
never `SystemExit`; Ctrl-C (or a notebook's interrupt) raises KeyboardInterrupt after the cells
in flight stopped, leaving the finished ones for the next run to skip. Progress bars are
`tqdm.auto`'s: widgets in Jupyter, text in a terminal.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import registry
from .errors import PlasticityError
from .suite import MAX_CELLS, Suite, load_suite, parse_suite

if TYPE_CHECKING:
    import pandas as pd


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class RunResult:
    """What `plasticity.run` did: the suite folder, its report, the counts, and (read on first use)
    the frames of `plasticity.load_results`."""
    suite: str
    out: Path
    #: index.html, or None when the report was not built (report=False, search_only=True)
    report: Path | None
    #: cells of the suite, those already complete before this run, and this run's outcomes by status
    total: int = 0
    skipped: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    #: cells another run finished while this one waited for them
    by_other_run: int = 0
    #: one line per cell that ended with an error (its file records the traceback)
    errors: list[str] = field(default_factory=list)
    _frames: tuple[pd.DataFrame, pd.DataFrame] | None = field(default=None, init=False, repr=False)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """`plasticity.load_results(out)`: (cells, evals), read from the suite folder once."""
        if self._frames is None:
            from .frames import load_results
            self._frames = load_results(self.out)
        return self._frames

    @property
    def cells(self) -> pd.DataFrame:
        """One row per cell file of the folder (`cells[cells.in_suite]`: the cells the report counts)."""
        return self.frames()[0]

    @property
    def evals(self) -> pd.DataFrame:
        """One row per evaluation of every cell file."""
        return self.frames()[1]

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.finished.items())) or "nothing run"
        return (f"RunResult(suite={self.suite!r}, out={str(self.out)!r}, {self.total} cells: {self.skipped} "
                f"already complete, {counts}; report={str(self.report) if self.report else None!r})")


def load(suite: str | Path | Mapping[str, Any] | Suite, plugins: Iterable[str | Path] = (),
         max_cells: int = MAX_CELLS) -> Suite:
    """A suite, validated and expanded: by name (`./suites/NAME.toml`, else a built-in suite), from
    a TOML file, or from a dict written as a suite file would be (`{"tasks": [{"name": "digits"}], ...}`)."""
    if isinstance(suite, Suite):
        return suite
    if max_cells < 1:
        raise PlasticityError(f"max_cells (--max-cells) must be at least 1, got {max_cells}")
    dirs = [Path(p).resolve() for p in plugins]
    registry.load_plugins(dirs)
    if isinstance(suite, Mapping):
        from .toml_text import dumps
        return parse_suite(dumps(suite), None, dirs, max_cells=max_cells)
    if not isinstance(suite, str | Path):
        raise PlasticityError(f"suite: expected a name, a path to a TOML file or a dict, got {type(suite).__name__}")
    return load_suite(suite, dirs, max_cells=max_cells)


def default_out(suite: Suite) -> Path:
    """Where a suite's results go unless told: `reports/<suite name>` in the current folder."""
    return Path("reports") / suite.name


def run(suite: str | Path | Mapping[str, Any] | Suite, out: str | Path | None = None, jobs: int | None = 1,
        device: str = "auto", *, data_dir: str | Path | None = None, plugins: Iterable[str | Path] = (),
        report: bool = True, progress: bool = True, keep_stale: bool = False, max_cells: int = MAX_CELLS,
        executor: str | None = None, ray_address: str | None = None, cells_per_gpu: int | None = None,
        slurm: Mapping[str, Any] | None = None, storage: str | None = None, search_only: bool = False,
        log: Callable[[str], None] = _stderr) -> RunResult:
    """Run a suite (skipping complete cells), build its report, and return its results.

    `suite`: a name, a path to a TOML file, or a dict (see `load`). `out`: the suite folder
    (default `reports/<suite name>`). `jobs`: cells at once (local worker processes, or Ray or
    Slurm tasks; None: the executor's default). `device`: auto, cpu, cuda or cuda:N. The keywords
    are `plasticity run`'s options: `data_dir`, `plugins` (extra plugin folders), `report`
    (False: only run), `progress`, `keep_stale`, `max_cells`, `executor` ("local", "ray",
    "slurm") with `ray_address`, `cells_per_gpu` and `slurm` (settings of `[execution.slurm]`),
    `storage` and `search_only` for suites with a `[search]` table. `log` receives the
    one-line messages (default: standard error).
    """
    from .engine import resolve_device
    from .executors import EXECUTORS, check_device_name
    from .runner import check_data_dir, check_out_folder, run_suite

    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise PlasticityError(f"jobs (--jobs) must be a whole number of at least 1, got {jobs!r}")
    if executor is not None and executor not in EXECUTORS:
        raise PlasticityError(f"executor (--executor) must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    suite = load(suite, plugins, max_cells)
    _check_executor_options(executor or suite.execution.executor, ray_address, cells_per_gpu, slurm)
    execution = suite.execution.with_overrides(executor, ray_address, cells_per_gpu, dict(slurm or {}))
    if execution.executor == "local":
        resolve_device(device)  # a bad device stops here, before anything reads as started
    else:
        check_device_name(device)  # a remote cell resolves it where it runs
    out = Path(out) if out is not None else default_out(suite)
    data_dir = Path(data_dir) if data_dir is not None else None
    if suite.search is None and (storage or search_only):
        raise PlasticityError(f"storage (--storage) and search_only (--search-only) apply to suites with a "
                              f"[search] table; suite {suite.name} has none")
    # Refused here, before a search writes its study into the folder (run_suite checks again).
    check_out_folder(out, suite.name)
    if execution.executor != "ray":  # Ray nodes read their own disks, not this one
        check_data_dir(data_dir)
    where = "" if execution.executor == "local" else f" on {execution.executor}"
    if suite.search is not None:
        from .search import final_suite, run_search
        remote = execution.executor != "local"
        if remote:
            log(f"search {suite.name}: trials{where}, the study in {storage or 'sqlite under ' + str(out)} "
                f"(every node must reach it)")
        searched = run_search(suite, out, storage, device if remote else resolve_device(device), jobs, data_dir,
                              progress=progress, execution=execution)
        if search_only:
            log(f"search: {out / 'search' / 'search.json'}")
            return RunResult(suite.name, out, None)
        suite = final_suite(suite, searched)
    log(f"suite {suite.name}: {len(suite.cells)} cells{where} -> {out}")
    summary = run_suite(suite, out, device, jobs, data_dir, progress=progress, keep_stale=keep_stale,
                        execution=execution)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.finished.items())) or "nothing to run"
    if summary.by_other_run:
        counts += f" ({summary.by_other_run} of them finished by another run)"
    log(f"{summary.total} cells: {summary.skipped} already complete, {counts}")
    for err in summary.errors:
        log(f"  error: {err}")
    html = None
    if report:
        try:
            html = build(out)
        except PlasticityError as exc:
            raise PlasticityError(f"the run finished but its report failed: {exc}; the cells are kept in "
                                  f"{out / 'runs'}: fix that and rebuild the report with `plasticity report "
                                  f"{out}`") from None
    return RunResult(suite.name, out, html, summary.total, summary.skipped, dict(summary.finished),
                     summary.by_other_run, list(summary.errors))


#: the options that only some executors read: (name in Python, flag of `plasticity run`, executors that read it)
EXECUTOR_OPTIONS = (("ray_address", "--ray-address", ("ray",)), ("slurm", "--slurm", ("slurm",)),
                    ("cells_per_gpu", "--cells-per-gpu", ("ray", "slurm")))


def _check_executor_options(executor: str, ray_address: str | None, cells_per_gpu: int | None,
                            slurm: Mapping[str, Any] | None) -> None:
    """Refuse an option of another executor than the one that runs: whoever gave it expected that
    executor, and the run would silently go elsewhere without it."""
    given = {"ray_address": ray_address, "slurm": slurm, "cells_per_gpu": cells_per_gpu}
    for name, flag, readers in EXECUTOR_OPTIONS:
        if given[name] in (None, {}) or executor in readers:
            continue
        choices = " or ".join(f"executor={r!r}" for r in readers)
        raise PlasticityError(f"{name} ({flag}) applies to {choices}, but this run uses the {executor} executor")


def build(folder: str | Path) -> Path:
    """Write a suite folder's `index.html` and `results.csv` from its runs; return the HTML file."""
    from .report import build_report
    folder = Path(folder)
    if not (folder / "runs").is_dir():
        raise PlasticityError(f"{folder} has no runs/ folder: give the output folder of `plasticity run`, "
                              f"e.g. reports/quick")
    return build_report(folder)
