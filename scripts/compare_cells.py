"""Numbers must not move: train a fixed sample of cells and compare their run files figure for figure.

    python scripts/compare_cells.py --out cells.json [--work DIR] [--only NAME ...]
    python scripts/compare_cells.py --compare before.json after.json

The first form runs each sample suite below through the command line's `run` (the project's public
entry point, in a child process, on the CPU, one job, no report) and writes every figure of every
run file it produced to a JSON file: each evaluation line and the final line, flattened to
"suite/cell/line.key" -> value. Timings, fingerprints, provenance and dates are left out (they
change from run to run or by design); the header's configuration is kept, so that a cell whose
configuration moved shows up as missing and new. The second form reports every figure that differs
between two such files (exit status 1) or says "all N figures equal".

The sample (CPU, about five to ten minutes on two busy cores):
  quick        the embedded quick suite as it ships (every registered rule on digits, 3 seeds, 15 epochs)
  lenet        one LeNet cell on CIFAR-10 (a 1,000-image subset, 10 updates of batch 50)
  resnet20     two ResNet-20 cells (width 4, batch norm, augmentation) on CIFAR-10: BP and USF, 5 updates
  er-full      Expectation Reflection (closed form) on digits with a full batch, both algorithms, 3 updates
  dtp          DTP and DDTP-linear on MNIST (MLP 64-32 tanh), 30 updates
  rf           RF and pinv-feedback on MNIST, 30 updates
  gofau        BP with hybrid Adam and mult-SGD, FA with hybrid RMSprop, the gofau-hybrid rule; digits, 2 epochs
  search       a search with two random trials (and its final stage of one seed) on digits
CIFAR-10 and MNIST are read from PLASTICITY_DATA (set it to the shared data folder).

If the command line moves, change `run_suite_cli` only: it is the one place that starts a run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# MNIST, MLP 64-32 tanh, 30 updates of 50: the DTP and RF samples
MNIST_30 = """seeds = [0]
[budget]
updates = 30
[evaluation]
per_decade = 3
feedback_metrics = 2
[[tasks]]
name = "mnist"
params = { hidden = [64, 32], activation = "tanh", val_size = 500, batch_size = 50 }
"""

# The sample suites (TOML). The quick suite is named, not copied, so it is the shipped one.
SUITES: dict[str, str] = {
    "quick": "quick",
    "lenet": """
name = "cmp-lenet"
seeds = [0]
[budget]
updates = 10
[evaluation]
per_decade = 3
feedback_metrics = 2
[[tasks]]
name = "cifar10"
[tasks.params]
model = "lenet"
activation = "relu"
batch_size = 50
train_subset = 1000
val_size = 200
test_subset = 300
[[rules]]
name = "fa"
""",
    "resnet20": """
name = "cmp-resnet20"
seeds = [1]
[budget]
updates = 5
[evaluation]
per_decade = 3
feedback_metrics = 2
[[tasks]]
name = "cifar10"
[tasks.params]
model = "resnet20"
width = 4
augment = true
activation = "relu"
batch_size = 32
train_subset = 500
val_size = 100
test_subset = 200
[[rules]]
name = "bp"
[[rules]]
name = "usf"
""",
    "er-full": """
name = "cmp-er-full"
seeds = [0, 1]
[budget]
updates = 3
[evaluation]
per_decade = 5
[[tasks]]
name = "digits"
params = { hidden = [64], batch_size = 0 }
[[rules]]
name = "er"
[[rules]]
name = "er"
params = { algorithm = "simultaneous" }
""",
    "dtp": 'name = "cmp-dtp"\n' + MNIST_30 + '[[rules]]\nname = "dtp"\n[[rules]]\nname = "ddtp-linear"\n',
    "rf": 'name = "cmp-rf"\n' + MNIST_30 + '[[rules]]\nname = "rf"\n[[rules]]\nname = "pinv-feedback"\n',
    "gofau": """
name = "cmp-gofau"
seeds = [0]
[budget]
epochs = 2
[evaluation]
per_decade = 3
feedback_metrics = 2
[[tasks]]
name = "digits"
[[rules]]
name = "bp"
optimizers = [
    { name = "hybrid-adam", params = { lr = 1e-3, gamma = 0.5, eta_out = 0.1, eta_in = 1.0 } },
    { name = "mult-sgd", params = { lr = 0.05, momentum = 0.9 } },
]
[[rules]]
name = "fa"
optimizers = [{ name = "hybrid-rmsprop" }]
[[rules]]
name = "gofau-hybrid"
""",
    "search": """
