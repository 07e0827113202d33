"""Conformance kit: the checks any registered rule must pass (`plasticity check RULE`).

1. one update changes the weights and keeps them finite;
2. the same seed gives the same weights, bit for bit, on the CPU;
3. it learns a small separable task (3 Gaussian classes in 20-D) well above chance;
4. its default Params round-trip through a suite file;
5. `feedback()`, if given, returns matrices shaped like the transposed forward weights.

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


def _train(rule: LearningRule, train: Split, updates: int, batch: int = 32, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < updates:
        perm = torch.randperm(len(train), generator=g)
        for start in range(0, len(train), batch):
            idx = perm[start:start + batch]
            rule.update(train.x[idx], train.y[idx])
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
    acc, _ = evaluate(rule.net, test)
    return CheckResult("learns a separable task", acc >= SEPARABLE_MIN_ACCURACY,
                       f"test accuracy {acc:.3f} after {SEPARABLE_UPDATES} updates "
                       f"(needs ≥ {SEPARABLE_MIN_ACCURACY}, chance 0.333)")


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
    check_one_update, check_deterministic, check_learns, check_params_roundtrip, check_feedback_shapes]


def check_rule(rule_name: str) -> list[CheckResult]:
    """Run every check on a registered rule; an exception inside a check is its failure."""
    registry.get_rule(rule_name)  # unknown name: a clear error before anything runs
    results = []
    for check in CHECKS:
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
