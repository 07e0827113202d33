"""Claims: validated against the suite's cells, and each verdict computed from (synthetic) runs."""
from __future__ import annotations

import json
import math
import re
from html import unescape
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from plasticity.errors import ConfigError
from plasticity.report import render_report
from plasticity.results import CellRecord
from plasticity.suite import load_suite, parse_suite
from plasticity.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, judge
from plasticity.writer import CellWriter, write_json

SUITE = '''seeds = [0, 1, 2]
[[tasks]]
name = "digits"
[[rules]]
name = "bp"
[[rules]]
name = "fa"
[[rules]]
name = "rf"
grid = { derivative = [true, false] }
'''


def claim_suite(claim: str) -> list[dict]:
    """The validated claims of SUITE with one [[claims]] entry appended."""
    return parse_suite(SUITE + "[[claims]]\n" + claim).claims


def record(rule: str, seed: int, test_acc: float | None, curve: list[tuple[int, float]] | None = None,
           status: str = "complete", rule_params: dict | None = None, variant: str | None = None,
           optimizer: str = "sgd") -> CellRecord:
    """A cell record as the engine writes it: evaluations (updates, val accuracy) and a final line."""
    curve = curve or [(0, 0.1), (10, 0.5), (100, 0.9)]
    config = {"task": {"name": "digits", "params": {"hidden": [64, 64]}},
              "rule": {"name": rule, "params": rule_params or {}},
              "optimizer": {"name": optimizer, "params": {"lr": 0.05}}, "seed": seed}
    header = {"type": "header", "cell_id": f"{rule}-{seed}-{variant}", "config": config,
              "labels": {"variant": variant or f"{rule} + {optimizer}", "rule": rule, "optimizer": optimizer}}
    evals = [{"type": "eval", "updates": u, "epoch": u / 100, "val_accuracy": a,
              "test_accuracy": a if test_acc is None or u != curve[-1][0] else test_acc} for u, a in curve]
    final = None if status == "incomplete" else {"status": status, "test_accuracy": test_acc,
                                                  "val_accuracy": curve[-1][1], "updates": curve[-1][0]}
    return CellRecord(Path(f"{rule}-{seed}.jsonl"), header, evals, final)


def seeds(rule: str, accs: list[float], **kw) -> list[CellRecord]:
    return [record(rule, s, a, **kw) for s, a in enumerate(accs)]


# ---- verdicts ---------------------------------------------------------------------------------

THRESHOLD = 'claim = "BP beats 2 % error"\nsource = "x"\nmetric = "test_error"\nkind = "threshold"\n' \
            'subject = { rule = "bp" }\nat_most = 2.0\n'


def test_threshold_supported_not_supported_and_inconclusive():
    (c,) = claim_suite(THRESHOLD)
    # errors 1.0, 1.1, 0.9 %: the t interval [0.75, 1.25] lies below 2
    v = judge(c, seeds("bp", [0.990, 0.989, 0.991]))
    assert v.verdict == SUPPORTED and "3 seeds" in v.basis
    # errors 3.0 ± 0.1: wholly above 2
    assert judge(c, seeds("bp", [0.970, 0.969, 0.971])).verdict == NOT_SUPPORTED
    # errors 1, 3, 2: the interval straddles 2
    v = judge(c, seeds("bp", [0.99, 0.97, 0.98]))
    assert v.verdict == INCONCLUSIVE
    ci = scipy_stats.t.interval(0.95, 2, loc=2.0, scale=scipy_stats.sem([1.0, 3.0, 2.0]))
    assert f"[{ci[0]:.2f}, {ci[1]:.2f}]" in v.basis


def test_one_seed_decides_by_its_value_and_says_so():
    (c,) = claim_suite(THRESHOLD)
    v = judge(c, seeds("bp", [0.99]))
    assert v.verdict == SUPPORTED and v.basis == "1 seed, no interval"


