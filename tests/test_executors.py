"""Executors: the [execution] table and its flags are checked like the rest of a suite; Ray and
Slurm (submitit's LocalExecutor, real subprocess jobs) give the local executor's numbers; a
worker or job killed mid-cell leaves nothing that reads as complete and the same run resumes;
GPU packing asks for the right resources without a GPU."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from plasticity import claims, executors
from plasticity.cli import main
from plasticity.errors import ConfigError, PlasticityError
from plasticity.executors import CellContext, Execution, parse_execution
from plasticity.executors import base as executors_base
from plasticity.executors.remote import FATAL, RemoteJob, run_remote_cell, worker_provenance
from plasticity.fingerprint import suite_manifest
from plasticity.results import read_cell
from plasticity.runner import run_suite
from plasticity.suite import parse_suite
from plasticity.writer import store_lines

REPO = Path(__file__).parents[1]
SUITE = 'name = "ex"\nseeds = 2\n[budget]\nupdates = 30\n[[tasks]]\nname = "digits"\n' \
        '[[rules]]\nname = "bp"\n[[rules]]\nname = "fa"\n'


def _numbers(out: Path) -> dict[str, list]:
    """Every evaluation's and final line's numbers of each finished cell (not its timings)."""
    found = {}
    for path in sorted((out / "runs").glob("*.jsonl")):
        rec = read_cell(path)
        found[path.name] = [[e["updates"], e["train_loss"], e["val_accuracy"], e["val_loss"], e["test_accuracy"]]
                            for e in rec.evals] + [[rec.final["status"], rec.final["test_accuracy"]]]
    return found


@pytest.fixture(scope="module")
def local_numbers(tmp_path_factory):
    """The reference: the suite on the local pool with two workers (one torch thread each)."""
    out = tmp_path_factory.mktemp("local") / "out"
    summary = run_suite(parse_suite(SUITE), out, "cpu", jobs=2, progress=False)
    assert summary.finished == {"complete": 4}
    return _numbers(out)


# ---- the [execution] table and the command line ------------------------------------------------

@pytest.mark.parametrize("table, message", [
    ('executor = "rayy"', r"\[execution\] executor: 'rayy' is not one of local, ray, slurm \(did you mean 'ray'\?\)"),
    ('executors = "ray"', r"\[execution\]: unknown key 'executors' \(did you mean 'executor'\?\); known keys: "
                          r"cells_per_gpu, executor, ray, slurm"),
    ('cells_per_gpu = 0', r"cells_per_gpu: expected a whole number in 1\.\.1,000,000, got 0"),
    ('slurm = { partion = "gpu" }', r"\[execution\]\.slurm: unknown key 'partion' \(did you mean 'partition'\?\)"),
    ('slurm = { time = "2h" }', r"\[execution\]\.slurm: 'time' has the wrong type: str '2h' \(expected int\)"),
    ('slurm = { mem = "lots" }', r"mem: 'lots' is not a Slurm memory size such as 16G"),
    ('slurm = { backend = "lsf" }', r"backend: 'lsf' is not one of slurm, local"),
    ('slurm = { sbatch = { qos = 1.5 } }', r"sbatch\.qos: an sbatch option is a string, a whole number or true"),
    ('ray = { cpus = 0 }', r"\[execution\]\.ray cpus: CPUs per cell must lie in 0 < cpus"),
    ('executor = "slurm"\ncells_per_gpu = 4', r"cells_per_gpu = 4 packs cells onto GPUs, but the Slurm jobs ask "
                                              r"for none: set \[execution.slurm\] gpus"),
])
def test_bad_execution_tables_name_the_file_the_key_and_the_choices(tmp_path, table, message):
    path = tmp_path / "bad.toml"
    path.write_text(SUITE.replace('name = "ex"\n', "") + f"[execution]\n{table}\n")
    from plasticity.suite import load_suite
    with pytest.raises(ConfigError, match=message) as err:
        load_suite(path)
    assert str(path) in str(err.value)


def test_the_table_is_read_and_the_command_line_wins():
    suite = parse_suite(SUITE + '[execution]\nexecutor = "slurm"\ncells_per_gpu = 2\n'
                        '[execution.slurm]\npartition = "gpu"\ngpus = 1\nmem = 16000\nsbatch = { account = "lab" }\n')
    ex = suite.execution
    assert (ex.executor, ex.cells_per_gpu, ex.slurm.partition, ex.slurm.gpus, ex.slurm.mem) == \
        ("slurm", 2, "gpu", 1, "16000M")
    over = ex.with_overrides("ray", "ray://head:10001", 4, {"time": 30, "sbatch": {"qos": "low"}})
    assert (over.executor, over.ray.address, over.cells_per_gpu, over.slurm.time) == ("ray", "ray://head:10001", 4, 30)
    assert over.slurm.partition == "gpu" and over.slurm.sbatch == {"account": "lab", "qos": "low"}
    assert parse_suite(SUITE).execution == Execution()  # no table: the local pool
    assert suite.cells[0].cell_id == parse_suite(SUITE).cells[0].cell_id, "where a cell runs is not its identity"


def test_slurm_options_parse_as_typed_and_bad_ones_stop_before_anything_runs(tmp_path, capsys):
    assert executors.parse_slurm_option("time=120") == {"time": 120}
    assert executors.parse_slurm_option("partition=gpu") == {"partition": "gpu"}
    assert executors.parse_slurm_option("sbatch={ qos = 'low' }") == {"sbatch": {"qos": "low"}}
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(SUITE)
    assert main(["run", str(suite_file), "--out", str(tmp_path / "o"), "--executor", "slurm",
                 "--slurm", "partitio=gpu"]) == 2
    assert "--slurm: unknown key 'partitio' (did you mean 'partition'?)" in capsys.readouterr().err
    assert main(["run", str(suite_file), "--out", str(tmp_path / "o"), "--executor", "ray", "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_missing_extra_names_the_pip_command(monkeypatch):
    real = executors_base.importlib.import_module

    def missing(name):
        if name in ("ray", "submitit"):
            raise ImportError(f"No module named '{name}'")
        return real(name)

    monkeypatch.setattr(executors_base.importlib, "import_module", missing)
    with pytest.raises(PlasticityError, match=r"--executor ray needs the 'ray' package.*pip install -e '\.\[ray\]'"):
        executors.require("ray")
    with pytest.raises(PlasticityError, match=r"pip install -e '\.\[slurm\]'"):
        executors.require("slurm")


def test_the_command_names_the_missing_extra_before_anything_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(SUITE)
    assert main(["run", str(suite_file), "--out", str(tmp_path / "o"), "--executor", "slurm", "--no-report"]) == 2
    assert "pip install -e '.[slurm]'" in capsys.readouterr().err
    assert not list((tmp_path / "o" / "runs").glob("*.jsonl*"))


# ---- lines handed back by a worker ------------------------------------------------------------

def test_handed_back_lines_are_stored_byte_for_byte_and_a_cut_cell_is_refused(tmp_path):
    suite = parse_suite(SUITE)
    cell = suite.cells[0]
    job = RemoteJob("cpu", {}, None, (), "ray", threads=torch.get_num_threads())
    outcome = run_remote_cell(cell, job, suite_manifest([cell])[cell.cell_id])
    lines = outcome["lines"]
    assert outcome["status"] == "complete" and len(lines) > 3
    stored = store_lines(tmp_path, cell.cell_id, lines)
    assert stored.read_text().splitlines() == lines
    read_cell(stored)
    with pytest.raises(PlasticityError, match="do not run from a header to a final line"):
        store_lines(tmp_path / "cut", cell.cell_id, lines[:-1])  # a worker killed before its final line
    assert not list((tmp_path / "cut").glob("*.jsonl"))


def test_a_node_with_other_code_refuses_the_cell_and_a_plasticity_error_stops_the_run(tmp_path, monkeypatch):
    cell = parse_suite(SUITE).cells[0]
    job = RemoteJob("cpu", {}, None, (), "slurm", threads=1, runs_dir=tmp_path)
    expected = suite_manifest([cell])[cell.cell_id]
    other = {"hash": "0" * 16, "parts": {**expected["parts"], "engine": "changed"}}
    outcome = run_remote_cell(cell, job, other)
    assert outcome["status"] == "error" and "fingerprint differs in: engine" in outcome["message"]
    assert not list(tmp_path.iterdir()), "nothing written"
    mnist = parse_suite('[[tasks]]\nname = "mnist"\n[[rules]]\nname = "bp"\n').cells[0]
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")
    job = RemoteJob("cpu", {}, tmp_path / "no-data", (), "slurm", threads=1, runs_dir=tmp_path)
    outcome = run_remote_cell(mnist, job, suite_manifest([mnist])[mnist.cell_id])
    assert outcome["status"] == FATAL and "mnist" in outcome["message"].lower()


# ---- packing cells onto GPUs (the requests and the records; no GPU needed) ----------------------

def test_ray_asks_for_a_share_of_a_gpu_per_cell_and_counts_the_slots():
    from plasticity.executors.ray import ray_resources, ray_slots

    packed = Execution("ray", cells_per_gpu=4)
    gpus = {"CPU": 32.0, "GPU": 2.0}
    assert ray_resources(packed, "auto", gpus) == {"num_cpus": 1.0, "num_gpus": 0.25}
    assert ray_slots(ray_resources(packed, "auto", gpus), gpus) == 8  # 2 GPUs x 4 cells, CPUs to spare
    assert ray_resources(packed, "cpu", gpus)["num_gpus"] == 0
    assert ray_resources(packed, "auto", {"CPU": 2.0})["num_gpus"] == 0
    assert ray_slots(ray_resources(packed, "auto", {"CPU": 2.0}), {"CPU": 2.0}) == 2
    with pytest.raises(PlasticityError, match="--device cuda: the Ray cluster has no GPUs"):
        ray_resources(packed, "cuda", {"CPU": 2.0})


def test_slurm_packs_several_tasks_per_gpu_job_each_with_its_threads():
    submitit = pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    from plasticity.executors.slurm import slurm_parameters

    ex = parse_execution({"executor": "slurm", "cells_per_gpu": 4,
                          "slurm": {"partition": "gpu", "gpus": 2, "cpus": 3, "mem": "64G", "time": 90,
                                    "sbatch": {"account": "lab"}, "setup": ["module load cuda"]}}, "s.toml")
    params = slurm_parameters(ex, jobs=16)
    assert (params["ntasks_per_node"], params["cpus_per_task"], params["gpus_per_node"]) == (8, 3, 2)
    assert params["array_parallelism"] == 2  # 16 cells at once = 2 jobs of 8
    sbatch = submitit.slurm.slurm._make_sbatch_string(command="python -m x", folder="/shared/jobs", map_count=5,
                                                      **params)
    for line in ("--ntasks-per-node=8", "--cpus-per-task=3", "--gpus-per-node=2", "--partition=gpu",
                 "--mem=64G", "--time=90", "--array=0-4%2", "--account=lab", "module load cuda"):
        assert line in sbatch, line
    assert slurm_parameters(parse_execution({"executor": "slurm"}, "s"), None)["ntasks_per_node"] == 1


def test_each_task_of_a_packed_job_runs_its_own_cell_on_its_gpu(monkeypatch):
    submitit = pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    from plasticity.executors import slurm

    cells = parse_suite(SUITE).cells[:3]
    job = RemoteJob("cuda", {}, None, (), "slurm", threads=3, cells_per_gpu=2)
    calls = []
    monkeypatch.setattr(slurm, "run_remote_cell", lambda cell, job, exp, gpu_slot, trial=None: calls.append((cell, gpu_slot)))
    tasks = slurm.CellTasks(cells, [{}] * 3, job, gpus=2)
    for rank in range(4):
        monkeypatch.setattr(submitit, "JobEnvironment", lambda rank=rank: type("E", (), {"local_rank": rank}))
        tasks()
    assert calls == [(cells[0], 0), (cells[1], 0), (cells[2], 1)]  # rank 3 has no cell: the array's last job
    assert isinstance(tasks.checkpoint(), submitit.helpers.DelayedSubmission)  # requeued on preemption


def test_provenance_records_the_node_the_gpu_model_and_how_many_cells_shared_it(monkeypatch):
    job = RemoteJob("cuda", {"git_commit": "abc"}, None, (), "ray", threads=2, cells_per_gpu=4)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "NVIDIA H100 80GB HBM3")
    prov = worker_provenance(job.provenance, torch.device("cuda:0"), job, job.threads)
    assert (prov["gpu_model"], prov["cells_per_gpu"], prov["torch_threads"], prov["git_commit"]) == \
        ("NVIDIA H100 80GB HBM3", 4, 2, "abc")
    assert prov["node"] and prov["executor"] == "ray"
    cpu = worker_provenance({}, torch.device("cpu"), job, 1)
    assert cpu["gpu_model"] is None and cpu["cells_per_gpu"] is None


# ---- Ray: two CPUs started here ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_numbers_and_the_bar_counts_its_cells(ray_cluster, local_numbers, tmp_path, capfd):
    out = tmp_path / "ray"
    summary = run_suite(parse_suite(SUITE), out, "cpu", execution=Execution("ray"))
    assert summary.finished == {"complete": 4}
    assert _numbers(out) == local_numbers
    assert "4/4" in capfd.readouterr().err
    prov = read_cell(next((out / "runs").glob("*.jsonl"))).header["provenance"]
    assert prov["executor"] == "ray" and prov["node"] and prov["torch_threads"] == 1
    assert not list((out / "runs").glob("*.lock")) and not list((out / "runs").glob("*.part"))


BOOM_RULE = """
from dataclasses import dataclass
from plasticity import LearningRule, register_rule


