"""The results store under hostile or unlucky use: damaged run files, two runs of one folder,
signals and orphaned workers, and a progress bar that costs the training loop nothing."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from plasticity import claims, pool, results, runner
from plasticity.claims import CellHeld, claim_cell
from plasticity.cli import main
from plasticity.engine import Progress
from plasticity.results import MalformedRun, is_complete, read_cell, scan_runs
from plasticity.runner import run_suite
from plasticity.suite import parse_suite
from plasticity.worker import CellBar, run_cell
from plasticity.writer import CellWriter

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parent.parent
SUITE = 'name = "safety"\nseeds = [0, 1]\n[budget]\nupdates = 12\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n'


@pytest.fixture(autouse=True)
def _fresh_warnings():
    results._warned.clear()  # each test sees its own warnings
    yield
    results._warned.clear()


@pytest.fixture(scope="module")
def good_lines(tmp_path_factory) -> tuple[str, list[str]]:
    """A real complete run file (cell id, lines) to damage in each test."""
    cell = parse_suite(SUITE).cells[0]
    folder = tmp_path_factory.mktemp("good")
    run_cell(cell, folder, CPU, {})
    return cell.cell_id, (folder / f"{cell.cell_id}.jsonl").read_text().splitlines(keepends=True)


def _edit(lines: list[str], how: str) -> bytes:
    header, evals, final = json.loads(lines[0]), [json.loads(x) for x in lines[1:-1]], json.loads(lines[-1])
    dump = lambda *recs: "".join(json.dumps(r) + "\n" for r in recs).encode()  # noqa: E731
    if how == "null line":
        return dump(header, *evals[:2]).rstrip(b"\n") + b"\nnull\n" + dump(*evals[2:], final)
    if how == "list line":
        return dump(header, *evals) + b"[1, 2]\n" + dump(final)
    if how == "not utf-8":
        return dump(header, *evals[:1]) + b'{"type": "eval", "x": "\xff\xfe"}\n' + dump(*evals[1:], final)
    if how == "header without cell_id":
        return dump({k: v for k, v in header.items() if k != "cell_id"}, *evals, final)
    if how == "header cell_id of another cell":
        return dump({**header, "cell_id": "digits-bp-sgd-s9-000000000000"}, *evals, final)
    if how == "an evaluation deleted":
        return dump(header, *evals[:3], *evals[4:], final)
    if how == "last evaluation deleted":
        return dump(header, *evals[:-1], final)
    if how == "no final line":
        return dump(header, *evals)
    if how == "two final lines":
        return dump(header, *evals, final, final)
    if how == "eval after final":
        return dump(header, *evals, final, evals[-1])
    if how == "updates as text":
        return dump(header, {**evals[0], "updates": "0"}, *evals[1:], final)
    if how == "updates as bool":
        return dump(header, *evals[:-1], {**evals[-1], "updates": True}, final)
    if how == "accuracy as text":
        return dump(header, *evals[:-1], {**evals[-1], "val_accuracy": "0.9"}, final)
    if how == "config not an object":
        return dump({**header, "config": [1]}, *evals, final)
    if how == "unknown line type":
        return dump(header, {"type": "comment"}, *evals, final)
    if how == "header not first":
        return dump(evals[0], header, *evals[1:], final)
    if how == "error status in a complete file":
        return dump(header, *evals, {**final, "status": "error"})
    if how == "status not a string":
        return dump(header, *evals, {**final, "status": None})
    if how == "final without evaluation count":
        return dump(header, *evals, {k: v for k, v in final.items() if k != "evals"})
    if how == "updates go back":
        return dump(header, *evals[:-1], {**evals[-1], "updates": 0}, {**final, "updates": 0})
    if how == "torn middle line":
        return dump(header, *evals[:2]) + b'{"type": "ev\n' + dump(*evals[2:], final)
    if how == "deeply nested":
        return dump(header, *evals) + b"[" * 100000 + b"]" * 100000 + b"\n" + dump(final)
    if how == "empty":
        return b""
    raise AssertionError(how)


EDITS = ["null line", "list line", "not utf-8", "header without cell_id", "header cell_id of another cell",
         "an evaluation deleted", "last evaluation deleted", "no final line", "two final lines", "eval after final",
         "updates as text", "updates as bool", "accuracy as text", "config not an object", "unknown line type",
         "header not first", "error status in a complete file", "status not a string",
         "final without evaluation count", "updates go back", "torn middle line", "deeply nested", "empty"]


def test_a_good_file_reads_and_records_its_evaluation_count(good_lines, tmp_path):
    cell_id, lines = good_lines
    (tmp_path / f"{cell_id}.jsonl").write_text("".join(lines))
    rec = read_cell(tmp_path / f"{cell_id}.jsonl")
    assert rec.status == "complete" and rec.final["evals"] == len(rec.evals) == len(lines) - 2
    assert is_complete(tmp_path, cell_id)


@pytest.mark.parametrize("how", EDITS)
def test_malformed_file_is_named_treated_as_incomplete_and_never_stops_the_rest(good_lines, tmp_path, how):
    cell_id, lines = good_lines
    runs = tmp_path / "runs"
    runs.mkdir()
    bad = runs / f"{cell_id}.jsonl"
    bad.write_bytes(_edit(lines, how))
    other = "digits-bp-sgd-s7-aaaaaaaaaaaa"  # a good file of another cell beside it
    (runs / f"{other}.jsonl").write_text("".join(lines).replace(cell_id, other))
    with pytest.raises(MalformedRun) as info:
        read_cell(bad)
    assert bad.name in str(info.value)
    assert not is_complete(runs, cell_id)
    cells, malformed = scan_runs(tmp_path)
    assert [c.header["cell_id"] for c in cells] == [other]
    assert [m.path.name for m in malformed] == [bad.name]


def test_report_names_every_malformed_file_in_one_warning_and_its_problems_section(good_lines, tmp_path, capsys):
    cell_id, lines = good_lines
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / f"{cell_id}.jsonl").write_text("".join(lines))
    names = []
    for i, how in enumerate(EDITS):
        other = f"digits-bp-sgd-s{100 + i}-aaaaaaaaaaaa"
        names.append(f"{other}.jsonl")
        (runs / names[-1]).write_bytes(_edit([x.replace(cell_id, other) for x in lines], how))
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Traceback" not in err
    assert all(name in warnings[0] for name in names)
    html = (tmp_path / "index.html").read_text()
    problems = html[html.index('id="problems"'):]
    assert problems.count(">malformed<") == len(EDITS) and all(name in problems for name in names)
    assert "bp" in html[:html.index('id="problems"')], "the good cell is still reported"


def test_a_torn_last_line_of_a_part_file_is_a_crash_not_damage(good_lines, tmp_path):
    cell_id, lines = good_lines
    part = tmp_path / f"{cell_id}.jsonl.part"
    part.write_text("".join(lines[:4]) + lines[4][:10])
    rec = read_cell(part)
    assert rec.status == "incomplete" and len(rec.evals) == 3
    part.write_text("")
    assert read_cell(part) is None  # killed before the header was written: nothing to show


def _not_files(runs: Path, cell_id: str, good: str) -> dict[str, Path]:
    """Things named like run files that are not regular files one may read."""
    made = {}
    (runs / f"{cell_id}.jsonl").mkdir()
    made["directory"] = runs / f"{cell_id}.jsonl"
    target = runs.parent / "elsewhere.txt"
    target.write_text(good)
    os.symlink(target, runs / "digits-bp-sgd-s5-bbbbbbbbbbbb.jsonl")
    made["symlink"] = runs / "digits-bp-sgd-s5-bbbbbbbbbbbb.jsonl"
    os.symlink("/dev/zero", runs / "digits-bp-sgd-s6-cccccccccccc.jsonl")
    made["symlink to /dev/zero"] = runs / "digits-bp-sgd-s6-cccccccccccc.jsonl"
    os.mkfifo(runs / "digits-bp-sgd-s8-dddddddddddd.jsonl")  # reading it would block for ever
    made["fifo"] = runs / "digits-bp-sgd-s8-dddddddddddd.jsonl"
    (runs / "odd\nname.jsonl").write_text(good)
    made["name of no cell"] = runs / "odd\nname.jsonl"
    return made


def test_directories_symlinks_fifos_and_odd_names_are_malformed_not_followed(good_lines, tmp_path, capsys):
    cell_id, lines = good_lines
    runs = tmp_path / "runs"
    runs.mkdir()
    made = _not_files(runs, cell_id, "".join(lines))
    cells, malformed = scan_runs(tmp_path)
    assert cells == [] and {m.path for m in malformed} == set(made.values())
    results.warn_malformed(malformed)
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, "one warning line, even for a file name holding a newline"
    assert "odd\\nname.jsonl" in err


def test_unreadable_and_oversized_files_are_malformed(good_lines, tmp_path, monkeypatch):
    cell_id, lines = good_lines
    path = tmp_path / f"{cell_id}.jsonl"
    path.write_text("".join(lines))
    real_open = os.open

    def refuse(p, *a, **k):
        if Path(p) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(p, *a, **k)
    monkeypatch.setattr(results.os, "open", refuse)
    with pytest.raises(MalformedRun, match="cannot be read"):
        read_cell(path)
    monkeypatch.undo()
    monkeypatch.setattr(results, "MAX_LINE_BYTES", 200)
    with pytest.raises(MalformedRun, match="longer than 200 bytes"):
        read_cell(path)
    monkeypatch.setattr(results, "MAX_FILE_BYTES", 100)
    with pytest.raises(MalformedRun, match="above the 100 byte limit"):
        read_cell(path)


def test_run_reruns_damaged_cells_and_replaces_a_directory_in_the_way(good_lines, tmp_path, capsys):
    suite = parse_suite(SUITE)
    first, second = (c.cell_id for c in suite.cells)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / f"{first}.jsonl").write_bytes(_edit(good_lines[1], "last evaluation deleted").replace(
        good_lines[0].encode(), first.encode()))
    (runs / f"{second}.jsonl").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, runs / f"{second}.jsonl.part")  # a planted link must not be written through
    summary = run_suite(suite, tmp_path, "cpu", progress=False)
    assert summary.finished == {"complete": 2} and len(summary.malformed) == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "malformed" in line]) == 1
    assert is_complete(runs, first) and is_complete(runs, second)
    assert victim.read_text() == "precious"
    assert (runs / f"{second}.jsonl.malformed").is_dir(), "the directory is kept aside, not deleted"


# ---- two runs of one folder -------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from plasticity import registry
    from plasticity.claims import claim_cell
    from plasticity.worker import run_cell
    from plasticity.suite import parse_suite
    registry.load_plugins()
    runs, index = Path(sys.argv[1]), int(sys.argv[2])
    cell = parse_suite(sys.argv[3]).cells[index]
    claim = claim_cell(runs, cell.cell_id)
    print("held", flush=True)
    if sys.stdin.readline().strip() == "finish":
        run_cell(cell, runs, torch.device("cpu"), {"ran_by": "holder"})
    claim.release()
    print("released", flush=True)
    sys.stdin.readline()
""")


