"""The report's sections that audit the runs rather than compare rules: the claims and their
verdicts, which files of `runs/` count, problems (errors, damaged files) and provenance."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..results import FINISHED, Selection, cell_identity, printable
from .html import Markup, esc, join, section, table, tag
from .sections import DASH, fmt_count

# ---- problems and provenance --------------------------------------------------------------

def problems_section(frame: pd.DataFrame, malformed: Sequence[Any] = ()) -> Markup:
    """Errored and interrupted cells, and malformed run files: listed, never counted as results."""
    bad = frame[~frame["status"].isin(FINISHED)] if not frame.empty else frame
    if bad.empty and not malformed:
        return section("problems", "Errors and incomplete cells", tag("p", "None: every cell finished."))
    rows = [["malformed", "", "", "", "", f"{m.reason}; treated as incomplete (its cell reruns)",
             printable(m.path.name)] for m in malformed]
    for _, r in bad.iterrows():
        msg = str(r["message"] or "")
        if msg.strip():
            first = msg.strip().splitlines()[-1]  # a traceback's last line names the exception
        else:
            first = "interrupted (no final line)" if r["status"] == "incomplete" else ""
        detail = tag("details", join([tag("summary", first), tag("pre", msg)])) if "\n" in msg.strip() else first
        rows.append([r["status"], r["task"], r["variant"], r["seed"], fmt_count(r["updates"]), detail, r["file"]])
    note = tag("p", Markup("Incomplete cells were interrupted (a <code>.part</code> file) and are rerun by "
                           "the next <code>plasticity run</code>; errored cells are retried too. Neither "
                           "enters any table or figure above."), class_="note")
    return section("problems", "Errors and incomplete cells",
                   table(["status", "task", "variant", "seed", "last update", "message", "file"], rows,
                         numeric=[3, 4]), note)


def _distinct(values: list[Any]) -> str:
    """Distinct values with how many cells had each (one value: just the value)."""
    counts = Counter("" if v is None else str(v) for v in values)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{v or '(none)'} ×{n}" for v, n in counts.most_common())


def provenance_section(provenances: list[dict[str, Any]], suite: dict[str, Any]) -> Markup:
    """Git commit, versions, device, command of the cells, and the suite's TOML text."""
    keys = ["git_commit", "git_dirty", "python", "platform", "device", "device_name", "dtype", "command",
            "hostname"]
    rows = [[k, _distinct([p.get(k) for p in provenances])] for k in keys if any(k in p for p in provenances)]
    extra = sorted({k for p in provenances for k in p} - set(keys) - {"packages"})
    rows += [[k, _distinct([p.get(k) for p in provenances])] for k in extra]
    pkgs = sorted({name for p in provenances for name in (p.get("packages") or {})})
    pkg_rows = [[name, _distinct([(p.get("packages") or {}).get(name) for p in provenances])] for name in pkgs]
    parts: list[object] = [tag("p", f"Collected from the headers of {len(provenances)} cells; "
                                    "where cells differ, each value is listed with its count.", class_="note"),
                           table(["field", "value"], rows, class_="data kv") if rows
                           else tag("p", "The cells recorded no provenance.")]
    if pkg_rows:
        parts += [tag("h3", "Package versions"), table(["package", "version"], pkg_rows, class_="data kv")]
    if suite.get("toml"):
        parts += [tag("h3", f"Suite file {suite.get('source', '')}"), tag("pre", suite["toml"])]
    return section("provenance", "Provenance", *parts)


# ---- which files count --------------------------------------------------------------------