@register_rule("test_boom_remote")
class Boom(LearningRule):
    @dataclass(frozen=True)
    class Params:
        pass

    uses_optimizer = False

    def update(self, x, y):
        raise RuntimeError("boom at the first update")
"""


def test_a_cell_that_raises_on_ray_is_kept_with_its_traceback_as_a_local_one_is(ray_cluster, tmp_path):
    from plasticity import registry

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "boom.py").write_text(BOOM_RULE)
    text = (f'plugins = ["{plugins}"]\n[budget]\nupdates = 5\n[[tasks]]\nname = "digits"\n'
            f'[[rules]]\nname = "test_boom_remote"\n')
    try:
        summary = {}
        for where, execution in (("local", None), ("ray", Execution("ray"))):
            summary[where] = run_suite(parse_suite(text), tmp_path / where, "cpu", progress=False,
                                       execution=execution)
    finally:
        registry._unregister("rule", "test_boom_remote")
    assert summary["ray"].errors == summary["local"].errors and "boom at the first update" in summary["ray"].errors[0]
    [local], [remote] = ((tmp_path / w / "runs").glob("*.error.jsonl") for w in ("local", "ray"))
    assert local.name == remote.name
    tracebacks = [read_cell(p).final["traceback"] for p in (local, remote)]
    assert all("RuntimeError: boom at the first update" in t and "in update" in t for t in tracebacks)


def _part_on_a_worker(cell_id: str) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), "plasticity-cell-*", f"{cell_id}.jsonl.part"))


def _forget_killed_workers(cells) -> None:
    """A worker killed outright leaves its private folder; cell ids repeat from run to run, so an old
    folder would read as this run's cell being mid-run."""
    for c in cells:
        for part in _part_on_a_worker(c.cell_id):
            shutil.rmtree(os.path.dirname(part), ignore_errors=True)