def _holder(runs: Path, index: int, suite: str = SUITE) -> subprocess.Popen:
    runs.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(runs), str(index), suite], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_a_held_cell_is_refused_with_its_holder_and_freed_when_the_holder_is_killed(tmp_path):
    cell = parse_suite(SUITE).cells[0]
    runs = tmp_path / "runs"
    proc = _holder(runs, 0)
    try:
        with pytest.raises(CellHeld) as info:
            CellWriter(runs, cell.cell_id)
        assert f"PID {proc.pid} on " in str(info.value) and " since 20" in str(info.value)
        assert not (runs / f"{cell.cell_id}.jsonl.part").exists(), "no second writer opened the .part file"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    with claim_cell(runs, cell.cell_id):  # SIGKILL left nothing stuck
        pass
    assert not list(runs.glob("*.lock")), "a released claim leaves no lock file"


def test_claims_are_reentrant_in_one_process_and_exclusive_between_processes(tmp_path):
    with claim_cell(tmp_path, "x") as outer:
        with claim_cell(tmp_path, "x") as inner:
            assert inner is outer
        assert claims._held  # still held by the outer claim
        code = ("import sys; from plasticity.claims import claim_cell, CellHeld\n"
                "try:\n    claim_cell(sys.argv[1], 'x')\nexcept CellHeld as e:\n    print(e.holder['pid'])\n")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
        assert out.stdout.strip() == str(os.getpid()), out.stderr
    assert not claims._held


