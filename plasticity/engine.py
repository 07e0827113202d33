"""The engine loop: train one cell, count updates / examples / training seconds, evaluate, stop.

Data sits on the device; a batch is an index slice of a per-epoch permutation drawn on the CPU
(the same order on every device). Training seconds exclude evaluation: the clock runs in
segments between evaluations, and on CUDA the device is synchronised before a segment is read,
so asynchronous kernels are counted where they run. A non-finite loss (checked every update on
the CPU, every `CUDA_CHECK_EVERY` updates on CUDA to avoid a host sync per step) or a
non-finite weight (checked at each evaluation) ends the cell as `diverged`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from . import metrics, registry
from .cells import NO_OPTIMIZER, Cell
from .errors import ConfigError
from .network import weights_finite
from .params import make_params
from .points import evaluation_points, every_epoch
from .provenance import machine_load
from .rule import LearningRule
from .task import Split

CUDA_CHECK_EVERY = 25
EVAL_CHUNK = 10000
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: The clock of training seconds and seconds budgets: a monotonic reading in seconds. Tests
#: replace it with a fake clock; `train_cell` binds it once, so the loop pays one local call.
clock: Callable[[], float] = time.perf_counter


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; a device this machine lacks is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device '{name}'; choose auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA device is available (torch.cuda.is_available() is False); "
                              "use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"--device {name}: this machine has {count} CUDA device{'s' if count > 1 else ''} "
                              f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    return dev


@torch.no_grad()
def evaluate(model: LearningRule | torch.nn.Module, split: Split) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of a rule's predictions (`rule.predict`; a bare network's
    outputs) on a split (non-finite rows count wrong).

    The network is in eval mode meanwhile (batch-norm uses its running statistics and does not
    update them; dropout is off) and back in its previous mode after.
    """
    net = model.net if isinstance(model, LearningRule) else model
    predict = model.predict if isinstance(model, LearningRule) else model
    correct, loss_sum = 0, 0.0
    was_training = net.training
    net.eval()
    try:
        for start in range(0, len(split), EVAL_CHUNK):
            x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
            out = predict(x)
            finite = torch.isfinite(out).all(dim=1)
            correct += int(((out.argmax(dim=1) == y) & finite).sum())
            loss_sum += float(torch.nn.functional.cross_entropy(out.double(), y, reduction="sum"))
    finally:
        net.train(was_training)
    return correct / len(split), loss_sum / len(split)


def _finite(values: list[torch.Tensor]) -> bool:
    """True when every recent loss is finite (one host sync for the lot)."""
    if len(values) == 1:
        return math.isfinite(float(values[0]))
    return bool(torch.isfinite(torch.stack(values)).all())


@dataclass
class Progress:
    """Where the loop is. The engine updates this one object in place and hands it to the
    progress callback only when training starts, after each evaluation and at the end: a
    display polls it on its own clock (worker.CellBar), so the hot loop does no per-update
    Python work for progress."""
    updates: int = 0
    examples: int = 0
    epoch: int = 0
    total_updates: int | None = None


def build_cell(cell: Cell, device: torch.device, data_dir: Path | None):
    """Instantiate task data, network, optimizer and rule for a cell, seeded from `cell.seed`."""
    dtype = DTYPES[cell.dtype]
    task_cls = registry.get_task(cell.task.name)
    task = task_cls(make_params(task_cls.Params, cell.task.params, f"task '{cell.task.name}'"), data_dir)
    data = task.data(device, dtype)
    torch.manual_seed(cell.seed)
    # The initial weights are drawn on the CPU so that a seed gives the same network on any device.
    init_gen = torch.Generator().manual_seed(cell.seed)
    net = task.build_network(data.n_inputs, data.n_classes, init_gen).to(device=device, dtype=dtype)
    rule_cls = registry.get_rule(cell.rule.name)
    rule_params = make_params(rule_cls.Params, cell.rule.params, f"rule '{cell.rule.name}'")
    optimizer = None
    if cell.optimizer.name != NO_OPTIMIZER:
        spec = registry.get_optimizer(cell.optimizer.name)
        optimizer = spec.build(net.parameters(), make_params(spec.Params, cell.optimizer.params,
                                                             f"optimizer '{cell.optimizer.name}'"))
    rule_gen = torch.Generator(device=device).manual_seed(cell.seed + 1_000_003)
    rule = rule_cls(net, rule_params, optimizer, rule_gen)
    return task, data, net, rule