def test_a_ray_worker_killed_mid_cell_leaves_nothing_and_the_rerun_resumes(ray_cluster, tmp_path):
    from plasticity.executors.ray import RayExecutor

    suite = parse_suite(SUITE.replace("updates = 30", "seconds = 60"))
    cell = suite.cells[0]
    _forget_killed_workers([cell])
    out = tmp_path / "out"
    runs = out / "runs"
    runs.mkdir(parents=True)
    ctx = CellContext(runs, "cpu", {}, None, [], suite_manifest([cell]), show=False)
    ex = RayExecutor(Execution("ray"), ctx, jobs=1)
    ex.submit(cell)
    deadline = time.time() + 60
    while time.time() < deadline and not _part_on_a_worker(cell.cell_id):
        time.sleep(0.1)
    assert _part_on_a_worker(cell.cell_id), "the cell never started"
    assert claims.read_holder(runs / f"{cell.cell_id}.lock")["pid"] == os.getpid(), "the driver holds the claim"
    ray_cluster.cancel(next(iter(ex.pending)), force=True)  # the worker process is killed
    [(done, outcome)] = ex.wait()
    assert done is cell and outcome["status"] == "error" and "Ray task failed" in outcome["message"]
    assert not list(runs.glob("*.jsonl")) and not list(runs.glob("*.lock")), "nothing reads as complete"
    for part in _part_on_a_worker(cell.cell_id):  # the killed worker's private folder (the node's /tmp)
        shutil.rmtree(Path(part).parent, ignore_errors=True)

    quick = parse_suite(SUITE)  # the same cells, a short budget: the rerun runs all, then skips all
    first = run_suite(quick, out, "cpu", execution=Execution("ray"), progress=False)
    assert first.finished == {"complete": 4}
    again = run_suite(quick, out, "cpu", execution=Execution("ray"), progress=False)
    assert (again.skipped, again.finished) == (4, {})


