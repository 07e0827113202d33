"""The suite's [search]: validation, the objective, trials as cells, resume after a kill, shared storage, report."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plasticity.errors import ConfigError
from plasticity.registry import REPO_ROOT
from plasticity.results import finished_cell, read_cell
from plasticity.search.objective import UNREACHED_PENALTY, objective_value
from plasticity.search.study import open_storage
from plasticity.suite import parse_suite

BASE = """
name = "s"
[budget]
updates = 40
[evaluation]
per_decade = 5
feedback_metrics = 0
[[tasks]]
name = "digits"
params = {{ hidden = [16], batch_size = 64 }}
[[rules]]
name = "bp"
[[rules]]
name = "fa"
[search]
trials = {trials}
budget = {{ updates = {updates} }}
final_seeds = 2
sampler = "random"
{extra}
[search.optimizer]
lr = {{ log = [1e-3, 1e-1] }}
[search.space.fa]
rule = {{ feedback_scale = {{ log = [0.1, 3.0] }} }}
optimizer = {{ lr = {{ log = [1e-3, 1e-1] }}, schedule = {{ choice = ["constant", "cosine"] }} }}
"""


def suite_text(trials: int = 3, updates: int = 20, extra: str = "") -> str:
    return BASE.format(trials=trials, updates=updates, extra=extra)


def test_search_table_is_parsed_with_equal_trials_and_fresh_final_seeds():
    spec = parse_suite(suite_text(trials=5)).search
    assert spec.trials == {"bp": 5, "fa": 5} and spec.equal_trials
    assert spec.final_seeds == [1, 2] and spec.trial_seed == 0
    assert set(spec.spaces["bp"].flat()) == {"optimizer.lr"}
    assert set(spec.spaces["fa"].flat()) == {"rule.feedback_scale", "optimizer.lr", "optimizer.schedule"}
    uneven = parse_suite(suite_text(extra="trials_per_rule = { fa = 7 }")).search
    assert uneven.trials == {"bp": 3, "fa": 7} and not uneven.equal_trials


@pytest.mark.parametrize("change, message", [
    (("lr = { log = [1e-3, 1e-1] }", "lr = { log = [1e-2, 1e-2] }"), r"\[search\]\.optimizer\.lr\.log: the range \[0\.01, 0\.01\] is empty"),
    (("lr = { log = [1e-3, 1e-1] }", "lr = { uniform = [0.5, 0.1] }"), r"optimizer\.lr\.uniform: the range \[0\.5, 0\.1\] is inverted"),
    (("lr = { log = [1e-3, 1e-1] }", "lr = { log = [0, 0.1] }"), r"optimizer\.lr\.log: a log range must lie above 0"),
    (("lr = { log = [1e-3, 1e-1] }", "lr = { log = [-1, 0.1] }"), r"a log range must lie above 0"),
    (("lr = { log = [1e-3, 1e-1] }", "lr = { loguniform = [1e-3, 0.1] }"), r"unknown distribution 'loguniform'.*choose one of log, uniform, int, choice"),
    (("lr = { log = [1e-3, 1e-1] }", "lrate = { log = [1e-3, 0.1] }"), r"\[search\]\.optimizer: optimizer 'sgd' has no parameter 'lrate' \(did you mean 'lr'\?\).*its parameters: lr, momentum"),
    (("feedback_scale = {", "beta = {"), r"space\.fa\.rule: rule 'fa' has no parameter 'beta'.*its parameters: loss, feedback_scale"),
    (("[search.space.fa]", "[search.space.dtp]"), r"\[search\]\.space\.dtp: rule 'dtp' is not in the suite's rules: bp, fa"),
    (("trials = 3", "trials = 3\nsampler2 = 1"), r"\[search\]: unknown key 'sampler2'"),
    (('sampler = "random"', 'sampler = "bayes"'), r"\[search\] sampler: 'bayes' is not one of tpe, random, grid"),
    (('sampler = "random"', 'sampler = "random"\npruner = "hyperband"'), r"pruner: 'hyperband' is not one of median, halving, none"),
    (('sampler = "random"', 'sampler = "random"\nobjective = "test_accuracy"'), r"objective: 'test_accuracy' is not one of val_accuracy, val_auc, updates_to_threshold"),
    (('sampler = "random"', 'sampler = "random"\nobjective = "updates_to_threshold"'), r"needs threshold"),
    (('sampler = "random"', 'sampler = "grid"'), r"the grid sampler needs every parameter as choice or int"),
    (("lr = { log = [1e-3, 1e-1] }", "lr = { log = [1e-3, 1e-1] }\nmomentum = { uniform = [-0.5, 0.5] }"), r"optimizer\.momentum.*momentum must be non-negative, got -0\.5"),
    (("budget = { updates = 20 }", ""), r"budget is required"),
    (("final_seeds = 2", "final_seeds = [0, 5]"), r"final_seeds holds trial_seed 0"),
    (("name = \"s\"", "name = \"s\"\nseeds = 3"), r"takes its seeds from \[search\]"),
    (('sampler = "random"', 'sampler = "random"\nevaluation = { points = 0 }'), r"\[search\]\.evaluation points must lie in 1\.\.100,000, got 0"),
    (('sampler = "random"', 'sampler = "random"\nevaluation = { test = true }'), r"\[search\]\.evaluation: unknown key 'test'"),
    (("budget = { updates = 20 }", "budget = { seconds = 5 }\nevaluation = { points = 4 }"), r"\[search\]\.evaluation: evaluation points = 4 spaces evaluations evenly over the update budget, but the budget is in seconds only"),
    (("budget = { updates = 20 }", "budget = {}"), r"^suite file bad\.toml: \[search\]\.budget: \{\} sets no limit; give updates, epochs or seconds"),
    (("final_seeds = 2", "final_seeds = 4294967296"), r"\[search\]: final_seeds = 4,294,967,296: give a count in 1\.\.10,000 or a list of at most 10,000 seeds"),
    (("final_seeds = 2", "final_seeds = 20000"), r"\[search\]: final_seeds = 20,000: give a count in 1\.\.10,000"),
    (("final_seeds = 2", "final_seeds = 6000"), r"\[search\]: final_seeds = 6,000: the final stage would run 12,000 cells \(2 \(task, rule\) pairs x 6,000 seeds\), more than the limit of 10,000; .*--max-cells N"),
    (("final_seeds = 2", "final_seeds = 2\ntrial_seed = 4294967294"), r"\[search\]: final_seeds = 2 counts seeds from trial_seed \+ 1 = 4,294,967,295 up to 4,294,967,296, past the largest seed 4,294,967,295; give final_seeds at most 1"),
    (("lr = { log = [1e-3, 1e-1] }", "lr = { choice = [1, 0.5, 1.0] }"), r"\[search\]\.optimizer\.lr\.choice: 1 and 1\.0 are the same value; each choice once"),
    (("lr = { log = [1e-3, 1e-1] }", "lr = { choice = [0.1, 0.1] }"), r"\[search\]\.optimizer\.lr\.choice: 0\.1 is listed twice; each choice once"),
])
def test_bad_search_tables_are_refused_naming_the_key(change, message):
    text = suite_text()
    assert change[0] in text
    with pytest.raises(ConfigError, match=message):
        parse_suite(text.replace(change[0], change[1], 1), Path("bad.toml"))


def test_evenly_spaced_points_need_an_update_budget_in_any_suite():
    text = 'name = "p"\n[budget]\nseconds = 5\n[evaluation]\npoints = 4\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n'
    with pytest.raises(ConfigError, match=r"points = 4 spaces evaluations evenly over the update budget, but the "
                                          r"budget is in seconds only; give updates or epochs, or use per_decade"):
        parse_suite(text, Path("p.toml"))


def test_a_trial_evaluates_validation_only_at_its_evenly_spaced_points(tmp_path):
    """Test data never reaches the search, not even into a trial's file, and a trial pays for the
    few evaluations its pruner reads (here 4 evenly spaced, plus the untrained net)."""
    from plasticity.search import run_search

    suite = parse_suite(suite_text(trials=2, extra="evaluation = { points = 4 }\npruner = \"none\""))
    run_search(suite, tmp_path, progress=False)
    files = sorted((tmp_path / "search" / "runs").glob("*.jsonl"))
    assert len(files) == 4
    for path in files:
        rec = read_cell(path)
        assert [e["updates"] for e in rec.evals] == [0, 5, 10, 15, 20]
        assert all(e["test_accuracy"] is None and e["val_accuracy"] is not None for e in rec.evals)
        assert not any("feedback" in e for e in rec.evals), "no feedback metrics in a trial"
        assert rec.final["test_accuracy"] is None


def test_a_grid_of_a_searched_rule_is_refused():
    text = suite_text().replace('name = "fa"', 'name = "fa"\ngrid = { loss = ["ce", "mse"] }')
    with pytest.raises(ConfigError, match=r"rule 'fa' has several settings"):
        parse_suite(text)


@pytest.mark.parametrize("url, message", [
    ("sqlite:////nonexistent-folder/x/study.db", "cannot be reached"),
    ("nosuchdb://host/db", "cannot be reached"),
    ("journal:/nonexistent-folder/x/journal.log", "does not exist"),
])
def test_an_unreachable_storage_is_a_clear_error(url, message):
    with pytest.raises(ConfigError, match=rf"--storage {url.split(':')[0]}.*{message}"):
        open_storage(url)


def _evals(val, test, ups):
    return [{"updates": u, "val_accuracy": v, "test_accuracy": t} for u, v, t in zip(ups, val, test)]


def test_objectives_read_validation_only():
    ups = [0, 10, 30]
    a = _evals([0.1, 0.5, 0.9], [0.1, 0.2, 0.3], ups)
    b = _evals([0.1, 0.5, 0.9], [0.9, 0.9, 0.99], ups)
    for objective in ("val_accuracy", "val_auc", "updates_to_threshold"):
        assert objective_value(objective, a, 0.8) == objective_value(objective, b, 0.8)
    assert objective_value("val_accuracy", a) == 0.9
    # trapezoids: 10 * 0.3 + 20 * 0.7 = 17 over 30 updates
    assert objective_value("val_auc", a) == pytest.approx(17 / 30)
    assert objective_value("updates_to_threshold", a, 0.5) == 10
    assert objective_value("updates_to_threshold", a, 0.95) == UNREACHED_PENALTY * 30


def test_a_pruned_trial_file_reads_as_finished_but_never_as_a_complete_cell(tmp_path):
    from plasticity.writer import CellWriter
    w = CellWriter(tmp_path, "c1")
    w.write({"type": "header", "cell_id": "c1", "config": {}})
    w.write({"type": "eval", "updates": 5, "val_accuracy": 0.5, "test_accuracy": 0.5})
    w.finish({"status": "pruned", "updates": 5})
    rec = read_cell(tmp_path / "c1.jsonl")
    assert rec.status == "pruned"
    assert finished_cell(tmp_path, "c1", "anything", keep_stale=True) is None


# ---- end to end, through the command line ------------------------------------------------------

def _interruptible() -> None:
    """A shell's background job ignores SIGINT and its children inherit that: Ctrl-C must reach the run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "plasticity.cli", "run", *args, "--no-progress", "--device", "cpu"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible, **kw)


