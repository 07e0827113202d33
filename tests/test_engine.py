"""The engine loop: budgets, evaluation schedule, timing, determinism, divergence, resume."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from plasticity import engine
from plasticity.engine import resolve_device
from plasticity.points import log_schedule
from plasticity.results import is_complete, load_cells, read_cell
from plasticity.runner import run_suite
from plasticity.suite import parse_suite
from plasticity.worker import run_cell

CPU = torch.device("cpu")


def cells(text: str):
    return parse_suite(text + '[[tasks]]\nname = "digits"\n').cells


# digits: 1,797 images, 360 for test, 300 for validation -> 1,137 training examples,
# 36 updates per epoch in batches of 32
N_TRAIN, PER_EPOCH = 1137, 36


def test_log_schedule_is_log_spaced():
    points = log_schedule(6, limit=100)
    assert points[:7] == [1, 2, 3, 5, 7, 10, 15]
    assert points[-1] == 100 and points == sorted(set(points))


def test_update_budget_and_evaluation_points(tmp_path):
    cell = cells('[budget]\nupdates = 50\n[[rules]]\nname = "bp"\n')[0]
    final = run_cell(cell, tmp_path, CPU, {})
    rec = read_cell(tmp_path / f"{cell.cell_id}.jsonl")
    assert final["status"] == "complete" and final["updates"] == 50
    updates = [e["updates"] for e in rec.evals]
    assert updates[:9] == [0, 1, 2, 3, 4, 5, 6, 8, 10]  # 10 points per decade by default
    assert PER_EPOCH in updates and updates[-1] == 50  # evaluated at the end of the epoch too
    assert rec.evals[-1]["examples"] == N_TRAIN + (50 - PER_EPOCH) * 32


def test_epoch_budget(tmp_path):
    cell = cells('[budget]\nepochs = 2\n[[rules]]\nname = "bp"\n')[0]
    final = run_cell(cell, tmp_path, CPU, {})
    assert final["updates"] == 2 * PER_EPOCH and final["examples"] == 2 * N_TRAIN and final["epochs"] == 2


class FakeClock:
    """A clock that moves only by fixed amounts: `tick` per reading, plus whatever `advance` adds."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_seconds_budget_stops_training(tmp_path, monkeypatch):
    clock = FakeClock(tick=0.01)  # one reading per update: 0.3 s of budget is about 30 updates
    monkeypatch.setattr(engine, "clock", clock)
    cell = cells('[budget]\nseconds = 0.3\nepochs = 100000\n[[rules]]\nname = "bp"\n')[0]
    final = run_cell(cell, tmp_path, CPU, {})
    assert final["status"] == "complete"
    # stops at the first update whose reading reaches the budget: a reading moves the total by at
    # most two ticks (one more after an evaluation's closing reading), and the final closing reading adds one
    assert 0.3 <= final["train_seconds"] <= 0.3 + 3 * clock.tick + 1e-9
    assert final["updates"] < PER_EPOCH  # the epoch budget, far away, did not end it


def test_training_seconds_exclude_evaluation(tmp_path, monkeypatch):
    clock = FakeClock(tick=0.001)
    monkeypatch.setattr(engine, "clock", clock)
    real = engine.evaluate
    eval_seconds = 100.0  # far more than all of training's readings together

    def slow_evaluate(net, split):
        clock.advance(eval_seconds)
        return real(net, split)
    monkeypatch.setattr(engine, "evaluate", slow_evaluate)
    cell = cells('[budget]\nepochs = 2\n[[rules]]\nname = "bp"\n')[0]
    final = run_cell(cell, tmp_path, CPU, {})
    rec = read_cell(tmp_path / f"{cell.cell_id}.jsonl")
    # two evaluations (validation and test) at each point; the wall clock saw them all
    eval_total = 2 * eval_seconds * len(rec.evals)
    assert final["wall_seconds"] - final["train_seconds"] >= eval_total
    assert 0 < final["train_seconds"] < eval_seconds, "evaluation time leaked into training seconds"
    seconds = [e["train_seconds"] for e in rec.evals]
    assert seconds == sorted(seconds) and all(b - a < eval_seconds for a, b in itertools.pairwise(seconds))


def test_same_seed_same_results_on_cpu(tmp_path):
    cell = cells('[budget]\nepochs = 2\n[[rules]]\nname = "bp"\noptimizers = [{ name = "adam" }]\n')[0]
    lines = []
    for run in ("a", "b"):
        run_cell(cell, tmp_path / run, CPU, {})
        evals = read_cell(tmp_path / run / f"{cell.cell_id}.jsonl").evals
        lines.append([(e["updates"], e["train_loss"], e["val_accuracy"], e["val_loss"], e["test_accuracy"])
                      for e in evals])
    assert lines[0] == lines[1]
    other = cells('seeds = [1]\n[budget]\nepochs = 2\n[[rules]]\nname = "bp"\noptimizers = [{ name = "adam" }]\n')[0]
    run_cell(other, tmp_path / "c", CPU, {})
    evals = read_cell(tmp_path / "c" / f"{other.cell_id}.jsonl").evals
    assert [e["val_loss"] for e in evals] != [x[3] for x in lines[0]]


def test_float64(tmp_path):
    cell = cells('dtype = "float64"\n[budget]\nupdates = 20\n[[rules]]\nname = "bp"\n')[0]
    assert run_cell(cell, tmp_path, CPU, {})["status"] == "complete"


