"""Conformance kit: the checks any registered rule must pass (`plasticity check RULE`).

1. one update changes the weights and keeps them finite;
2. the same seed gives the same weights, bit for bit, on the CPU;
3. it learns a small separable task (3 Gaussian classes in 20-D) well above chance;
4. its default Params round-trip through a suite file;
5. `feedback()`, if given, returns matrices shaped like the transposed forward weights;
6. its hidden layers learn: on a task that a readout of random hidden features cannot solve, it
   beats by `HIDDEN_MARGIN` the same rule with its hidden layers held at their initial weights.
7. `credit(x, y)` changes nothing but `.grad`: no weight, buffer, optimizer state or tensor the
   rule holds (feedback matrices, inverse networks) moves (a rule learns its own feedback in `update`);
8. evaluation goes through `predict(x)`: the accuracy the engine measures is that of the rule's
   predictions.

Use from pytest: `assert_conformant("my_rule")`.
"""
from __future__ import annotations

import json
import math
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import registry
from .engine import evaluate
from .network import MLP
from .optimizers import build_optimizer
from .params import as_dict
from .rule import LearningRule
from .task import Split

SEPARABLE_MIN_ACCURACY = 0.8  # chance is 1/3
SEPARABLE_UPDATES = 200
#: The hidden-layer check: a 30-8-3 network, 300 updates, and the margin over the frozen control.
#: Measured (issue 28): every built-in rule beats its frozen control by 0.19 (ER) to 0.54 (gofau-mult).
HIDDEN_SIZES = (30, 8, 3)
HIDDEN_UPDATES = 300
HIDDEN_MARGIN = 0.1


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str