def train_cell(cell: Cell, device: torch.device, data_dir: Path | None = None,
               on_progress: Callable[[Progress], None] | None = None) -> Iterator[dict[str, Any]]:
    """Run one cell to its budget and yield its records as they come: the header facts only the
    trained cell knows (`{"type": "header", "thresholds", "data"}`), one `{"type": "eval", ...}`
    per evaluation, and the final line (`{"type": "final", "status", ...}`), last.

    Whoever consumes them writes them (plasticity.worker); the engine knows no file, hash or lock.
    The clock of training seconds is stopped while a record is handed over.
    """
    now = clock
    wall_start = now()
    task, data, net, rule = build_cell(cell, device, data_dir)
    thresholds = list(task.thresholds)
    yield {"type": "header", "thresholds": thresholds,
           "data": {"n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                    "n_inputs": data.n_inputs, "n_classes": data.n_classes}}

    n = len(data.train)
    bs = task.params.batch_size
    bs = n if bs == 0 or bs >= n else bs
    per_epoch = math.ceil(n / bs)
    budget = cell.budget
    limits = []
    if budget.get("updates") is not None:
        limits.append(int(budget["updates"]))
    if budget.get("epochs") is not None:
        limits.append(math.ceil(budget["epochs"] * per_epoch))
    max_updates = min(limits) if limits else None
    scheduler = lr_scheduler(rule.optimizer, cell.optimizer.schedule, max_updates)
    max_seconds = budget.get("seconds")
    schedule = evaluation_points(cell.evaluation, max_updates)
    next_eval = next(schedule)
    each_epoch = every_epoch(cell.evaluation)
    order_gen = torch.Generator().manual_seed(cell.seed + 2_000_003)
    augment = task.augmenter(data.n_inputs, torch.Generator(device=device).manual_seed(cell.seed + 4_000_003))
    check_every = 1 if device.type == "cpu" else CUDA_CHECK_EVERY

    # Feedback/alignment metrics at every k-th evaluation (0: never) and always at the last one.
    feedback_every = int(cell.evaluation.get("feedback_metrics", 1))
    probe = metrics.Probe.draw(data.train, cell.seed) if feedback_every and metrics.applies(rule) else None

    state = Progress(total_updates=max_updates)
    train_seconds = 0.0
    losses: list[torch.Tensor] = []  # batch losses since the last evaluation, still on the device
    evals: list[dict[str, Any]] = []
    status, message = "complete", None

    def record(last: bool = False) -> dict[str, Any]:
        val_acc, val_loss = evaluate(rule, data.val)
        # a search trial's cell never evaluates the test split (search_space.TRIAL_EVALUATION)
        test_acc = evaluate(rule, data.test)[0] if cell.evaluation.get("test", True) else None
        line = {"type": "eval", "updates": state.updates, "epoch": state.updates / per_epoch,
                "examples": state.examples, "train_seconds": train_seconds,
                "train_loss": float(torch.stack(losses).double().mean()) if losses else None,
                "val_accuracy": val_acc, "val_loss": val_loss, "test_accuracy": test_acc,
                "diagnostics": {k: float(v) for k, v in rule.diagnostics().items()}}
        if probe is not None and (last or len(evals) % feedback_every == 0):
            line["feedback"] = metrics.feedback_metrics(rule, probe)
        losses.clear()
        evals.append(line)
        return line

    yield record()  # the untrained network: the reference point of every curve
    if on_progress is not None:
        on_progress(state)
    segment = now()
    done = max_updates == 0
    while not done:
        whole = bs == n
        perm = None if whole else torch.randperm(n, generator=order_gen).to(device)
        for start in range(0, n, bs):
            if whole:
                x, y = data.train.x, data.train.y
            else:
                idx = perm[start:start + bs]
                x, y = data.train.x[idx], data.train.y[idx]
            if augment is not None:
                x = augment(x)
            out = rule.update(x, y)
            if scheduler is not None:
                scheduler.step()
            state.updates += 1
            state.examples += int(y.shape[0])
            loss = out.get("loss") if out else None
            if loss is not None:
                losses.append(loss.detach())
                if state.updates % check_every == 0 and not _finite(losses[-check_every:]):
                    status, message = "diverged", f"non-finite loss at update {state.updates}"
            end_of_epoch = start + bs >= n
            if end_of_epoch:
                state.epoch += 1
            out_of_budget = (max_updates is not None and state.updates >= max_updates) or (
                max_seconds is not None and train_seconds + now() - segment >= max_seconds)
            due = state.updates == next_eval or (each_epoch and end_of_epoch) or out_of_budget \
                or status == "diverged"
            if state.updates >= next_eval:
                next_eval = next(schedule)
            if due:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                train_seconds += now() - segment
                line = record(last=out_of_budget or status == "diverged")
                yield line
                if status != "diverged" and not weights_finite(net):
                    status, message = "diverged", f"non-finite weights at update {state.updates}"
                elif status != "diverged" and line["train_loss"] is not None and not math.isfinite(line["train_loss"]):
                    status, message = "diverged", f"non-finite loss before update {state.updates}"
                if on_progress is not None:
                    on_progress(state)
                segment = now()
            if status == "diverged" or out_of_budget:
                done = True
                break

    last = evals[-1]
    final = {"status": status, "message": message, "updates": state.updates, "examples": state.examples,
             "epochs": state.updates / per_epoch, "train_seconds": train_seconds,
             "val_accuracy": last["val_accuracy"], "test_accuracy": last["test_accuracy"],
             "best_val_accuracy": max(e["val_accuracy"] for e in evals),
             **crossings(evals, thresholds),
             "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "wall_seconds": now() - wall_start, "load_end": machine_load()}
    yield {"type": "final", **final}


def lr_scheduler(optimizer: torch.optim.Optimizer | None, schedule: str | None,
                 max_updates: int | None) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-update learning-rate decay to zero at the end of the budget ('cosine' or 'linear')."""
    if schedule in (None, "constant") or optimizer is None:
        return None
    if max_updates is None:
        raise ConfigError(f"schedule '{schedule}' needs a budget in updates or epochs (a seconds-only "
                          f"budget has no known end)")
    if schedule == "cosine":
        factor = lambda u: 0.5 * (1.0 + math.cos(math.pi * min(u, max_updates) / max_updates))  # noqa: E731
    else:
        factor = lambda u: max(0.0, 1.0 - u / max_updates)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def crossings(evals: list[dict[str, Any]], thresholds: list[float]) -> dict[str, dict[str, Any]]:
    """First evaluation at which validation accuracy reaches each threshold (None: never)."""
    out: dict[str, dict[str, Any]] = {"updates_to": {}, "examples_to": {}, "seconds_to": {}}
    for thr in thresholds:
        hit = next((e for e in evals if e["val_accuracy"] >= thr), None)
        key = f"{thr:g}"
        out["updates_to"][key] = hit["updates"] if hit else None
        out["examples_to"][key] = hit["examples"] if hit else None
        out["seconds_to"][key] = hit["train_seconds"] if hit else None
    return out