# ---- Slurm through submitit's LocalExecutor: real subprocess jobs -----------------------------

SLURM_LOCAL = {"executor": "slurm", "slurm": {"backend": "local", "time": 10}}


def test_slurm_jobs_give_the_local_numbers(local_numbers, tmp_path):
    pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    out = tmp_path / "slurm"
    suite = parse_suite(SUITE)
    suite.cells = suite.cells[::2]  # two of the four cells (one wave of jobs: each job starts a Python)
    summary = run_suite(suite, out, "cpu", jobs=2, progress=False, execution=parse_execution(SLURM_LOCAL, "test"))
    assert summary.finished == {"complete": 2}
    mine = _numbers(out)
    assert len(mine) == 2 and mine == {name: local_numbers[name] for name in mine}
    prov = read_cell(next((out / "runs").glob("*.jsonl"))).header["provenance"]
    assert prov["executor"] == "slurm" and prov["torch_threads"] == 1
    assert list((out / "slurm").glob("*/*_log.err")), "submitit's job folder sits beside runs/"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_slurm_job_killed_mid_cell_is_reported_and_the_rerun_resumes(tmp_path):
    pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    suite_file = tmp_path / "s.toml"
    suite_file.write_text('name = "kill"\nseeds = 2\n[budget]\nseconds = 3\n[[tasks]]\nname = "digits"\n'
                          '[[rules]]\nname = "bp"\n')
    out = tmp_path / "out"
    command = [sys.executable, "-m", "plasticity.cli", "run", str(suite_file), "--out", str(out), "--no-progress",
               "--no-report", "--device", "cpu", "--jobs", "2", "--executor", "slurm", "--slurm", "backend=local"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = out / "runs"
    holder, deadline = None, time.time() + 120
    while holder is None and time.time() < deadline:  # a job's task process, from the claim it wrote
        parts = list(runs.glob("*.jsonl.part")) if runs.is_dir() else []
        if parts:
            holder = claims.read_holder(parts[0].with_name(parts[0].name.replace(".jsonl.part", ".lock")))
        time.sleep(0.05)
    assert holder and holder["pid"] != proc.pid, "the cell runs in a job, not in the driver"
    os.kill(holder["pid"], signal.SIGKILL)  # what the out-of-memory killer or a lost node does
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "its Slurm job" in err and "failed" in err and "Traceback" not in err.split("error:")[-1]
    for path in runs.glob("*.jsonl"):
        read_cell(path)  # every file named complete is complete
    assert len(list(runs.glob("*.jsonl"))) == 1 and list(runs.glob("*.jsonl.part"))
    from plasticity.suite import load_suite
    rerun = run_suite(load_suite(suite_file), out, "cpu", jobs=2, progress=False,
                      execution=parse_execution(SLURM_LOCAL, "test"))
    assert (rerun.skipped, rerun.finished, rerun.by_other_run) == (1, {"complete": 1}, 0)
    assert len(list(runs.glob("*.jsonl"))) == 2 and not list(runs.glob("*.part"))
    for path in runs.glob("*.jsonl"):
        assert json.loads(path.read_text().splitlines()[-1])["status"] == "complete"


def _start_long_run(tmp_path: Path, seeds: int, flags: list[str], **popen) -> tuple[Path, Path, subprocess.Popen]:
    """`plasticity run` of `seeds` digits BP cells of 60 s each, started in the background with `flags`."""
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(f'name = "sig"\nseeds = {seeds}\n[budget]\nseconds = 60\n[[tasks]]\nname = "digits"\n'
                          '[[rules]]\nname = "bp"\n')
    _forget_killed_workers(parse_suite(suite_file.read_text()).cells)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "plasticity.cli", "run", str(suite_file), "--out", str(out),
                             "--no-progress", "--no-report", "--device", "cpu", *flags],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)
    return suite_file, out, proc


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_sigterm_to_a_ray_run_stops_it_as_locally_and_leaves_nothing(tmp_path):
    """Ray's own SIGTERM handler aborts the process; the run keeps its own (exit 128 + 15, its message)."""
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    suite_file, out, proc = _start_long_run(tmp_path, 2, ["--executor", "ray", "--jobs", "2"])
    cells = parse_suite(suite_file.read_text()).cells
    deadline = time.time() + 120
    while time.time() < deadline and not all(_part_on_a_worker(c.cell_id) for c in cells):
        time.sleep(0.1)  # both cells are mid-run on their workers
    assert all(_part_on_a_worker(c.cell_id) for c in cells)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert not list((out / "runs").iterdir()), "no file, no claim left behind"