def _run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    p = _cli(args)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _studies(out: Path) -> dict[str, list[dict]]:
    data = json.loads((out / "search" / "search.json").read_text())
    return {s["rule"]: s["trials"] for s in data["studies"]}


def test_search_runs_trials_as_cells_then_the_final_stage_and_resumes_without_new_trials(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(suite_text(trials=2, updates=20, extra='pruner = "none"'))
    out = tmp_path / "out"
    r = _run([str(suite), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    studies = _studies(out)
    for rule, trials in studies.items():
        assert [t["state"] for t in trials] == ["COMPLETE"] * 2, (rule, trials)
        for t in trials:  # each trial is an ordinary finished cell with its fingerprint
            rec = read_cell(out / "search" / "runs" / f"{t['cell_id']}.jsonl")
            assert rec.status == "complete" and rec.header["fingerprint"]["hash"]
            assert rec.config["budget"]["updates"] == 20 and rec.config["seed"] == 0
            assert rec.config["optimizer"]["params"]["lr"] == t["params"]["optimizer.lr"]
            assert t["value"] == rec.evals[-1]["val_accuracy"]
    data = json.loads((out / "search" / "search.json").read_text())
    finals = [read_cell(p) for p in (out / "runs").glob("*.jsonl")]
    assert sorted((c.config["rule"]["name"], c.config["seed"]) for c in finals) == [
        ("bp", 1), ("bp", 2), ("fa", 1), ("fa", 2)]
    for c in finals:  # the final stage runs each rule's best configuration with the suite's budget
        best = next(s["best"]["params"] for s in data["studies"] if s["rule"] == c.config["rule"]["name"])
        assert c.config["optimizer"]["params"]["lr"] == best["optimizer.lr"]
        assert c.config["budget"]["updates"] == 40
    html = (out / "index.html").read_text()
    assert "Hyperparameter search" in html and "2 / 0 / 0" in html and "2 trials for every rule" in html
    assert 'href="#search"' in html  # in the contents
    before = {p.name: p.stat().st_mtime_ns for p in (out / "search" / "runs").iterdir()}
    r = _run([str(suite), "--out", str(out), "--search-only"])
    assert r.returncode == 0, r.stderr
    assert {rule: len(t) for rule, t in _studies(out).items()} == {"bp": 2, "fa": 2}
    assert {p.name: p.stat().st_mtime_ns for p in (out / "search" / "runs").iterdir()} == before


def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_search_cut_short_resumes_and_counts_no_trial_twice(tmp_path, sig):
    suite = tmp_path / "s.toml"
    suite.write_text(suite_text(trials=2, updates=100, extra='pruner = "none"'))
    out = tmp_path / "out"
    p = _cli([str(suite), "--out", str(out), "--search-only"])
    runs = out / "search" / "runs"
    _wait_for(lambda: runs.is_dir() and any(runs.glob("*.part")))
    p.send_signal(sig)
    p.communicate(timeout=60)
    # SIGINT: the run prints its message and returns 130; CPython then sometimes ends the process by
    # SIGINT itself (-2), when the KeyboardInterrupt crossed one of its sticky "unhandled" marks on the
    # way (seen under load, strace: exit_sigint after the message). A shell reports 130 for both.
    assert p.returncode in ((-9,) if sig == signal.SIGKILL else (130, -2))
    assert not list(runs.glob("*.jsonl")) or all(read_cell(f).status == "complete" for f in runs.glob("*.jsonl"))
    r = _run([str(suite), "--out", str(out), "--search-only"])
    assert r.returncode == 0, r.stderr
    studies = _studies(out)
    first = studies["bp"]
    assert [t["state"] for t in first].count("COMPLETE") == 2
    assert first[0]["state"] == "FAIL"  # the trial cut short: failed, never read as complete
    assert [t["state"] for t in studies["fa"]] == ["COMPLETE", "COMPLETE"]
    complete = [t["cell_id"] for ts in studies.values() for t in ts if t["state"] == "COMPLETE"]
    assert len(set(complete)) == len(complete) == 4


def test_two_processes_on_one_storage_share_the_trials(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(suite_text(trials=3, updates=100, extra='pruner = "none"'))
    out = tmp_path / "out"
    journal = tmp_path / "journal.log"
    args = [str(suite), "--out", str(out), "--search-only", "--storage", f"journal:{journal}"]
    procs = [_cli(args), _cli(args)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for rule, trials in _studies(out).items():
        assert len(trials) == 3 and [t["state"] for t in trials] == ["COMPLETE"] * 3, (rule, trials)
        assert sorted(t["number"] for t in trials) == list(range(3))
        assert len({t["cell_id"] for t in trials}) == 3
    # both processes ran trials
    assert len({t["pid"] for trials in _studies(out).values() for t in trials}) == 2


def test_the_sweep_closes_dead_trials_from_their_cell_files(tmp_path):
    """A trial whose process died after its cell finished is closed COMPLETE with the file's value;
    one whose cell did not finish is closed FAIL; neither is left RUNNING."""
    import socket

    import optuna
    import torch

    from plasticity.engine import evaluate  # noqa: F401  (the engine's own modules are loaded)
    from plasticity.fingerprint import fingerprint
    from plasticity.search.study import Context, load_study, study_keys, sweep_dead_trials, trial_cell
    from plasticity.writer import CellWriter

    suite = parse_suite(suite_text())
    ctx = Context(suite, tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", torch.device("cpu"), None, {})
    ctx.runs_dir.mkdir(parents=True)
    key = study_keys(suite)[0]
    study = load_study(open_storage(ctx.storage_url), suite.search, key)
    cells = []
    for _ in range(2):
        trial = study.ask()
        trial.suggest_float("optimizer.lr", 1e-3, 1e-1, log=True)
        cell = trial_cell(suite.name, suite.search, key, dict(trial.params))
        trial.set_user_attr("cell_id", cell.cell_id)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", -1)  # a process that is gone
        cells.append(cell)
    w = CellWriter(ctx.runs_dir, cells[0].cell_id)  # the first trial's cell finished before its process died
    w.write({"type": "header", "cell_id": cells[0].cell_id, "config": cells[0].config(),
             "fingerprint": fingerprint(cells[0])})
    w.write({"type": "eval", "updates": 20, "val_accuracy": 0.42, "test_accuracy": 0.99})
    w.finish({"status": "complete", "updates": 20})
    assert sweep_dead_trials(study, key, ctx) == 2
    first, second = study.get_trials()
    assert first.state == optuna.trial.TrialState.COMPLETE and first.value == 0.42
    assert second.state == optuna.trial.TrialState.FAIL
    assert sweep_dead_trials(study, key, ctx) == 0


def test_a_grid_search_visits_distinct_points_in_process(tmp_path):
    import torch

    from plasticity.search.study import run_search

    text = """
[budget]
updates = 4
[evaluation]
feedback_metrics = 0
[[tasks]]
name = "digits"
params = { hidden = [8] }
[[rules]]
name = "bp"
[search]
trials = 3
budget = { updates = 3 }
sampler = "grid"
pruner = "none"
[search.optimizer]
lr = { choice = [0.01, 0.1] }
momentum = { choice = [0.0, 0.9] }
"""
    summary = run_search(parse_suite(text), tmp_path, device=torch.device("cpu"), progress=False)
    (study,) = summary["studies"]
    points = [tuple(sorted(t["params"].items())) for t in study["trials"]]
    assert [t["state"] for t in study["trials"]] == ["COMPLETE"] * 3 and len(set(points)) == 3


def test_the_report_states_the_search_overhead_and_what_pruning_saved():
    from plasticity.report.search import last_command_overhead, pruning_saved

    def t(state, updates, secs, started="2026-01-01T00:00:30+00:00", reused=False):
        return {"state": state, "updates": updates, "train_seconds": secs, "started": started, "reused": reused}

    studies = [{"trials": [t("COMPLETE", 100, 10.0), t("PRUNED", 30, 3.0), t("PRUNED", 60, 6.0),
                           t("COMPLETE", 100, 10.0, reused=True), t("FAIL", None, None)]}]
    assert pruning_saved(studies) == pytest.approx((70 + 40) / 300)
    studies[0]["trials"].append(t("COMPLETE", 100, 10.0, started="2025-12-31T23:00:00+00:00"))  # an earlier command
    data = {"studies": studies, "last_wall_seconds": 60.0, "last_jobs": 2, "written": "2026-01-01T00:01:00+00:00"}
    assert last_command_overhead(data) == (60.0, 2, 19.0, 3)
    assert pruning_saved([{"trials": [t("PRUNED", 30, 3.0)]}]) is None  # no complete trial: no full budget known


def test_the_suites_own_setting_is_each_studys_first_trial(tmp_path):
    """The hand-set configuration competes in the search (its values inside the space; the rest drawn),
    so a search cannot end below it on its own objective; `start_from_suite = false` turns it off."""
    from plasticity.search import run_search
    from plasticity.search.study import study_keys
    from plasticity.search_space import suite_values

    text = suite_text(trials=2, extra='pruner = "none"')
    suite = parse_suite(text)
    keys = {k.rule: k for k in study_keys(suite)}
    own = {r: suite_values(k.base, suite.search.spaces[r]) for r, k in keys.items()}
    assert own["fa"]["rule.feedback_scale"] == 1.0 and own["fa"]["optimizer.schedule"] == "constant"
    summary = run_search(suite, tmp_path / "on", progress=False)
    for study in summary["studies"]:
        first = next(t for t in study["trials"] if t["number"] == 0)
        assert first["suite_setting"] and first["params"] == pytest.approx(own[study["rule"]])
        assert not any(t["suite_setting"] for t in study["trials"] if t["number"] != 0)
    off_text = suite_text(trials=2, extra='pruner = "none"\nstart_from_suite = false')
    off = run_search(parse_suite(off_text), tmp_path / "off", progress=False)
    assert not any(t["suite_setting"] for s in off["studies"] for t in s["trials"])
    narrow = parse_suite(text.replace("feedback_scale = { log = [0.1, 3.0] }", "feedback_scale = { log = [2.0, 3.0] }"))
    fa = next(k for k in study_keys(narrow) if k.rule == "fa")
    assert "rule.feedback_scale" not in suite_values(fa.base, narrow.search.spaces["fa"]), "outside: drawn instead"


# ---- bad input and faults: one clear error, nothing half-done ----------------------------------

def test_the_final_stage_is_held_to_the_suites_cell_limit():
    """--max-cells bounds the final stage (each (task, rule) pair's best on every final seed) as it bounds a suite."""
    with pytest.raises(ConfigError, match=r"\[search\]: final_seeds = 2: the final stage would run 4 cells \(2 \(task, "
                                          r"rule\) pairs x 2 seeds\), more than the limit of 3"):
        parse_suite(suite_text(), Path("s.toml"), max_cells=3)
    assert parse_suite(suite_text(), Path("s.toml"), max_cells=4).search.final_seeds == [1, 2]


def test_suite_evaluation_points_need_an_update_budget_for_the_trials_too():
    """Trials inherit the suite's [evaluation] (the search's own keys over it): evenly spaced points need
    a trial budget in updates or epochs, refused when the suite is read, naming [search]'s budget."""
    text = suite_text().replace("per_decade = 5", "points = 3").replace("budget = { updates = 20 }",
                                                                         "budget = { seconds = 1 }")
    with pytest.raises(ConfigError, match=r"^suite file p\.toml: \[search\]\.budget: trials inherit the suite's "
                                          r"\[evaluation\] points = 3, spaced evenly over the update budget, but the "
                                          r"trial budget \(seconds = 1\) is in seconds only; give the trial budget "
                                          r"updates or epochs$"):
        parse_suite(text, Path("p.toml"))


@pytest.fixture
def aliased_bp(tmp_path):
    """A plugin rule 'srch-bp' with the old name 'srch_bp', registered for one test."""
    from plasticity import registry

    folder = tmp_path / "plugins"
    folder.mkdir()
    path = folder / "srch_bp.py"
    path.write_text('from plasticity import registry\nfrom plasticity.registry import register_rule\n\n\n'
                    '@register_rule("srch-bp", aliases=["srch_bp"])\nclass SearchBP(registry.get_rule("bp")):\n'
                    '    """Backprop under a new name and an old one."""\n')
    yield folder
    registry._loaded_files.discard(path.resolve())
    registry._unregister("rule", "srch-bp")


@pytest.mark.parametrize("table", [
    'trials_per_rule = { srch_bp = 1, "srch-bp" = 3 }',
    '[search.space.srch_bp]\noptimizer = { lr = { log = [0.1, 0.5] } }\n'
    '[search.space.srch-bp]\noptimizer = { lr = { log = [0.01, 0.05] } }',
])
def test_a_rule_named_by_its_old_and_its_new_name_is_refused(aliased_bp, table):
    """Under two names one rule's settings would silently replace the other's."""
    text = (f'plugins = ["{aliased_bp}"]\n[budget]\nupdates = 5\n[[tasks]]\nname = "digits"\n[[rules]]\n'
            f'name = "srch-bp"\n[search]\ntrials = 2\nbudget = {{ updates = 5 }}\n'
            f'{table if table.startswith("trials") else ""}\n[search.optimizer]\nlr = {{ log = [1e-3, 1e-1] }}\n'
            f'{table if table.startswith("[") else ""}\n')
    where = "trials_per_rule" if table.startswith("trials") else r"\.space"
    with pytest.raises(ConfigError, match=rf"\[search\]:? ?{where}: 'srch_bp' and 'srch-bp' both name rule "
                                          rf"'srch-bp'; give it once"):
        parse_suite(text, Path("a.toml"))


def test_no_more_search_processes_than_trials_left(tmp_path, monkeypatch):
    from plasticity.search import study

    started = []
    monkeypatch.setattr(study, "_run_on_executor", lambda ctx, storage, keys, ex, dev, jobs, *a: started.append(jobs))
    suite = parse_suite(suite_text(trials=1))  # bp and fa: 2 trials
    study.run_search(suite, tmp_path, jobs=3, progress=False)
    assert started == [2]


FLAKY_TASK = '''
import multiprocessing

from plasticity import registry
from plasticity.errors import DataError
from plasticity.registry import register_task


@register_task("srch-flaky")
class Flaky(registry.get_task("digits")):
    """Digits whose data is missing {where}."""
    needs_files = True

    def load_arrays(self, data_dir):
        if {missing}:
            raise DataError(f"srch-flaky: data file {{data_dir}}/flaky.npz is missing")
        return super().load_arrays(data_dir)
'''


def _flaky_suite(tmp_path: Path, where: str, missing: str) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "srch_flaky.py").write_text(FLAKY_TASK.format(where=where, missing=missing))
    suite = tmp_path / "f.toml"
    suite.write_text(f'plugins = ["{folder}"]\n' + suite_text(trials=2).replace('name = "digits"', 'name = "srch-flaky"'))
    return suite


def test_a_data_error_in_a_search_process_is_one_line_and_exit_2(tmp_path):
    """A PlasticityError of a search process comes back as the one-line error of a single process
    (not a traceback per process and advice to rerun)."""
    suite = _flaky_suite(tmp_path, "in a search process", "multiprocessing.parent_process() is not None")
    r = _run([str(suite), "--out", str(tmp_path / "out"), "--jobs", "2", "--search-only"])
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "run the same command again" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("plasticity: error: srch-flaky: data file ") and line.endswith("/flaky.npz is missing")


def test_missing_data_stops_a_search_before_it_writes_anything(tmp_path):
    from plasticity import registry
    from plasticity.errors import DataError
    from plasticity.search import run_search

    suite_file = _flaky_suite(tmp_path, "everywhere", "True")
    try:
        suite = parse_suite(suite_file.read_text(), suite_file)
        for jobs in (1, 2):
            with pytest.raises(DataError, match=r"srch-flaky: data file .*/flaky\.npz is missing"):
                run_search(suite, tmp_path / "out", jobs=jobs, progress=False)
            assert not (tmp_path / "out").exists()
    finally:
        registry._loaded_files.discard((tmp_path / "plugins" / "srch_flaky.py").resolve())
        registry._unregister("task", "srch-flaky")


def test_the_suites_own_setting_is_asked_again_after_it_failed(tmp_path):
    """A failed first trial (data missing, cut short) does not leave the search without the hand-set
    configuration: it is asked again until it has a result."""
    import optuna

    from plasticity.search import run_search
    from plasticity.search.study import default_storage, load_study, study_keys
    from plasticity.search_space import suite_values

    suite = parse_suite(suite_text(trials=2, extra='pruner = "none"'))
    (tmp_path / "search").mkdir()
    storage = open_storage(default_storage(tmp_path))
    own = {}
    for key in study_keys(suite):
        own[key.rule] = suite_values(key.base, suite.search.spaces[key.rule])
        study = load_study(storage, suite.search, key)
        study.enqueue_trial(own[key.rule], user_attrs={"suite_setting": True})
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    summary = run_search(suite, tmp_path, progress=False)
    for s in summary["studies"]:
        trials = s["trials"]
        assert [t["state"] for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"], trials
        assert trials[1]["suite_setting"] and trials[1]["params"] == pytest.approx(own[s["rule"]])


@pytest.mark.parametrize("damage", ["garbage", "torn page"])
def test_a_damaged_study_file_says_so_and_how_to_restart(tmp_path, damage):
    """The user gave no --storage: the error names the search's own file, says it is damaged, and that
    deleting it restarts the search; a torn page behind an intact first table is found at once too."""
    from plasticity.search import run_search

    suite = parse_suite(suite_text(trials=1))
    db = tmp_path / "search" / "study.db"
    db.parent.mkdir()
    if damage == "garbage":
        db.write_bytes(bytes(range(256)) * 20)
    else:
        open_storage(f"sqlite:///{db}").engine.dispose()
        data = db.read_bytes()
        db.write_bytes(data[:2 * 4096] + b"\xff" * 4096 + data[3 * 4096:])  # page 3: not the studies table
    with pytest.raises(ConfigError) as err:
        run_search(suite, tmp_path, progress=False)
    message = str(err.value)
    assert message.startswith(f"the search's study file {db}: the database file is damaged (")
    assert message.endswith("); delete it, or move it away, to restart the search")
    assert "--storage" not in message and "\n" not in message


def test_the_sweep_leaves_a_trial_its_process_finished_while_the_sweep_looked(tmp_path, monkeypatch):
    """A trial's process tells the study, then lets its claim go, outside the ask lock: a sweep that read
    the trial as RUNNING and then got its claim must not close it again (that raised UpdateFinishedTrialError
    in the sweeping process, a traceback in a --jobs 2 search)."""
    import socket

    import optuna
    import torch

    from plasticity.search import study as study_mod
    from plasticity.search.study import Context, load_study, study_keys, sweep_dead_trials

    suite = parse_suite(suite_text())
    ctx = Context(suite, tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", torch.device("cpu"), None, {})
    ctx.runs_dir.mkdir(parents=True)
    key = study_keys(suite)[0]
    study = load_study(open_storage(ctx.storage_url), suite.search, key)
    trial = study.ask()
    trial.suggest_float("optimizer.lr", 1e-3, 1e-1, log=True)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", -1)
    real_claim = study_mod.claim_cell

    def owner_finishes_first(folder, name):
        study.tell(trial.number, 0.5)  # the owner tells, then releases: the claim is free from here on
        return real_claim(folder, name)

    monkeypatch.setattr(study_mod, "claim_cell", owner_finishes_first)
    assert sweep_dead_trials(study, key, ctx) == 0
    (t,) = study.get_trials()
    assert t.state == optuna.trial.TrialState.COMPLETE and t.value == 0.5