name = "cmp-search"
[budget]
updates = 40
[evaluation]
per_decade = 5
feedback_metrics = 0
[[tasks]]
name = "digits"
params = { hidden = [16], batch_size = 64 }
[[rules]]
name = "fa"
[search]
trials = 2
budget = { updates = 20 }
final_seeds = 1
sampler = "random"
[search.optimizer]
lr = { log = [1e-3, 1e-1] }
[search.space.fa]
rule = { feedback_scale = { log = [0.1, 3.0] } }
""",
}

#: keys whose values change from run to run or by design (timings, dates, process ids, the machine's
#: load, the fingerprint and the search study's name, which holds a digest of the fingerprint)
SKIP_KEY = re.compile(r"seconds|wall|finished|started|written|duration|fingerprint|provenance|traceback|"
                      r"^load_|^pid$|^study$|_time$|^time$")


def run_suite_cli(suite: str, out: Path, log: Path) -> None:
    """Run one suite through `plasticity run` in a child process (the public entry point)."""
    cmd = [sys.executable, "-c", "import sys; from plasticity.cli import main; sys.exit(main(sys.argv[1:]))",
           "run", suite, "--out", str(out), "--device", "cpu", "--jobs", "1", "--no-report", "--no-progress"]
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    if rc != 0:
        raise SystemExit(f"compare_cells: `{' '.join(cmd[3:])}` failed (exit {rc}); see {log}:\n"
                         + log.read_text()[-3000:])


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k in sorted(value):
            if not SKIP_KEY.search(str(k)):
                _flatten(f"{prefix}.{k}", value[k], out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(value, float) and not math.isfinite(value):
        out[prefix] = repr(value)  # JSON has no NaN/inf; keep them comparable
    else:
        out[prefix] = value


def figures_of(out: Path, name: str) -> dict[str, Any]:
    """Every figure of the finished run files under `out` (recursively: search trials included)."""
    figures: dict[str, Any] = {}
    files = sorted(out.rglob("*.jsonl"))
    if not files:
        raise SystemExit(f"compare_cells: suite {name} wrote no run file under {out}")
    for path in files:
        lines = [json.loads(t) for t in path.read_text().splitlines() if t.strip()]
        header = lines[0]
        rel = path.relative_to(out).parent.as_posix()
        cell = f"{name}/{rel}/{header['cell_id']}"
        config = dict(header.get("config") or {})
        figures[f"{cell}/config"] = json.dumps(config, sort_keys=True)
        n_eval = 0
        for line in lines[1:]:
            kind = line.get("type")
            if kind == "eval":
                _flatten(f"{cell}/eval{n_eval}", {k: v for k, v in line.items() if k != "type"}, figures)
                n_eval += 1
            elif kind == "final":
                _flatten(f"{cell}/final", {k: v for k, v in line.items() if k != "type"}, figures)
    for path in sorted(out.rglob("search.json")):  # the search's summary: its trials' values, the best settings
        summary = {k: v for k, v in json.loads(path.read_text()).items() if k != "storage"}  # a path
        _flatten(f"{name}/{path.relative_to(out).as_posix()}", summary, figures)
    return figures


def collect(names: list[str], work: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in names:
        text = SUITES[name]
        out = work / name
        if text == name:  # a shipped suite, by name
            target = text
        else:
            target = str(work / f"{name}.toml")
            Path(target).write_text(text)
        print(f"compare_cells: running {name} ...", file=sys.stderr, flush=True)
        run_suite_cli(target, out, work / f"{name}.log")
        got = figures_of(out, name)
        print(f"compare_cells: {name}: {sum(1 for k in got if k.endswith('/config'))} run files, "
              f"{len(got)} figures", file=sys.stderr, flush=True)
        figures.update(got)
    return figures


def compare(a_path: Path, b_path: Path) -> int:
    a_doc, b_doc = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    both = [s for s in a_doc["suites"] if s in b_doc["suites"]]
    left = sorted(set(a_doc["suites"]) ^ set(b_doc["suites"]))
    if left:  # a partial run (--only): compare the suites both files hold
        print(f"compared suites: {', '.join(both)} (in one file only, not compared: {', '.join(left)})")
    a = {k: v for k, v in a_doc["figures"].items() if k.split("/", 1)[0] in both}
    b = {k: v for k, v in b_doc["figures"].items() if k.split("/", 1)[0] in both}
    diffs = [f"only in {a_path.name}: {k} = {a[k]!r}" for k in sorted(set(a) - set(b))]
    diffs += [f"only in {b_path.name}: {k} = {b[k]!r}" for k in sorted(set(b) - set(a))]
    diffs += [f"differs: {k}: {a[k]!r} != {b[k]!r}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    if diffs:
        print("\n".join(diffs))
        print(f"{len(diffs)} of {len(set(a) | set(b))} figures differ")
        return 1
    print(f"all {len(a)} figures equal ({sum(1 for k in a if k.endswith('/config'))} run files)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the sample's figures to this JSON file")
    p.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    p.add_argument("--only", nargs="+", choices=list(SUITES), help="run only these sample suites")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two figure files")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if not args.out:
        p.error("give --out FILE (to collect) or --compare A B")
    names = args.only or list(SUITES)
    import plasticity  # the code under test, as PYTHONPATH picks it
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        figures = collect(names, work)
    args.out.write_text(json.dumps({"plasticity": str(Path(plasticity.__file__).parent), "suites": names,
                                    "figures": figures}, indent=0, sort_keys=True))
    print(f"compare_cells: {len(figures)} figures written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