def test_missing_or_unfinished_cells_are_inconclusive_no_runs():
    (c,) = claim_suite(THRESHOLD)
    v = judge(c, seeds("fa", [0.99, 0.99]))
    assert v.verdict == INCONCLUSIVE and v.basis.startswith("no runs")
    v = judge(c, [record("bp", 0, None, status="incomplete")])
    assert v.verdict == INCONCLUSIVE and "no runs: bp (1 unfinished)" in v.basis
    # a diverged seed has no final accuracy: the claim rests on the complete ones
    v = judge(c, seeds("bp", [0.99, 0.99]) + [record("bp", 2, math.nan, status="diverged")])
    assert "2 seeds" in v.basis and "bp + sgd: 1 diverged seed left out" in v.basis
    # every seed finished but diverged: the runs exist, they have no accuracy; said so, not "no runs"
    v = judge(c, [record("bp", s, math.nan, status="diverged") for s in range(3)])
    assert v.verdict == INCONCLUSIVE and v.basis == "no finished seed has the metric: bp + sgd (all 3 of 3 diverged)"


def test_a_tie_supports_neither_sign_nor_order():
    """Update counts on an evaluation schedule tie often: a difference of exactly 0 in every seed
    is no evidence that either side is ahead."""
    def diff(sign: str) -> dict:
        return claim_suite('claim = "c"\nsource = "s"\nmetric = "updates_to"\nthreshold = 90\nkind = "difference"\n'
                           f'subject = {{ rule = "bp" }}\nbaseline = {{ rule = "fa" }}\nsign = "{sign}"\n')[0]
    tied = seeds("bp", [0.9] * 3) + seeds("fa", [0.9] * 3)  # both reach 90 % at update 100 in every seed
    assert judge(diff("positive"), tied).verdict == NOT_SUPPORTED
    assert judge(diff("negative"), tied).verdict == NOT_SUPPORTED
    for order in ('[{ rule = "bp" }, { rule = "fa" }]', '[{ rule = "fa" }, { rule = "bp" }]'):
        (c,) = claim_suite(f'claim = "c"\nsource = "s"\nmetric = "updates_to"\nthreshold = 90\n'
                           f'kind = "ordering"\norder = {order}\n')
        assert judge(c, tied).verdict == NOT_SUPPORTED
    # one seed a step ahead, the others tied: the interval reaches 0, so it is open
    ahead = seeds("bp", [0.9] * 3) + [record("fa", 0, 0.9, curve=[(0, 0.1), (10, 0.5), (200, 0.9)])] + [
        record("fa", s, 0.9) for s in (1, 2)]
    assert judge(diff("positive"), ahead).verdict != SUPPORTED


def test_no_evaluation_at_the_asked_point_is_named():
    (c,) = claim_suite('claim = "c"\nsource = "s"\nmetric = "test_accuracy"\nkind = "threshold"\n'
                       'subject = { rule = "bp", at_updates = 50 }\nat_least = 90\n')
    v = judge(c, seeds("bp", [0.95] * 3))  # evaluated after 0, 10 and 100 updates only
    assert v.verdict == INCONCLUSIVE
    assert v.basis == "no finished seed has the metric: bp + sgd (no evaluation after exactly 50 updates)"


def test_difference_sign_and_equivalence_are_paired_by_seed():
    (pos,) = claim_suite('claim = "c"\nsource = "s"\nmetric = "test_accuracy"\nkind = "difference"\n'
                         'subject = { rule = "bp" }\nbaseline = { rule = "fa" }\nsign = "positive"\n')
    # seed effects far larger than the gap, but the gap is the same in every seed: paired, it is clear
    bp, fa = [0.90, 0.95, 0.99], [0.89, 0.94, 0.98]
    v = judge(pos, seeds("bp", bp) + seeds("fa", fa))
    assert v.verdict == SUPPORTED and "3 paired seeds" in v.basis
    assert judge(pos, seeds("bp", fa) + seeds("fa", bp)).verdict == NOT_SUPPORTED
    (similar,) = claim_suite('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "difference"\n'
                             'subject = { rule = "bp" }\nbaseline = { rule = "fa" }\nwithin = 0.5\n')
    assert judge(similar, seeds("bp", [0.981, 0.982, 0.980]) + seeds("fa", [0.980, 0.980, 0.981])).verdict \
        == SUPPORTED
    assert judge(similar, seeds("bp", bp) + seeds("fa", fa)).verdict == NOT_SUPPORTED  # 1 pp apart