def test_diverging_rule_is_marked_and_suite_continues(tmp_path, misbehaving_rules):
    suite = parse_suite('seeds = [0, 1]\n[budget]\nepochs = 3\n[[tasks]]\nname = "digits"\n'
                        '[[rules]]\nname = "test_nan"\nparams = { at = 4 }\n[[rules]]\nname = "bp"\n')
    summary = run_suite(suite, tmp_path, "cpu", progress=False)
    assert summary.finished == {"diverged": 2, "complete": 2}
    by_rule = {}
    for rec in load_cells(tmp_path):
        by_rule.setdefault(rec.config["rule"]["name"], []).append(rec)
    for rec in by_rule["test_nan"]:
        assert rec.status == "diverged" and rec.final["updates"] == 4
        assert "non-finite" in rec.final["message"]
    assert all(r.status == "complete" for r in by_rule["bp"])


def test_error_in_a_cell_is_recorded_and_retried(tmp_path, monkeypatch):
    suite = parse_suite('[budget]\nupdates = 5\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n')
    cell = suite.cells[0]
    monkeypatch.setattr(engine, "build_cell", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("exploded")))
    summary = run_suite(suite, tmp_path, "cpu", progress=False)
    assert summary.finished == {"error": 1} and "exploded" in summary.errors[0]
    assert (tmp_path / "runs" / f"{cell.cell_id}.error.jsonl").exists()
    assert not is_complete(tmp_path / "runs", cell.cell_id)
    monkeypatch.undo()
    summary = run_suite(suite, tmp_path, "cpu", progress=False)
    assert summary.finished == {"complete": 1}
    assert not (tmp_path / "runs" / f"{cell.cell_id}.error.jsonl").exists()


def test_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(Exception, match="no CUDA device is available"):
        resolve_device("cuda")


def _complete_files(runs: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in runs.glob("*.jsonl") if not p.name.endswith(".error.jsonl")}


def _interruptible_session() -> None:
    """A new session whose SIGINT is the default: a shell's background job (`tests &`) starts
    with SIGINT ignored, the child would inherit that, and Python would not raise KeyboardInterrupt."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_mid_suite_then_rerun_resumes(tmp_path, jobs):
    suite = tmp_path / "long.toml"
    # a time budget, so that five cells cannot finish in the moment between the first complete
    # file and the signal even when this machine is busy
    suite.write_text('name = "long"\nseeds = 6\n[budget]\nseconds = 2.5\n'
                     '[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "plasticity.cli", "run", str(suite), "--out", str(out),
           "--no-progress", "--no-report", "--device", "cpu", "--jobs", jobs]
    # its own process group, signalled as a whole: what Ctrl-C in a terminal does (workers too)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible_session)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "runs").glob("*.jsonl")):
        time.sleep(0.05)
    time.sleep(0.3)  # let the next cell start, so that it is cut in the middle
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    runs = out / "runs"
    first = _complete_files(runs)
    assert 1 <= len(first) < 6
    for text in first.values():  # every file that looks complete is complete
        assert json.loads(text.strip().splitlines()[-1])["type"] == "final"
    assert list(runs.glob("*.jsonl.part")), "the interrupted cell leaves only a .part file"

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"6 cells: {len(first)} already complete" in done.stderr
    second = _complete_files(runs)
    assert len(second) == 6 and not list(runs.glob("*.part"))
    for name, text in first.items():
        assert second[name] == text, "a complete cell was run again"
    for text in second.values():
        kinds = [json.loads(line)["type"] for line in text.strip().splitlines()]
        assert kinds.count("header") == 1 and kinds.count("final") == 1


def test_jobs_run_cells_in_worker_processes(tmp_path):
    suite = parse_suite('seeds = 4\n[budget]\nepochs = 2\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n')
    summary = run_suite(suite, tmp_path, "cpu", jobs=2, progress=False)
    assert summary.finished == {"complete": 4}
    records = load_cells(tmp_path)
    assert sorted(r.config["seed"] for r in records) == [0, 1, 2, 3]
    assert {r.header["provenance"]["jobs"] for r in records} == {2}
    # worker processes give the same numbers as the main process
    serial = run_cell(suite.cells[0], tmp_path / "serial", CPU, {})
    parallel = next(r for r in records if r.config["seed"] == 0)
    assert parallel.final["test_accuracy"] == serial["test_accuracy"]


def test_cosine_schedule_decays_learning_rate_to_zero(tmp_path, monkeypatch):
    cell = cells('[budget]\nupdates = 40\n[[rules]]\nname = "bp"\n'
                 'optimizers = [{ name = "sgd", params = { lr = 0.1 }, schedule = "cosine" }]\n')[0]
    assert cell.labels["variant"] == "bp + sgd cosine"
    seen = []
    real = engine.lr_scheduler

    def spy(optimizer, schedule, max_updates):
        sched = real(optimizer, schedule, max_updates)
        seen.append(optimizer)
        return sched
    monkeypatch.setattr(engine, "lr_scheduler", spy)
    run_cell(cell, tmp_path, CPU, {})
    assert seen[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(Exception, match="schedule 'cosin' is not one of constant, cosine, linear"):
        cells('[[rules]]\nname = "bp"\noptimizers = [{ name = "sgd", schedule = "cosin" }]\n')