def test_a_preempted_slurm_job_is_requeued_and_its_cell_starts_again(tmp_path):
    """submitit's preemption signal (USR2) mid-cell: the job requeues itself and the cell runs to its end."""
    pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    from plasticity.executors.slurm import SlurmExecutor

    suite = parse_suite('seeds = [0]\n[budget]\nseconds = 3\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n')
    [cell] = suite.cells
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    ctx = CellContext(runs, "cpu", {}, None, [], suite_manifest([cell]), show=False)
    # an hour's limit: a signal 3 s into it is a preemption, not the job's time running out
    ex = SlurmExecutor(parse_execution({"executor": "slurm", "slurm": {"backend": "local", "time": 60}}, "test"),
                       ctx, jobs=1)
    ex.submit(cell)
    ex._flush()
    [(job, _)] = ex.pending
    part = runs / f"{cell.cell_id}.jsonl.part"
    deadline = time.time() + 120
    while time.time() < deadline and not part.exists():
        time.sleep(0.05)
    holder = None
    while holder is None and time.time() < deadline:
        holder = claims.read_holder(runs / f"{cell.cell_id}.lock")
    os.kill(holder["pid"], signal.SIGUSR2)  # what Slurm sends a job's tasks before preempting it (--signal)
    [(done, outcome)] = ex.wait()
    assert done is cell and outcome["status"] == "complete", outcome
    log = Path(job.paths.stderr).read_text() + Path(job.paths.stdout).read_text()
    assert "this job is preempted" in log and "Requeued" in log, log
    rec = read_cell(runs / f"{cell.cell_id}.jsonl")
    assert rec.final["status"] == "complete" and rec.header["provenance"]["executor"] == "slurm"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for a command it starts in the background


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_sigterm_to_a_slurm_run_ends_its_jobs_even_from_a_background_shell(tmp_path):
    pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    _, out, proc = _start_long_run(tmp_path, 1, ["--executor", "slurm", "--slurm", "backend=local"],
                                   preexec_fn=_ignore_sigint)
    holder, deadline = None, time.time() + 120
    while holder is None and time.time() < deadline:
        parts = list((out / "runs").glob("*.jsonl.part")) if (out / "runs").is_dir() else []
        holder = claims.read_holder(parts[0].with_name(parts[0].name[:-len(".jsonl.part")] + ".lock")) if parts else None
        time.sleep(0.05)
    assert holder, "the job never started its cell"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "interrupted by SIGTERM" in err, err
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{holder['pid']}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{holder['pid']}").exists(), "the job's task outlived the run"
    assert not list((out / "runs").glob("*.jsonl"))