def test_ratio_of_interpolated_updates_to_threshold():
    (c,) = claim_suite('claim = "FA is faster"\nsource = "s"\nmetric = "updates_to_interp"\nthreshold = 90\n'
                       'kind = "ratio"\nsubject = { rule = "fa" }\nbaseline = { rule = "bp" }\nat_most = 1.0\n')
    # BP crosses 90 % halfway between 100 (85 %) and 200 (95 %): at 150; FA at 133, 127, 120
    bp = [record("bp", s, 0.95, curve=[(0, 0.1), (100, 0.85), (200, 0.95)]) for s in range(3)]
    fa = [record("fa", s, 0.95, curve=[(0, 0.1), (100, 0.86 + 0.01 * s), (200, 0.98)]) for s in range(3)]
    v = judge(c, bp + fa)
    # FA's crossings: 100 + (0.9 − a0)/(0.98 − a0)·100 for a0 = 0.86, 0.87, 0.88
    fa_u = [100 + (0.9 - a0) / (0.98 - a0) * 100 for a0 in (0.86, 0.87, 0.88)]
    assert v.measured.startswith(f"fa + sgd / bp + sgd: {sum(u / 150 for u in fa_u) / 3:.3f}")
    assert v.verdict == SUPPORTED
    # on the evaluation grid alone both cross at 200: no difference to see
    (grid,) = claim_suite('claim = "c"\nsource = "s"\nmetric = "updates_to"\nthreshold = 90\nkind = "ratio"\n'
                          'subject = { rule = "fa" }\nbaseline = { rule = "bp" }\nat_most = 0.99\n')
    assert judge(grid, bp + fa).verdict == NOT_SUPPORTED
    # a seed that never crossed is censored at its last evaluation: 200 > 150 says nothing of
    # "FA faster" for it, while a count surely above BP's in every seed refutes the claim
    never = [record("fa", 0, 0.8, curve=[(0, 0.1), (200, 0.85)])] + fa[1:]
    v = judge(c, bp + never)
    assert v.verdict == INCONCLUSIVE and "2/3 seeds reached 90 %" in v.basis
    assert "1/3 surely against" in v.basis
    slow = [record("fa", s, 0.8, curve=[(0, 0.1), (100, 0.8), (400, 0.85)]) for s in range(3)]
    v = judge(c, bp + slow)
    assert v.verdict == NOT_SUPPORTED and "0/3 seeds reached" in v.basis and "3/3 surely against" in v.basis
    assert "fa + sgd not reached by 400 updates; bp + sgd 150" in v.measured


def test_ordering_needs_every_neighbouring_pair():
    (c,) = claim_suite('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "ordering"\n'
                       'order = [{ rule = "bp" }, { rule = "fa" }, { rule = "rf", params = { derivative = true } }]\n')
    rf = dict(rule_params={"derivative": True}, variant="rf(derivative=True) + sgd")
    good = seeds("bp", [0.99, 0.991, 0.992]) + seeds("fa", [0.98, 0.981, 0.982]) + seeds("rf", [0.97, 0.971, 0.972],
                                                                                            **rf)
    assert judge(c, good).verdict == SUPPORTED
    swapped = seeds("bp", [0.99, 0.991, 0.992]) + seeds("fa", [0.97, 0.971, 0.972]) + seeds(
        "rf", [0.98, 0.981, 0.982], **rf)
    assert judge(c, swapped).verdict == NOT_SUPPORTED
    tie = seeds("bp", [0.99, 0.991, 0.992]) + seeds("fa", [0.98, 0.975, 0.985]) + seeds(
        "rf", [0.985, 0.97, 0.98], **rf)
    assert judge(c, tie).verdict == INCONCLUSIVE


