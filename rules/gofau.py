"""GOFAU as the paper ran it: backpropagation's gradient, stepped by a multiplicative or hybrid
update rule (Kirtas, Passalis, Tefas, arXiv 2307.07189).

    g_t = ∇ℓ(θ_{t−1})                                   (backprop: rules/bp.py)
    m_t·l_t from the base optimizer (here SGD with momentum)
    multiplicative  θ ← θ − η_out |θ| tanh(η_in m_t l_t)
    hybrid          θ ← θ − γ η_out |θ| tanh(η_in m_t l_t) − (1 − γ) η m_t l_t

The credit is backprop's, unchanged; the update rule is the optimizer (plasticity/gofau.py), so
these rules differ from "bp" only in their default optimizer. Any gradient-like rule composes
with the same optimizers in a suite ("fa" + "hybrid-adam" is a suite line).
"""
from __future__ import annotations

from pathlib import Path

from plasticity import register_rule, registry

# Plugin files are not importable modules: load the sibling bp.py (a no-op once loaded) and
# take its class from the registry.
registry.load_plugin_file(Path(__file__).with_name("bp.py"))
Backprop = registry.get_rule("bp")


@register_rule("gofau-mult")
class GofauMultiplicative(Backprop):
    """Backprop credit with GOFAU's multiplicative SGD update (keeps every weight's sign)."""

    default_optimizer = ("mult-sgd", {"lr": 0.2, "momentum": 0.9, "eta_in": 1.0})


@register_rule("gofau-hybrid")
class GofauHybrid(Backprop):
    """Backprop credit with GOFAU's hybrid SGD update, γ = 0.5 (the paper's fixed blend)."""

    default_optimizer = ("hybrid-sgd", {"lr": 0.05, "momentum": 0.9, "gamma": 0.5})