def test_a_run_arriving_second_skips_the_held_cell_and_takes_the_other_runs_result(tmp_path, monkeypatch, capsys):
    """Another run holds cell 0 when this run starts: this run does cell 1, waits, and counts
    cell 0 as finished by the other run (its file, not a rerun)."""
    suite = parse_suite(SUITE)
    runs = tmp_path / "runs"
    proc = _holder(runs, 0)
    polls = []

    def poll(seconds):  # the other run finishes its cell while this one waits
        polls.append(seconds)
        proc.stdin.write("finish\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
    monkeypatch.setattr(runner, "_pause", poll)
    try:
        summary = run_suite(suite, tmp_path, "cpu", progress=False)
    finally:
        _stop(proc)
    assert len(polls) == 1
    assert summary.finished == {"complete": 2} and summary.by_other_run == 1
    err = capsys.readouterr().err
    assert f"1 cell is being run by another run (PID {proc.pid} on" in err
    held = read_cell(runs / f"{suite.cells[0].cell_id}.jsonl")
    assert held.header["provenance"] == {"ran_by": "holder"}
    assert read_cell(runs / f"{suite.cells[1].cell_id}.jsonl").header["provenance"] != {"ran_by": "holder"}


def test_a_run_arriving_second_reruns_a_cell_the_first_run_left_unfinished(tmp_path, monkeypatch):
    suite = parse_suite(SUITE)
    runs = tmp_path / "runs"
    proc = _holder(runs, 1)

    def poll(seconds):  # the other run dies holding the cell
        proc.kill()
        proc.wait(timeout=30)
    monkeypatch.setattr(runner, "_pause", poll)
    summary = run_suite(suite, tmp_path, "cpu", progress=False)
    assert summary.finished == {"complete": 2} and summary.by_other_run == 0
    assert all(is_complete(runs, c.cell_id) for c in suite.cells)


def test_a_run_arriving_first_is_joined_by_a_second_command_that_shares_the_work(tmp_path):
    """This process holds cell 0 (the first run, mid-cell); a second `plasticity run` of the
    same folder runs cell 1, names this process as the holder, then takes cell 0's result."""
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(SUITE)
    suite = parse_suite(SUITE)
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    cell0 = suite.cells[0]
    with claim_cell(runs, cell0.cell_id):
        second = subprocess.Popen([sys.executable, "-m", "plasticity.cli", "run", str(suite_file), "--out",
                                   str(tmp_path / "out"), "--no-progress", "--no-report", "--device", "cpu"],
                                  cwd=REPO, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
        line = ""
        while "being run by another run" not in line:
            line = second.stderr.readline()
            assert line, "the second run ended without naming the holder"
        assert f"(PID {os.getpid()} on " in line
        run_cell(cell0, runs, CPU, {"ran_by": "first"})
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "2 cells: 0 already complete, 2 complete (1 of them finished by another run)" in err
    assert read_cell(runs / f"{cell0.cell_id}.jsonl").header["provenance"] == {"ran_by": "first"}


def _cli_run(suite_file: Path, out: Path, jobs: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "plasticity.cli", "run", str(suite_file), "--out", str(out),
                             "--no-progress", "--no-report", "--device", "cpu", "--jobs", jobs],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_interruptible_session)


def _ran_here(err: str) -> int:
    m = re.search(r"(\d+) cells: \d+ already complete, (.*)", err)
    assert m, err
    ran = sum(int(n) for n in re.findall(r"(\d+) (?:complete|diverged|error)\b", m.group(2)))
    other = re.search(r"\((\d+) of them finished by another run\)", m.group(2))
    return ran - (int(other.group(1)) if other else 0)


def test_two_commands_started_together_share_the_cells_without_overlap(tmp_path):
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(SUITE.replace("seeds = [0, 1]", "seeds = 4"))
    out = tmp_path / "out"
    a, b = _cli_run(suite_file, out, "1"), _cli_run(suite_file, out, "2")
    err_a, err_b = a.communicate(timeout=300)[1], b.communicate(timeout=300)[1]
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    assert "Traceback" not in err_a + err_b
    assert _ran_here(err_a) + _ran_here(err_b) == 4, "every cell ran exactly once"
    runs = out / "runs"
    assert len(list(runs.glob("*.jsonl"))) == 4 and not list(runs.glob("*.part")) and not list(runs.glob("*.lock"))
    for path in runs.glob("*.jsonl"):
        assert read_cell(path).status == "complete"  # one header, one final, counts agree


# ---- signals and orphans ----------------------------------------------------------------------

def _interruptible_session() -> None:
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc: psutil is not a dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_signal_to_the_parent_stops_every_worker_and_a_rerun_resumes(tmp_path, signum):
    suite_file = tmp_path / "s.toml"
    suite_file.write_text('name = "sig"\nseeds = 3\n[budget]\nseconds = 1.5\n'
                          '[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n')
    out = tmp_path / "out"
    proc = _cli_run(suite_file, out, "2")
    runs = out / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(runs.glob("*.jsonl.part"))) < 2:
        time.sleep(0.05)  # both workers are mid-cell
    workers = _children(proc.pid)
    assert len(workers) >= 2
    os.kill(proc.pid, signum)  # the parent alone, as `kill PID` does
    _, err = proc.communicate(timeout=60)
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + signum, err
        assert f"interrupted by {signum.name}" in err and "Traceback" not in err
    deadline = time.time() + 30  # a bound, not a timing assertion: orphans would live for ever
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "a worker outlived the run"
    finished = {p.name: p.read_text() for p in runs.glob("*.jsonl")}
    assert len(finished) < 3 and list(runs.glob("*.jsonl.part"))
    for path in runs.glob("*.jsonl"):
        read_cell(path)  # every file named complete is complete (raises otherwise)

    if signum == signal.SIGHUP:
        return  # the same path as SIGTERM from here on; the rerun is checked there
    rerun = subprocess.run([sys.executable, "-m", "plasticity.cli", "run", str(suite_file), "--out", str(out),
                            "--no-progress", "--no-report", "--device", "cpu", "--jobs", "2"],
                           cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert rerun.returncode == 0, rerun.stderr
    assert f"3 cells: {len(finished)} already complete" in rerun.stderr
    assert "another run" not in rerun.stderr, "the killed run's claims were left stuck"
    for name, text in finished.items():
        assert (runs / name).read_text() == text
    assert len(list(runs.glob("*.jsonl"))) == 3 and not list(runs.glob("*.part"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_worker_killed_from_outside_ends_the_run_with_a_message_not_a_traceback(tmp_path):
    suite_file = tmp_path / "s.toml"
    suite_file.write_text('name = "sig"\nseeds = 3\n[budget]\nseconds = 1.5\n'
                          '[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n')
    out = tmp_path / "out"
    proc = _cli_run(suite_file, out, "2")
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "runs").glob("*.jsonl.part"))) < 2:
        time.sleep(0.05)
    holder = None
    while holder is None and time.time() < deadline:  # a worker's PID, from the claim it wrote
        holder = next(filter(None, map(claims.read_holder, (out / "runs").glob("*.lock"))), None)
    os.kill(holder["pid"], signal.SIGKILL)  # what the out-of-memory killer does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "a worker process died" in err and "run the same command again to resume" in err
    assert "Traceback" not in err