def test_one_run_at_two_points_uses_the_same_variant():
    (c,) = claim_suite('claim = "near-optimal after one update"\nsource = "s"\nmetric = "test_error"\n'
                       'kind = "difference"\nsubject = { rule = "rf", at_updates = 10 }\nbaseline = { rule = "rf" }\n'
                       'at_most = 0.5\n')
    # variant A is best at the end; B is best after 10 updates: both sides must judge A
    a = [record("rf", s, 0.99, curve=[(0, 0.1), (10, 0.90), (100, 0.99)], rule_params={"derivative": True},
                variant="A") for s in range(3)]
    b = [record("rf", s, 0.95, curve=[(0, 0.1), (10, 0.95), (100, 0.95)], rule_params={"derivative": False},
                variant="B") for s in range(3)]
    v = judge(c, a + b)
    assert v.sides[0].variant == v.sides[1].variant == "A"
    assert v.verdict == NOT_SUPPORTED  # 10 − 1 = 9 points gained after update 10


def test_grid_share_difference_uses_fisher():
    (c,) = claim_suite('claim = "less sensitive"\nsource = "s"\nmetric = "grid_share"\nthreshold = 90\n'
                       'kind = "difference"\nsubject = { rule = "rf" }\nbaseline = { rule = "bp" }\nsign = "positive"\n')
    reach, miss = [(0, 0.1), (100, 0.95)], [(0, 0.1), (100, 0.5)]
    rf = [record("rf", 0, 0.9, curve=reach, variant=f"rf {i}") for i in range(8)]
    bp = [record("bp", 0, 0.9, curve=reach if i < 1 else miss, variant=f"bp {i}") for i in range(8)]
    v = judge(c, rf + bp)
    p = scipy_stats.fisher_exact([[8, 0], [1, 7]], alternative="greater").pvalue
    assert v.verdict == SUPPORTED and f"p = {p:.3g}" in v.basis and "8/8" in v.measured


def test_grid_sides_of_one_rule_are_named_by_their_optimizer():
    (c,) = parse_suite('seeds = [0]\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n'
                       'optimizers = [{ name = "sgd" }, { name = "mult-sgd" }]\n[[claims]]\nclaim = "c"\n'
                       'source = "s"\nmetric = "grid_share"\nthreshold = 90\nkind = "difference"\n'
                       'subject = { rule = "bp", optimizer = "mult-sgd" }\nbaseline = { rule = "bp", optimizer = "sgd" }\n'
                       'sign = "positive"\n').claims
    mult = [record("bp", 0, 0.9, optimizer="mult-sgd", variant=f"m {i}") for i in range(3)]
    sgd = [record("bp", 0, 0.9, curve=[(0, 0.1), (100, 0.5)], variant=f"s {i}") for i in range(4)]
    assert judge(c, mult + sgd).measured == ("bp + mult-sgd: 3/3 grid points reach 90 %; "
                                             "bp + sgd: 0/4 grid points reach 90 %")


