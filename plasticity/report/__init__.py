"""The HTML report and CSV export of a suite folder (`plasticity report DIR`).

`build_report(suite_dir)` reads `suite.json` and `runs/*.jsonl` and writes `index.html` (one
self-contained file: figures embedded, no scripts, no network) and `results.csv`.
"""
from .build import build_report, render_report
from .dataframes import write_results_csv

__all__ = ["build_report", "render_report", "write_results_csv"]