def test_watchdog_exits_once_the_parent_is_gone():
    parents = iter([100, 100, 100, 1])
    slept, exits = [], []
    pool.watch_parent(100, interval=0.25, getppid=lambda: next(parents), sleep=slept.append,
                        exit=exits.append)
    assert slept == [0.25] * 3 and exits == [128 + signal.SIGTERM]


# ---- progress at no cost to the loop ----------------------------------------------------------

def test_engine_reports_progress_per_evaluation_not_per_update(tmp_path):
    cell = parse_suite(SUITE.replace("updates = 12", "updates = 300")).cells[0]
    seen = []
    final = run_cell(cell, tmp_path, CPU, {}, on_progress=lambda p: seen.append(p.updates))
    evals = read_cell(tmp_path / f"{cell.cell_id}.jsonl").evals
    assert len(seen) <= len(evals) < 300 / 4, "called per update"
    assert seen[0] == 0 and seen[-1] == final["updates"] == 300


def test_cell_bar_follows_the_state_on_its_own_clock():
    import io
    state = Progress(total_updates=500)
    bar = CellBar("cell", 1, True, file=io.StringIO(), interval=0.01)
    bar(state)
    state.updates = 123  # the engine's loop moves on without calling the bar
    deadline = time.time() + 30
    while bar.shown != 123 and time.time() < deadline:
        time.sleep(0.01)
    assert bar.shown == 123
    state.updates = 500
    bar.close()
    assert bar.shown == 500 and not bar._thread.is_alive()