# ---- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("claim, message", [
    ('claim = "c"\nsource = "s"\nmetric = "test_eror"\nkind = "threshold"\nsubject = { rule = "bp" }\n'
     'at_most = 1\n', "unknown metric 'test_eror' (did you mean 'test_error'?); known metrics: test_accuracy"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "bigger"\nsubject = { rule = "bp" }\n'
     'at_most = 1\n', "unknown comparison kind 'bigger'; known comparison kinds: threshold, ratio, difference, "
                      "ordering"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "threshold"\nsubject = { rule = "dfa" }\n'
     'at_most = 1\n', "unknown rule 'dfa' (did you mean 'fa'?): the suite runs no cell of it here; its rules: "
                      "bp, fa, rf"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "threshold"\n'
     'subject = { rule = "rf", params = { derivatve = true } }\nat_most = 1\n',
     "params: unknown parameter 'derivatve' (did you mean 'derivative'?)"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "threshold"\n'
     'subject = { rule = "rf", params = { loss = "mse" } }\nat_most = 1\n',
     "(unknown variant); the variants of rule 'rf' here: rf(derivative=False) + sgd; rf(derivative=True) + sgd"),
    ('claim = "c"\nsource = "s"\nmetric = "updates_to"\nkind = "threshold"\nsubject = { rule = "bp" }\n'
     'at_most = 1\n', "metric 'updates_to' needs 'threshold'"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "ratio"\nsubject = { rule = "bp" }\n'
     'at_most = 1\n', "baseline: expected a table"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "difference"\nsubject = { rule = "bp" }\n'
     'baseline = { rule = "fa" }\nsign = "up"\n', "sign must be one of positive, negative"),
    ('claim = "c"\nmetric = "test_error"\nkind = "threshold"\nsubject = { rule = "bp" }\nat_most = 1\n',
     "'source' (a non-empty string) is required"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "threshold"\nsubject = { rule = "bp" }\n'
     'at_most = 1\nverdict = "supported"\n', "unknown key 'verdict'"),
    # bounds the metric can never reach
    ('claim = "c"\nsource = "s"\nmetric = "test_accuracy"\nkind = "threshold"\nsubject = { rule = "bp" }\n'
     'at_least = 150\n', "'at_least' = 150 can never be met: test accuracy (%) gives a percentage, so the bound "
                         "must be between 0 and 100"),
    ('claim = "c"\nsource = "s"\nmetric = "updates_to"\nthreshold = 90\nkind = "threshold"\n'
     'subject = { rule = "bp" }\nat_most = -5\n', "'at_most' = -5 can never be met"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "difference"\nsubject = { rule = "bp" }\n'
     'baseline = { rule = "fa" }\nat_least = 120\n', "a difference of percentages, so the bound must be between "
                                                      "-100 and 100"),
    # a run compared with itself
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "ratio"\nsubject = { rule = "bp" }\n'
     'baseline = { rule = "bp" }\nat_most = 1\n', "subject and baseline select the same cells at the same point"),
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "ordering"\n'
     'order = [{ rule = "fa" }, { rule = "bp" }, { rule = "fa" }]\n',
     "order[0] and order[2] select the same cells at the same point"),
    # points no evaluation can fall on
    ('claim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "threshold"\n'
     'subject = { rule = "bp", at_epoch = 0.5 }\nat_most = 1\n', "'at_epoch' = 0.5 is not the end of an epoch"),
    ('claim = "c"\nsource = "s"\ntask = 5\nmetric = "test_error"\nkind = "threshold"\n'
     'subject = { rule = "bp" }\nat_most = 1\n', "'task' must be a string naming one of the suite's tasks (digits), "
                                                  "got 5"),
])
def test_bad_claims_are_suite_errors_naming_the_file_and_the_choices(tmp_path, claim, message):
    path = tmp_path / "bad.toml"
    path.write_text(SUITE + "[[claims]]\n" + claim)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert f"suite file {path}: claims[0]" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("evaluation, side, message", [
    ("", 'at_updates = 500', "'at_updates' = 500 lies beyond the budget of 200 updates"),
    ("", 'at_epoch = 5', "'at_epoch' = 5 lies beyond the budget of 3 epochs"),
    ("[evaluation]\nper_decade = 1\nevery_epoch = false\n", 'at_updates = 50',
     "no evaluation falls after exactly 50 updates; the evaluations around it are after 10 and 100 updates"),
    ("[evaluation]\npoints = 4\n", 'at_epoch = 1',
     "'at_epoch' = 1 needs an evaluation at each epoch's end, but the suite's [evaluation] has points"),
])
def test_a_claim_at_a_point_no_evaluation_reaches_is_refused(evaluation, side, message):
    budget = "[budget]\nepochs = 3\n" if "epoch" in side else "[budget]\nupdates = 200\n"
    claim = (f'[[claims]]\nclaim = "c"\nsource = "s"\nmetric = "test_error"\nkind = "threshold"\n'
             f'subject = {{ rule = "bp", {side} }}\nat_most = 5\n')
    def suite(budget: str, evaluation: str, claim: str) -> str:
        return SUITE.replace("seeds = [0, 1, 2]\n", "seeds = [0, 1, 2]\n" + budget + evaluation) + claim

    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_suite(suite(budget, evaluation, claim))
    # the budget's own end is always evaluated: the last epoch is a valid point even with `points`
    end = "at_epoch = 3" if "epoch" in side else "at_updates = 200"
    assert parse_suite(suite(budget, evaluation, claim.replace(side, end))).claims


