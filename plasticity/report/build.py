"""Build `reports/<suite>/index.html` and `results.csv` from the suite folder's runs alone."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import PlasticityError
from ..results import CellRecord, Selection, read_suite_json, select_cells
from . import audit, drawing, sections
from .dataframes import write_results_csv
from .html import join, page, section, tag
from .search import search_section
from .tables import cells_frame, curves_frame, per_layer_frame, variant_order


def read_suite_meta(suite_dir: Path) -> dict[str, Any]:
    """`suite.json` of the folder, or a stand-in named after the folder when it is missing or
    damaged (a damaged one is named in a warning)."""
    meta = read_suite_json(suite_dir) or {}
    meta.setdefault("name", Path(suite_dir).resolve().name)
    return meta


def render_report(suite_dir: Path, cells: list[CellRecord] | None = None,
                  selection: Selection | None = None) -> str:
    """The report's HTML text for a suite folder (nothing written); `cells` if already loaded
    (else the cells of the suite as `select_cells` places them)."""
    suite = read_suite_meta(suite_dir)
    if cells is None:
        selection = select_cells(suite_dir) if selection is None else selection
        cells = selection.cells
    frame = cells_frame(cells)
    order = variant_order(frame)
    styles = drawing.variant_styles(order)  # one look per variant across tasks and figures
    tasks = list(dict.fromkeys(frame["task"])) if not frame.empty else []
    curves = curves_frame(cells)
    feedback = per_layer_frame(cells, "feedback")
    diagnostics = per_layer_frame(cells, "diagnostics")
    # The claims come first: what the suite set out to test, and what its runs say.
    body = [sections.header(suite, frame, tasks), audit.claims_section(suite, cells),
            sections.variant_legend(order, styles)]
    if selection is not None:
        body.append(audit.membership_note(selection))
    if not tasks:
        body.append(section("empty", "No results yet", tag("p", "The runs folder holds no cells.")))
    for i, task in enumerate(tasks):
        body.append(sections.task_section(
            i, task, frame[frame["task"] == task], curves[curves["task"] == task],
            feedback, diagnostics, order, styles, suite))
    body.append(search_section(suite_dir))
    body.append(audit.problems_section(frame, selection.malformed if selection is not None else []))
    body.append(audit.provenance_section([c.header.get("provenance") or {} for c in cells], suite))
    return page(f"plasticity report: {suite['name']}", join(body))


def build_report(suite_dir: Path) -> Path:
    """Write `index.html` (self-contained, offline) and `results.csv` into the suite folder;
    return the path of the HTML file."""
    suite_dir = Path(suite_dir)
    selection = select_cells(suite_dir)
    csv_path, html_path = suite_dir / "results.csv", suite_dir / "index.html"
    with _writing(csv_path, csv_path.with_suffix(".csv.tmp")):
        write_results_csv(selection, csv_path)
    text = render_report(suite_dir, selection=selection)
    tmp = html_path.with_suffix(".html.tmp")
    with _writing(html_path, tmp):
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, html_path)  # a reader never sees half a report
    return html_path


@contextlib.contextmanager
def _writing(target: Path, tmp: Path) -> Iterator[None]:
    """Turn a failed write of `target` through `tmp` into an error naming `target` (the file the
    user knows; the temporary one is a detail), leaving no half-written temporary file behind."""
    try:
        yield
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise PlasticityError(f"cannot write {target}: {exc.strerror or exc}") from None
