"""The HTML report and CSV export of a suite folder (`plasticity report DIR`).

`build_report(suite_dir)` reads `suite.json` and `runs/*.jsonl` and writes `index.html` (one
self-contained file: figures embedded, no scripts, no network) and `results.csv`.

This package is also callable: `plasticity.report(folder)` checks that `folder` holds runs,
builds its report and returns the path of `index.html` (`plasticity.api.build`).
"""
import sys
import types
from pathlib import Path

from .build import build_report, render_report
from .dataframes import write_results_csv

__all__ = ["build_report", "render_report", "write_results_csv"]


class _CallableModule(types.ModuleType):
    """`plasticity.report` is both this package and the function that builds a report: importing
    the package sets the attribute `report` of `plasticity` to it, so it had better be callable."""

    def __call__(self, folder: str | Path) -> Path:
        from ..api import build
        return build(folder)


sys.modules[__name__].__class__ = _CallableModule