@pytest.mark.parametrize("entry, message", [
    ('task = "mnist"\nrule = "bp"', "published[0]: task 'mnist' is not in the suite; its tasks: digits"),
    ('task = "digits"\nrule = "bpp"', "rule 'bpp' is not run on task 'digits' in this suite (did you mean 'bp'?)"),
    ('task = "digits"\nrule = "bp"\ntask_params = { hiden = 3 }',
     "task_params: unknown parameter 'hiden' (did you mean 'hidden'?)"),
    ('task = "digits"\nrule = "bp"\ntask_params = { activation = "relu" }',
     "no cell of rule 'bp' on task 'digits' has task_params {'activation': 'relu'}"),
    ('task = "digits"\nrule = "bp"\nsource = ""', "'source' (a non-empty string) is required"),
])
def test_a_published_figure_that_could_never_meet_a_measured_one_is_refused(entry, message):
    text = SUITE + f'[[published]]\nmetric = "test_error"\nvalue = 2.0\n{entry}\n'
    if "source" not in entry:
        text += 'source = "s"\n'
    with pytest.raises(ConfigError) as err:
        parse_suite(text)
    assert message in str(err.value)


def test_every_suite_file_with_claims_loads():
    suites = sorted(p.stem for p in (Path(__file__).parents[1] / "suites").glob("*.toml")
                    if "[[claims]]" in p.read_text())
    assert {"er", "er-best", "feedback", "feedback-rf", "gofau", "gofau-robustness", "tp"} <= set(suites)
    for name in suites:
        assert load_suite(name).claims, name


# ---- the report ---------------------------------------------------------------------------------

def write_cells(runs: Path, records: list[CellRecord]) -> None:
    """Cell files as the engine writes them, from records."""
    runs.mkdir()
    for rec in records:
        writer = CellWriter(runs, rec.header["cell_id"])
        writer.write(rec.header)
        for ev in rec.evals:
            writer.write(ev)
        writer.finish({**rec.final, "message": None})


def test_claims_table_is_at_the_top_of_the_report(tmp_path):
    suite = parse_suite(SUITE + "[[claims]]\n" + THRESHOLD)
    write_json(tmp_path / "suite.json", suite.meta())
    write_cells(tmp_path / "runs", seeds("bp", [0.990, 0.989, 0.991]))
    html = render_report(tmp_path)
    claims_at = html.index('<section id="claims">')
    assert claims_at < html.index('id="task-0"') and claims_at < html.index('nav class="legend"')
    table = html[claims_at:html.index("</section>", claims_at)]
    assert "BP beats 2 % error" in table and "test error (%): bp ≤ 2" in table
    assert '<span class="pill complete">supported</span>' in table and "3 seeds, 95 % CI" in table
    assert json.loads((tmp_path / "suite.json").read_text())["claims"][0]["kind"] == "threshold"


def test_an_unreadable_stored_claim_gets_its_own_row_and_the_report_still_renders(tmp_path):
    """suite.json edited by hand (or written by another version): the bad claim is named in its row,
    the good one is still judged."""
    suite = parse_suite(SUITE + "[[claims]]\n" + THRESHOLD)
    meta = suite.meta()
    good = meta["claims"][0]
    meta["claims"] = [{**good, "metric": "test_loss"}, {**good, "subject": "bp"}, {**good, "bound": {"key": "at_most",
                      "value": "two"}}, [1, 2], good]
    meta["published"] = [{"task": "digits", "rule": "bp", "metric": "test_error", "value": 2.0, "source": "s",
                          "task_params": [1]}]
    write_json(tmp_path / "suite.json", meta)
    write_cells(tmp_path / "runs", seeds("bp", [0.990, 0.989, 0.991]))
    html = unescape(render_report(tmp_path))
    table = html[html.index('<section id="claims">'):]
    table = table[:table.index("</section>")]
    assert table.count('<span class="pill error">unreadable</span>') == 4
    assert "unknown metric 'test_loss'" in table and "'subject' must be a table with a 'rule'" in table
    assert "bound at_most has an unusable value 'two'" in table and "a claim must be a table, got list" in table
    assert '<span class="pill complete">supported</span>' in table