def test_every_executor_takes_cells_one_at_a_time_behind_one_interface(local_numbers, tmp_path):
    """What a search needs: submit a cell, wait for it, submit the next (here on the local pool)."""
    from plasticity.executors import open_executor

    suite = parse_suite(SUITE)
    runs = tmp_path / "runs"
    runs.mkdir()
    ctx = CellContext(runs, "cpu", {}, None, [], suite_manifest(suite.cells), show=False)
    ex = open_executor(Execution(), ctx, jobs=2)
    try:
        finished = []
        for cell in suite.cells:
            ex.submit(cell)
            if ex.in_flight == ex.slots:
                finished += ex.wait()
        while ex.in_flight:
            finished += ex.wait()
    finally:
        ex.close()
    assert sorted(c.cell_id for c, _ in finished) == sorted(c.cell_id for c in suite.cells)
    assert all(outcome["status"] == "complete" for _, outcome in finished)
    assert _numbers(tmp_path) == local_numbers


# ---- a search's trials through the executors (the study stays with the driver) --------------------

SEARCH = SUITE.replace("seeds = 2\n", "") + """[search]
trials = {trials}
budget = {{ updates = 20 }}
final_seeds = 1
sampler = "random"
pruner = "{pruner}"
prune_after = 0.3
[search.optimizer]
lr = {{ log = [1e-3, 1e-1] }}
[search.space.fa]
rule = {{ feedback_scale = {{ log = [0.1, 3.0] }} }}
"""