def separable_data(seed: int = 0, n_train: int = 600, n_test: int = 300, dim: int = 20,
                   classes: int = 3) -> tuple[Split, Split]:
    """Gaussian classes whose means are 5 standard deviations apart: any working rule separates them."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=g)
    means = 2.5 * means / means.norm(dim=1, keepdim=True)

    def draw(n: int) -> Split:
        y = torch.randint(0, classes, (n,), generator=g)
        return Split(means[y] + 0.5 * torch.randn(n, dim, generator=g), y)
    return draw(n_train), draw(n_test)


def make_rule(rule_name: str, seed: int = 0, sizes: tuple[int, ...] = (20, 32, 3),
              params: Any = None, activation: str = "tanh") -> LearningRule:
    """A rule on a small MLP with its default optimizer, seeded as the engine seeds a cell."""
    cls = registry.get_rule(rule_name)
    net = MLP(list(sizes), hidden_activation=activation, generator=torch.Generator().manual_seed(seed))
    optimizer = None
    if cls.uses_optimizer:
        name, values = cls.default_optimizer
        optimizer = build_optimizer(name, values, net.parameters())
    return cls(net, params if params is not None else cls.Params(),
               optimizer, torch.Generator().manual_seed(seed + 1_000_003))


def _snapshot(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _train(rule: LearningRule, train: Split, updates: int, batch: int = 32, seed: int = 0,
           after_update: Callable[[], None] | None = None) -> None:
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < updates:
        perm = torch.randperm(len(train), generator=g)
        for start in range(0, len(train), batch):
            idx = perm[start:start + batch]
            rule.update(train.x[idx], train.y[idx])
            if after_update is not None:
                after_update()
            done += 1
            if done >= updates:
                return


def check_one_update(rule_name: str) -> CheckResult:
    train, _ = separable_data()
    rule = make_rule(rule_name)
    before = _snapshot(rule.net)
    rule.update(train.x[:32], train.y[:32])
    after = _snapshot(rule.net)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, after))
    finite = all(bool(torch.isfinite(a).all()) for a in after)
    return CheckResult("one update changes weights, finite", changed > 0 and finite,
                       f"{changed}/{len(after)} parameter tensors changed; finite={finite}")


def check_deterministic(rule_name: str) -> CheckResult:
    train, _ = separable_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        rule = make_rule(rule_name)
        _train(rule, train, 5)
        runs.append(_snapshot(rule.net))
    same = all(torch.equal(a, b) for a, b in zip(*runs))
    return CheckResult("same seed, same result", same, "identical weights after 5 updates" if same
                       else "weights differ between two runs with the same seed")


def check_learns(rule_name: str) -> CheckResult:
    train, test = separable_data()
    torch.manual_seed(0)
    rule = make_rule(rule_name)
    _train(rule, train, SEPARABLE_UPDATES)
    acc, _ = evaluate(rule, test)
    return CheckResult("learns a separable task", acc >= SEPARABLE_MIN_ACCURACY,
                       f"test accuracy {acc:.3f} after {SEPARABLE_UPDATES} updates "
                       f"(needs ≥ {SEPARABLE_MIN_ACCURACY}, chance 0.333)")


def bottleneck_data(seed: int = 0, n_train: int = 600, n_test: int = 600,
                    dim: int = HIDDEN_SIZES[0]) -> tuple[Split, Split]:
    """3 classes by the angle of (x₁, x₂) (three 120° sectors), x ~ N(0, I) in `dim` dimensions.

    Linear in the two informative inputs, so a hidden layer that finds them solves it. Through a
    hidden layer narrower than the input, frozen at random, the readout sees a random projection in
    which x₁ and x₂ are mixed with the other `dim − 2` inputs' noise: it cannot do well (with
    8 of 30, about 0.5 against chance 1/3)."""
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> Split:
        x = torch.randn(n, dim, generator=g)
        angle = torch.atan2(x[:, 1], x[:, 0]) + math.pi  # in [0, 2π]
        return Split(x, (angle / (2 * math.pi / 3)).long().clamp(0, 2))
    return draw(n_train), draw(n_test)


def train_last_layer_only(rule: LearningRule, train: Split, updates: int, batch: int = 32, seed: int = 0) -> None:
    """`_train`, but every layer below the output is put back to its initial weights after each
    update: the same rule, optimizer and readout learning, without what it does to hidden layers.

    Restoring the weights (rather than zeroing `.grad`) also holds closed-form rules that write
    weights themselves and rules whose hidden updates do not go through `.grad`."""
    hidden = [p for layer in rule.net.layers[:-1] for p in layer.parameters()]
    initial = [p.detach().clone() for p in hidden]

    @torch.no_grad()
    def restore_hidden() -> None:
        for p, p0 in zip(hidden, initial):
            p.copy_(p0)

    _train(rule, train, updates, batch, seed, after_update=restore_hidden)


def check_hidden_learns(rule_name: str) -> CheckResult:
    """The rule against itself with frozen hidden layers, on a task that needs hidden features.

    The control is the same rule trained on its last layer only (not BP on the last layer): it
    shares the rule's readout learning, optimizer, learning rate and budget, so the margin measures
    what the rule's hidden-layer updates add and nothing else."""
    train, test = bottleneck_data()
    accuracies = []
    for train_fn in (_train, train_last_layer_only):
        torch.manual_seed(0)
        rule = make_rule(rule_name, sizes=HIDDEN_SIZES)
        train_fn(rule, train, HIDDEN_UPDATES)
        accuracies.append(evaluate(rule, test)[0])
    full, frozen = accuracies
    return CheckResult("hidden layers learn", full >= frozen + HIDDEN_MARGIN,
                       f"test accuracy {full:.3f}, last layer only {frozen:.3f} after {HIDDEN_UPDATES} updates "
                       f"on a {'-'.join(map(str, HIDDEN_SIZES))} network (needs a margin of {HIDDEN_MARGIN})")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, (int, str)):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def params_toml(values: dict[str, Any]) -> str:
    """An inline TOML table of parameter values (None is left out: TOML has no null)."""
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None) + " }"


def check_params_roundtrip(rule_name: str) -> CheckResult:
    from .suite import parse_suite
    cls = registry.get_rule(rule_name)
    values = as_dict(cls.Params())
    text = (f'seeds = [0]\n[[tasks]]\nname = "{registry.names("task")[0]}"\n'
            f'[[rules]]\nname = "{rule_name}"\nparams = {params_toml(values)}\n')
    suite = parse_suite(text)
    got = suite.cells[0].rule.params
    ok = got == values
    return CheckResult("Params round-trip through a suite file", ok,
                       "defaults survive TOML" if ok else f"wrote {values}, read back {got}")


def check_feedback_shapes(rule_name: str) -> CheckResult:
    rule = make_rule(rule_name)
    pairs = rule.feedback()
    if pairs is None:
        return CheckResult("feedback() shapes", True, "rule exposes no feedback (nothing to check)")
    bad = [p.layer for p in pairs if p.feedback.shape != p.forward.T.shape
           or (p.target is not None and p.target.shape != p.feedback.shape)]
    return CheckResult("feedback() shapes", not bad,
                       f"{len(pairs)} layers, B shaped like Wᵀ" if not bad else f"layers {bad} have wrong shapes")