def test_bars_still_draw_in_jobs_mode(tmp_path, capfd):
    suite = parse_suite(SUITE)
    summary = run_suite(suite, tmp_path, "cpu", jobs=2, progress=True)
    assert summary.finished == {"complete": 2}
    err = capfd.readouterr().err
    assert "suite safety" in err and "upd" in err and "12/12" in err


def test_lock_files_are_not_read_as_runs(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(__file__, runs / "x.lock")
    assert scan_runs(tmp_path) == ([], [])


@pytest.mark.parametrize("field, value", [("test_accuracy", 7.5), ("val_accuracy", -0.1),
                                          ("train_seconds", -3.0)])
def test_final_line_numbers_out_of_range_make_the_file_malformed(tmp_path, field, value):
    """An accuracy is a fraction and seconds are not negative: a hand-edited value outside that
    would enter a mean as if measured."""
    from plasticity.results import MalformedRun, read_cell
    from plasticity.writer import CellWriter
    writer = CellWriter(tmp_path, "c1")
    writer.write({"type": "header", "cell_id": "c1", "config": {}})
    writer.write({"type": "eval", "updates": 1, "val_accuracy": 0.5, "test_accuracy": 0.5})
    path = writer.finish({"status": "complete", "updates": 1, "val_accuracy": 0.5, "test_accuracy": 0.5,
                          "train_seconds": 1.0, field: value})
    with pytest.raises(MalformedRun, match=field):
        read_cell(path)


def test_run_suite_refuses_a_folder_of_another_suite_before_writing(tmp_path):
    from plasticity.errors import PlasticityError
    (tmp_path / "suite.json").write_text('{"name": "earlier"}')
    with pytest.raises(PlasticityError, match=r"holds the results of suite 'earlier' \(its suite.json\); running "
                                              r"suite 'safety' there would replace that suite.json"):
        run_suite(parse_suite(SUITE), tmp_path, "cpu", progress=False)
    assert (tmp_path / "suite.json").read_text() == '{"name": "earlier"}' and not (tmp_path / "runs").exists()


def test_each_cell_is_claimed_once_and_fingerprinted_once_on_the_driver(tmp_path, monkeypatch):
    from plasticity import fingerprint as fingerprint_mod
    from plasticity import worker, writer

    claims_taken: list[str] = []
    fingerprinted: list[str] = []
    real_claim, real_fp = claims.claim_cell, fingerprint_mod.fingerprint

    def counting_claim(runs_dir, cell_id):
        claims_taken.append(cell_id)
        return real_claim(runs_dir, cell_id)

    def counting_fp(cell):
        fingerprinted.append(cell.cell_id)
        return real_fp(cell)

    for module in (worker, writer):
        monkeypatch.setattr(module, "claim_cell", counting_claim)
    for module in (runner, worker):
        monkeypatch.setattr(module, "fingerprint", counting_fp)
    suite = parse_suite(SUITE)
    summary = run_suite(suite, tmp_path / "out", device="cpu", progress=False)
    assert summary.finished == {"complete": 2}
    ids = sorted(c.cell_id for c in suite.cells)
    assert sorted(claims_taken) == ids, "a cell claimed more than once (or not at all)"
    assert sorted(fingerprinted) == ids, "a cell fingerprinted more than once"
    headers = [read_cell(p).header for p in (tmp_path / "out" / "runs").glob("*.jsonl")]
    assert all(h["fingerprint"]["hash"] and h["fingerprint"]["files"] for h in headers)
