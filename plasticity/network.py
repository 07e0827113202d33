"""The multilayer perceptron every rule trains, with a per-layer trace of H_l and Z_l.

Layer l (1..L) computes the pre-activation `H_l = Z_{l-1} W_lᵀ + b_l` and the activation
`Z_l = f(H_l)`; `Z_0` is the input. The output layer's activation is the identity by default
(logits); rules that want another output nonlinearity (ER's tanh) apply it themselves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .errors import ConfigError, unknown


def weights_finite(net: nn.Module) -> bool:
    """Whether every parameter of `net` is finite (one host sync per tensor)."""
    return all(bool(torch.isfinite(p).all()) for p in net.parameters())


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda h: nn.functional.leaky_relu(h, 0.01),
    "sigmoid": torch.sigmoid,
    "linear": lambda h: h,
}

INITS = ("torch", "he_normal", "xavier_uniform", "lecun_normal")


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(unknown("activation", name, ACTIVATIONS)) from None


@torch.no_grad()
def init_layers(model: nn.Module, init: str = "torch", scale: float = 1.0,
                generator: torch.Generator | None = None) -> None:
    """Every Linear and Conv2d layer of `model`, in registration order, drawn from `generator`:
    torch's default for both layer types (weight and bias U(±1/√fan_in), which is what
    kaiming_uniform(a = √5) draws) or he_normal / xavier_uniform / lecun_normal with zero bias;
    weights and biases × `scale`. Other layers (batch norm) keep their own start. The one
    initialisation of the MLP and of the image models (plasticity.models)."""
    if init not in INITS:
        raise ConfigError(unknown("init", init, INITS))
    for m in model.modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        w, b = m.weight, m.bias
        receptive = math.prod(w.shape[2:])  # 1 for a Linear layer, the kernel's area for a conv
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        if init == "torch":
            # As float32 this bound equals kaiming_uniform's √3·gain(√5)/√fan_in bit for bit (checked
            # for every fan_in up to 10⁶); as float64 they differ in the last place. Networks are
            # built in float32 and then cast, so both layer types draw exactly what torch would.
            bound = 1.0 / math.sqrt(fan_in)
            w.uniform_(-bound, bound, generator=generator)
            if b is not None:
                b.uniform_(-bound, bound, generator=generator)
        else:
            if init == "he_normal":
                w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            elif init == "lecun_normal":
                w.normal_(0.0, math.sqrt(1.0 / fan_in), generator=generator)
            else:
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                w.uniform_(-bound, bound, generator=generator)
            if b is not None:
                b.zero_()
        w.mul_(scale)
        if b is not None:
            b.mul_(scale)


@dataclass
class Trace:
    """Everything one forward pass computed: `h[l]` pre-activations and `z[l]` activations.

    `z[0]` is the input and `h[0]` is None, so that `h[l]`, `z[l]` and `net.layers[l-1]`
    describe the same layer l = 1..L.
    """
    h: list[torch.Tensor | None]
    z: list[torch.Tensor]

    @property
    def output(self) -> torch.Tensor:
        return self.z[-1]


class MLP(nn.Module):
    """Fully connected network `sizes[0] -> ... -> sizes[-1]` with a hidden activation.

    Weights follow torch's `nn.Linear` layout (out × in). `init` picks the initial
    distribution and `init_scale` multiplies it (robustness studies scale it ×0.1 … ×10).
    """

    def __init__(self, sizes: list[int] | tuple[int, ...], hidden_activation: str = "relu",
                 output_activation: str = "linear", bias: bool = True, init: str = "torch",
                 init_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ConfigError(f"network sizes must list at least an input and an output width, got {list(sizes)}")
        if init not in INITS:
            raise ConfigError(unknown("init", init, INITS))
        self.sizes = [int(s) for s in sizes]
        self.hidden_activation_name = hidden_activation
        self.output_activation_name = output_activation
        self.f = activation(hidden_activation)
        self.f_out = activation(output_activation)
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        self.reset_parameters(init, init_scale, generator)

    def reset_parameters(self, init: str = "torch", scale: float = 1.0,
                         generator: torch.Generator | None = None) -> None:
        init_layers(self, init, scale, generator)

    @property
    def depth(self) -> int:
        return len(self.layers)

    def act(self, l: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Activation of layer l (1-based): the hidden one, or the output one for l = L."""
        return self.f_out if l == self.depth else self.f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        for l, layer in enumerate(self.layers, start=1):
            z = self.act(l)(layer(z))
        return z

    def forward_trace(self, x: torch.Tensor) -> Trace:
        """Forward pass that keeps every H_l and Z_l (autograd stays on; wrap in no_grad to drop it)."""
        hs: list[torch.Tensor | None] = [None]
        zs = [x]
        for l, layer in enumerate(self.layers, start=1):
            h = layer(zs[-1])
            hs.append(h)
            zs.append(self.act(l)(h))
        return Trace(hs, zs)

    def activation_vjp(self, l: int, h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """`g ⊙ f_l'(h)`: an error passed back through layer l's elementwise activation alone
        (autograd on f, so any activation works); what non-backprop rules need between layers."""
        with torch.enable_grad():
            h = h.detach().requires_grad_(True)
            (out,) = torch.autograd.grad(self.act(l)(h), h, g)
        return out

    def weights(self) -> list[torch.Tensor]:
        return [layer.weight for layer in self.layers]