def _trials(summary: dict) -> dict:
    """Each trial's state, sampled parameters and objective, by (rule, number)."""
    return {(s["rule"], t["number"]): (t["state"], t["params"], t["value"])
            for s in summary["studies"] for t in s["trials"]}


@pytest.fixture(scope="module")
def local_search(tmp_path_factory):
    """The reference: the search in this process, one torch thread (as each remote cell has)."""
    from plasticity.search import run_search

    out = tmp_path_factory.mktemp("search") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_search(parse_suite(SEARCH.format(trials=2, pruner="none")), out, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return summary, _numbers(out / "search")


@pytest.mark.parametrize("where", ["ray", "slurm"])
def test_a_search_runs_its_trials_on_ray_and_slurm_with_the_local_results(where, local_search, tmp_path, request):
    """Same sampled parameters, objectives and trial cells as the local search; the node is recorded."""
    from plasticity.search import run_search

    if where == "ray":
        request.getfixturevalue("ray_cluster")
        execution = Execution("ray")
    else:
        pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
        execution = parse_execution(SLURM_LOCAL, "test")
    out = tmp_path / where
    summary = run_search(parse_suite(SEARCH.format(trials=2, pruner="none")), out, device="cpu", jobs=2, progress=False,
                         execution=execution)
    reference, numbers = local_search
    assert _trials(summary) == _trials(reference)
    assert all(state == "COMPLETE" for state, _, _ in _trials(summary).values())
    assert _numbers(out / "search") == numbers
    prov = read_cell(next((out / "search" / "runs").glob("*.jsonl"))).header["provenance"]
    assert prov["executor"] == where
    assert not list((out / "search").rglob("*.lock")) and not list((out / "search" / "runs").glob("*.part"))


def test_remote_trials_report_to_the_pruner_through_the_storage(ray_cluster, tmp_path):
    """Each Ray worker reports its trial's running objective to the study (the driver only asks and
    tells), so the median pruner sees every trial's curve and may stop the poor ones."""
    import optuna

    from plasticity.search import run_search
    from plasticity.search.study import default_storage

    out = tmp_path / "pruned"
    summary = run_search(parse_suite(SEARCH.format(trials=4, pruner="median")), out, device="cpu", jobs=2,
                         progress=False, execution=Execution("ray"))
    for study in summary["studies"]:
        trials = optuna.load_study(study_name=study["study"], storage=default_storage(out)).get_trials()
        assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
        assert all(t.intermediate_values for t in trials), "a worker's reports reached the storage"


def test_a_node_that_cannot_reach_the_storage_stops_the_search_naming_it(tmp_path):
    import optuna

    from plasticity.executors.remote import RemoteTrial
    from plasticity.search.objective import trial_reporter

    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # what a node without the shared file system opens
    trial = RemoteTrial(url, "s/digits/bp/0123456789", 0, "val_accuracy", None, {"updates": 20}, 0.3,
                        optuna.pruners.MedianPruner())
    with pytest.raises(PlasticityError, match=r"cannot use the search's storage sqlite:///.*elsewhere\.db.*"
                                              r"give --storage a database every node reaches"):
        trial_reporter(trial)
    assert trial_reporter(RemoteTrial(url, "x", 0, "val_accuracy", None, {}, 0.3, None))([]) is None


@pytest.mark.parametrize("option, flag, key", [
    ('time = "01:00:00"', "--time", r"time \(minutes per job\)"),
    ('"cpus-per-task" = 3', "--cpus-per-task", r"cpus \(per cell\)"),
    ("cpus_per_task = 3", "--cpus-per-task", r"cpus \(per cell\)"),
    ("c = 3", "-c", r"cpus \(per cell\)"),
    ('"--partition" = "gpu"', "--partition", "partition"),
    ('mem = "8G"', "--mem", "mem"),
    ('"gpus-per-node" = 2', "--gpus-per-node", r"gpus \(per job\)"),
    ('array = "0-9"', "--array", "array_parallelism"),
    ("ntasks-per-node = 4", "--ntasks-per-node", "gpus and cells_per_gpu"),
    ('output = "x.log"', "--output", "folder"),
])
def test_sbatch_options_that_a_dedicated_key_sets_are_refused_naming_the_key(tmp_path, option, flag, key):
    """The job script would carry both settings (or one would silently win): use the key instead."""
    path = tmp_path / "s.toml"
    path.write_text(SUITE + "[execution.slurm]\nsbatch = { " + option + " }\n")
    from plasticity.suite import load_suite
    with pytest.raises(ConfigError, match=rf"\[execution\]\.slurm sbatch\.\S+: {flag} is already set by "
                                          rf"\[execution\.slurm\] {key}[^;]*; set it there instead of in sbatch") as err:
        load_suite(path)
    assert str(path) in str(err.value)
    # the same through --slurm on the command line
    with pytest.raises(ConfigError, match=rf"--slurm sbatch\.\S+: {flag} is already set"):
        Execution().with_overrides("slurm", slurm=executors.parse_slurm_option("sbatch={ " + option + " }"))


def test_sbatch_options_no_key_sets_are_kept():
    ex = parse_execution({"slurm": {"sbatch": {"account": "lab", "qos": "low", "C": "a100", "mem-per-cpu": "4G",
                                               "exclusive": True}}}, "s.toml")
    assert ex.slurm.sbatch == {"account": "lab", "qos": "low", "C": "a100", "mem-per-cpu": "4G", "exclusive": True}


@pytest.mark.parametrize("flags, message", [
    (["--ray-address", "x"], "--ray-address applies to --executor ray, but this run uses the local executor "
                             "(the default): add --executor ray, or drop --ray-address"),
    (["--slurm", "time=5"], "--slurm applies to --executor slurm, but this run uses the local executor"),
    (["--cells-per-gpu", "4"], "--cells-per-gpu applies to --executor ray or --executor slurm, but this run uses "
                               "the local executor (the default)"),
    (["--executor", "ray", "--slurm", "time=5"], "--slurm applies to --executor slurm, but this run uses the ray "
                                                 "executor (--executor)"),
    (["--executor", "local", "--cells-per-gpu", "2"], "uses the local executor (--executor)"),
])
def test_flags_of_another_executor_are_refused(tmp_path, capsys, flags, message):
    """Whoever typed them expected that executor: the run would silently go elsewhere."""
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(SUITE)
    assert main(["run", str(suite_file), "--out", str(tmp_path / "o"), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plasticity: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_suite_tables_executor_is_named_when_a_flag_does_not_fit(tmp_path, capsys):
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(SUITE + '[execution]\nexecutor = "ray"\n')
    assert main(["run", str(suite_file), "--out", str(tmp_path / "o"), "--slurm", "time=5"]) == 2
    assert "uses the ray executor (the suite's [execution] table)" in capsys.readouterr().err


def test_an_executor_that_cannot_start_leaves_the_output_folder_unwritten(tmp_path, capsys, monkeypatch):
    """No srun here (or Ray unreachable): refused before suite.json or runs/ are written."""
    pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    from plasticity.executors import slurm

    def no_srun(self, *args, **kwargs):
        raise PlasticityError('--executor slurm: Could not detect "srun", are you indeed on a slurm cluster?')

    monkeypatch.setattr(slurm.SlurmExecutor, "__init__", no_srun)
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(SUITE)
    out = tmp_path / "o"
    assert main(["run", str(suite_file), "--out", str(out), "--executor", "slurm", "--no-progress"]) == 2
    assert 'Could not detect "srun"' in capsys.readouterr().err
    assert not out.exists()