CHECKS: list[Callable[[str], CheckResult]] = [
    check_one_update, check_deterministic, check_learns, check_params_roundtrip, check_feedback_shapes,
    check_hidden_learns]


def state_tensors(rule: LearningRule) -> dict[str, torch.Tensor]:
    """Every tensor a rule's numbers depend on, by name: the network's parameters and buffers, the
    optimizer's state, and the tensors the rule holds itself (in attributes, lists, dicts and modules:
    feedback matrices, inverse networks). Gradients are not state."""
    out: dict[str, torch.Tensor] = {}

    def walk(name: str, value: Any, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            out[name] = value
        elif isinstance(value, torch.nn.Module):
            for key, t in [*value.named_parameters(), *value.named_buffers()]:
                out[f"{name}.{key}"] = t
        elif depth < 4 and isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{name}[{i}]", v, depth + 1)
        elif depth < 4 and isinstance(value, dict):
            for k, v in value.items():
                walk(f"{name}[{k!r}]", v, depth + 1)

    walk("net", rule.net, 0)
    for key, value in vars(rule).items():
        if key not in ("net", "optimizer", "generator", "params"):
            walk(key, value, 0)
    if rule.optimizer is not None:
        for i, state in enumerate(rule.optimizer.state.values()):
            walk(f"optimizer.state[{i}]", state, 1)
    return out


def check_credit_changes_only_grad(rule_name: str) -> CheckResult:
    """`credit` changes nothing but `.grad` (the metrics call it on probe batches between updates)."""
    from .metrics import has_credit

    train, _ = separable_data()
    torch.manual_seed(0)
    rule = make_rule(rule_name)
    name = "credit changes nothing but .grad"
    if not has_credit(rule):
        return CheckResult(name, True, "rule has no credit() (closed form or not gradient-like): nothing to check")
    rule.update(train.x[:32], train.y[:32])  # feedback, inverses and optimizer state exist and have moved once
    before = {k: t.detach().clone() for k, t in state_tensors(rule).items()}
    with torch.enable_grad():
        rule.credit(train.x[32:64], train.y[32:64])
    after = state_tensors(rule)
    changed = [k for k, t in before.items()
               if k not in after or after[k].shape != t.shape or not torch.equal(after[k].detach(), t)]
    changed += [k for k in after if k not in before]
    return CheckResult(name, not changed,
                       f"{len(before)} tensors (weights, buffers, optimizer and rule state) unchanged" if not changed
                       else f"credit() changed {', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}; "
                            f"learn feedback or inverses in update(), not in credit()")


def check_evaluates_through_predict(rule_name: str) -> CheckResult:
    """The engine's accuracy is the accuracy of `rule.predict` (whatever the network's raw output says)."""
    from .engine import evaluate as engine_evaluate

    train, test = separable_data()
    torch.manual_seed(0)
    rule = make_rule(rule_name)
    _train(rule, train, 20)
    with torch.no_grad():
        scores = rule.predict(test.x)
    expected = float((scores.argmax(dim=1) == test.y).double().mean())
    measured, _ = engine_evaluate(rule, test)
    ok = math.isclose(measured, expected, abs_tol=1e-12) and tuple(scores.shape) == (len(test), 3)
    return CheckResult("evaluated through predict()", ok,
                       f"predict() scores {tuple(scores.shape)}, accuracy {expected:.3f}; "
                       f"engine measured {measured:.3f}")


#: the rule contract's checks (DESIGN.md, "Rule contract, two more sentences")
CONTRACT_CHECKS: list[Callable[[str], CheckResult]] = [check_credit_changes_only_grad, check_evaluates_through_predict]


def check_rule(rule_name: str) -> list[CheckResult]:
    """Run every check on a registered rule; an exception inside a check is its failure."""
    registry.get_rule(rule_name)  # unknown name: a clear error before anything runs
    results = []
    for check in [*CHECKS, *CONTRACT_CHECKS]:
        try:
            results.append(check(rule_name))
        except Exception as exc:
            name = check.__name__.removeprefix("check_").replace("_", " ")
            results.append(CheckResult(name, False, f"raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    return results


def assert_conformant(rule_name: str) -> None:
    """pytest helper: fail listing every check the rule does not pass."""
    failed = [r for r in check_rule(rule_name) if not r.passed]
    assert not failed, f"rule '{rule_name}' fails: " + "; ".join(f"{r.name}: {r.detail}" for r in failed)