def membership_note(selection: Selection) -> Markup:
    """What the report counts: the suite's cells as `plasticity run` last expanded them; stale
    cells kept by `--keep-stale`; files in runs/ that are not part of the suite, and why."""
    parts: list[object] = []
    if not selection.has_manifest:
        parts.append(tag("p", "suite.json lists no cells (runs of an older version): every cell in runs/ "
                              "is counted, and a variant and seed found twice counts once (the newest)."))
    kept = selection.kept_stale
    if kept:
        rows = [[*cell_identity(p.record), ", ".join(p.stale), p.record.path.name] for p in kept]
        parts += [tag("p", f"{len(kept)} cells are stale, kept by plasticity run --keep-stale: they ran with "
                           "other code, versions or parameters than the suite has now (the fingerprint "
                           "parts named below differ). Their numbers are counted; rerun without "
                           "--keep-stale to replace them."),
                  table(["task", "variant", "seed", "changed", "file"], rows, numeric=[2])]
    outside = selection.outside
    if outside:
        reasons = Counter(p.reason for p in outside)
        items = [tag("li", f"{n} {'file' if n == 1 else 'files'}: {reason}") for reason, n in reasons.most_common()]
        files = tag("details", join([tag("summary", "files"),
                                     tag("pre", "\n".join(p.record.path.name for p in outside))]))
        parts += [tag("p", f"{len(outside)} {'file' if len(outside) == 1 else 'files'} in runs/ "
                           "not part of this suite, in no table, figure or mean:"),
                  tag("ul", join(items)), files]
    if selection.missing:
        parts.append(tag("p", f"{len(selection.missing)} cells of the suite have no results yet."))
    if not parts:
        return tag("p", f"Counted: the {len(selection.cells)} cells of the suite as last run, each with "
                        "the fingerprint (code, versions, parameters) the suite has now.", class_="note")
    return section("membership", "Cells counted", *parts)


# ---- claims -------------------------------------------------------------------------------

CLAIMS_NOTE = (
    "Each verdict is computed from the runs by plasticity.verdicts, never typed in: supported when the whole "
    "95 % Student-t interval over seeds (paired by seed for two rules) lies on the claim's side of its bound, "
    "not supported when it lies wholly on the other side, inconclusive otherwise; with one seed there is no "
    "interval and the seed's value decides (said beside it). A rule that ran as a grid is judged on its best "
    "variant on the metric (named in “measured”). Update counts “interpolated” are linear between the two "
    "evaluations around the crossing of the validation threshold; a seed that never crossed it is censored "
    "(its count only known to exceed its last evaluation), and then the claim is decided only when every "
    "seed lies surely on one side. Grid shares are judged by exact tests (Clopper-Pearson, one-sided Fisher at 5 %). "
    "A claim whose cells have not finished is “inconclusive (no runs)”.")
VERDICT_CLASS = {"supported": "complete", "not supported": "diverged", "inconclusive": "incomplete",
                 "unreadable": "error"}


def claims_section(suite: dict[str, Any], cells: Sequence[Any]) -> Markup:
    """The suite's claims with their verdicts, for the top of the report (nothing when it declares none)."""
    from ..verdicts import UNREADABLE, comparison_text, judge_all

    claims = suite.get("claims") or []
    if not isinstance(claims, list) or not claims:
        return Markup("")
    rows = []
    for v in judge_all(claims, cells):
        c = v.claim
        label = v.verdict + (" (no runs)" if v.basis.startswith("no runs") else "")
        verdict = Markup(f'<span class="pill {esc(VERDICT_CLASS[v.verdict])}">{esc(label)}</span><br>'
                         f'<span class="sub">{esc(v.basis)}</span>')
        claim = Markup(esc(str(c.get("claim", DASH)))
                       + (f'<br><span class="sub">{esc(str(c["note"]))}</span>' if c.get("note") else ""))
        task_params = c.get("task_params") if isinstance(c.get("task_params"), dict) else {}
        task = str(c.get("task", DASH)) + (" " + ", ".join(f"{k}={val}" for k, val in task_params.items())
                                           if task_params else "")
        supported_if = DASH if v.verdict == UNREADABLE else comparison_text(c)
        rows.append([claim, str(c.get("source", DASH)), task, supported_if, v.measured, verdict])
    headers = ["claim", "source", "task", "supported if", "measured", "verdict"]
    return section("claims", "Claims", table(headers, rows, class_="data claims"), tag("p", CLAIMS_NOTE, class_="note"))
