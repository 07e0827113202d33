"""Backward passes through feedback matrices other than Wᵀ, shared by the feedback-family rules.

Layer l (1..L) has `H_l = Z_{l−1} W_lᵀ + b_l`; a rule supplies, for each layer l ≥ 2, a feedback
matrix B_l (in × out, shaped like W_lᵀ) that carries the error of layer l down to layer l − 1:

    δ_L = ∂ℓ/∂H_L,   δ_{l−1} = (B_l δ_l) ⊙ f'(H_{l−1})      (with B_l = W_lᵀ this is backprop)
    ∇W_l = δ_l Z_{l−1}ᵀ,   ∇b_l = δ_l                          (summed over the batch; the
                                                               loss error is already a batch mean)
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .errors import ConfigError
from .losses import loss_and_error
from .network import MLP, Trace


@torch.no_grad()
def output_error(net: MLP, x: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[Trace, torch.Tensor, torch.Tensor]:
    """Forward trace, batch loss and δ_L = ∂ℓ/∂H_L (through the output activation)."""
    trace = net.forward_trace(x)
    value, error = loss_and_error(loss, trace.output, y)
    return trace, value, net.activation_vjp(net.depth, trace.h[-1], error)


@torch.no_grad()
def layered_deltas(net: MLP, trace: Trace, delta_out: torch.Tensor, feedback: list[torch.Tensor | None],
                   derivative: bool = True) -> list[torch.Tensor]:
    """δ_1..δ_L sent down layer by layer: `feedback[l-1]` is B_l (used for l ≥ 2). With
    `derivative=False` the f' factors are left out (the linearised rule of the RF poster)."""
    deltas = [delta_out]
    for l in range(net.depth, 1, -1):
        down = deltas[0] @ feedback[l - 1].T
        deltas.insert(0, net.activation_vjp(l - 1, trace.h[l - 1], down) if derivative else down)
    return deltas


@torch.no_grad()
def write_grads(net: MLP, trace: Trace, deltas: list[torch.Tensor]) -> None:
    """`.grad` of every layer from its δ_l and input Z_{l−1} (replacing what was there)."""
    for layer, delta, z in zip(net.layers, deltas, trace.z[:-1]):
        layer.weight.grad = delta.T @ z
        if layer.bias is not None:
            layer.bias.grad = delta.sum(dim=0)


def random_feedback(shape: tuple[int, int], scale: float, like: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
    """A fixed Gaussian feedback matrix, N(0, scale²), on `like`'s device and dtype (FA's and DFA's
    B, and RF's starting B)."""
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype) * scale


# ---------------------------------------------------------------------------------------------
# One mechanism for any model: each Linear / Conv2d layer sends its error down through B.
#
# A rule of the feedback family does not need the model's class. While `credit` runs, every
# Linear and Conv2d layer of the model computes its usual output, but its backward pass
#
#     gives its weight the local gradient   ∇W = δ xᵀ (Linear), the δ-x correlation (Conv2d),
#     gives its bias                        ∇b = Σ δ,
#     sends to its input                    B δ instead of Wᵀ δ,
#
# so pooling, batch norm, residual sums, flattening and activations between layers pass the
# error back by autograd as usual. `B` of a Linear layer is in × out (Wᵀ's layout); of a
# Conv2d layer a kernel shaped like W (out × in × kh × kw), applied as a transposed
# convolution (the input gradient of a convolution with kernel B). "Direct" feedback (DFA)
# replaces the layer's input error by the network's output error e = ∂ℓ/∂y projected by a
# fixed B: e Bᵀ for a Linear layer (B: in × n_out); for a Conv2d layer, BioTorch's form:
# e broadcast over the layer's output positions and sent through a kernel B of shape
# n_out × in × kh × kw (the same projection at every position).
# ---------------------------------------------------------------------------------------------

#: The layer types the feedback mechanism replaces the backward pass of.
FEEDBACK_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def feedback_layers(net: nn.Module) -> list[nn.Module]:
    """The Linear and Conv2d layers of `net` in module order: layer l = 1..L is `[l - 1]`.

    The first one is taken as the input layer: its B would only carry an error to the data and
    feedback rules do not draw it (models list their layers in forward order)."""
    return [m for m in net.modules() if isinstance(m, FEEDBACK_LAYERS)]


def check_layers(net: nn.Module, supported: tuple[type[nn.Module], ...] | None, rule: str) -> None:
    """Refuse a model holding a parametric layer type the rule has no form for (naming it).

    `supported` None: any model (the rule trains through autograd). Conv2d layers must use
    numeric padding, zero padding mode and groups = 1 for the feedback mechanism."""
    if supported is None:
        return
    names = ", ".join(t.__name__ for t in supported)
    for name, m in net.named_modules():
        has_own = any(True for _ in m.parameters(recurse=False))
        if has_own and not isinstance(m, supported) and not isinstance(m, _NORMS):
            raise ConfigError(f"rule '{rule}' has no form for a {type(m).__name__} layer ('{name}'); "
                              f"it supports {names} layers")
        if isinstance(m, nn.Conv2d) and (isinstance(m.padding, str) or m.padding_mode != "zeros"
                                         or m.groups != 1):
            raise ConfigError(f"rule '{rule}' needs Conv2d layers with numeric zero padding and groups=1; "
                              f"layer '{name}' has padding={m.padding!r}, padding_mode={m.padding_mode!r}, "
                              f"groups={m.groups}")


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def as_matrix(layer: nn.Module, b: torch.Tensor | None = None) -> torch.Tensor:
    """A layer's weight as a matrix out × (in·kh·kw), or its feedback B as the matching
    (in·kh·kw) × out matrix (a view, so in-place changes reach the kernel)."""
    if b is None:
        return layer.weight.detach().flatten(1)
    return b if isinstance(layer, nn.Linear) else b.flatten(1).T


def from_matrix(layer: nn.Module, m: torch.Tensor) -> torch.Tensor:
    """Inverse of `as_matrix` for feedback: an (in·kh·kw) × out matrix as the layer's B."""
    return m if isinstance(layer, nn.Linear) else m.T.reshape(layer.weight.shape).contiguous()


def feedback_shape(layer: nn.Module) -> tuple[int, ...]:
    """The shape of a layer's layer-to-layer B: Wᵀ's for Linear, W's kernel for Conv2d."""
    w = layer.weight
    return tuple(w.T.shape) if isinstance(layer, nn.Linear) else tuple(w.shape)


def direct_shape(layer: nn.Module, n_out: int) -> tuple[int, ...]:
    """The shape of a layer's direct (DFA) B from `n_out` network outputs."""
    w = layer.weight
    return (w.shape[1], n_out) if isinstance(layer, nn.Linear) else (n_out, *w.shape[1:])


def direct_random_feedback(layers: list[nn.Module], feedback_scale: float,
                           generator: torch.Generator) -> list[torch.Tensor | None]:
    """Fixed random direct feedback from the network's outputs to every layer's input but the
    first (DFA's and DRTP's B): entry l is N(0, s²) shaped `direct_shape`, with s the std of layer
    l's weights × `feedback_scale`; entry 0 is None (the input needs no error)."""
    n_out = layers[-1].weight.shape[0]
    return [None] + [random_feedback(direct_shape(layer, n_out), float(layer.weight.detach().std()) * feedback_scale,
                                     layer.weight, generator)
                     for layer in layers[1:]]


class OutputError:
    """Holds e = ∂ℓ/∂y of the network's output during a backward pass (for direct feedback)."""
    e: torch.Tensor | None = None


class _Tap(torch.autograd.Function):
    """Identity on the output whose backward stores the output error (it runs before any layer's)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, holder: OutputError) -> torch.Tensor:
        ctx.holder = holder
        return y.view_as(y)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        ctx.holder.e = g
        return g, None


def _missing(layer: nn.Module) -> RuntimeError:
    return RuntimeError(f"{type(layer).__name__} layer {tuple(layer.weight.shape)} has no feedback B but its input "
                        f"needs an error: feedback rules draw no B for the first layer (module order), so list the "
                        f"model's layers in forward order")


class _LinearFeedback(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, b, holder, layer):
        ctx.save_for_backward(x, b)
        ctx.holder, ctx.layer, ctx.has_bias = holder, layer, bias is not None
        return nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, g):
        x, b = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            if b is None:
                raise _missing(ctx.layer)
            gx = (g if ctx.holder is None else ctx.holder.e) @ b.T
        if ctx.needs_input_grad[1]:
            gw = g.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.reshape(-1, g.shape[-1]).sum(dim=0)
        return gx, gw, gb, None, None, None


class _Conv2dFeedback(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, b, holder, layer):
        ctx.save_for_backward(x, weight, b)
        ctx.holder, ctx.layer, ctx.has_bias = holder, layer, bias is not None
        return nn.functional.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation)

    @staticmethod
    def backward(ctx, g):
        x, weight, b = ctx.saved_tensors
        layer = ctx.layer
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_x and b is None:
            raise _missing(layer)
        geometry = (layer.stride, layer.padding, layer.dilation, False, [0, 0], 1)
        gx = gw = gb = None
        if ctx.holder is None:
            # One call: the input gradient of a convolution with kernel B, and the weight's local gradient.
            gx, gw, _ = torch.ops.aten.convolution_backward(
                g, x, b if b is not None else weight, None, *geometry, (need_x, need_w, False))
        else:
            if need_x:
                e = ctx.holder.e
                spread = e[:, :, None, None].expand(e.shape[0], e.shape[1], g.shape[2], g.shape[3])
                gx = torch.ops.aten.convolution_backward(spread, x, b, None, *geometry, (True, False, False))[0]
            if need_w:
                gw = torch.ops.aten.convolution_backward(g, x, weight, None, *geometry, (False, True, False))[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(dim=(0, 2, 3))
        return gx, gw, gb, None, None, None


def _feedback_forward(layer: nn.Module, b: torch.Tensor | None, holder: OutputError | None):
    fn = _LinearFeedback if isinstance(layer, nn.Linear) else _Conv2dFeedback
    return lambda x: fn.apply(x, layer.weight, layer.bias, b, holder, layer)


@contextmanager
def feedback_path(layers: list[nn.Module], feedback: list[torch.Tensor | None],
                  holder: OutputError | None = None) -> Iterator[None]:
    """Within the block, layer i's backward sends its error down through `feedback[i]`
    (direct feedback from `holder.e` when a holder is given; tap the output with `tap_output`).

    The forward pass is unchanged; the layers are restored on exit (the backward may run after)."""
    if len(layers) != len(feedback):
        raise ValueError(f"{len(layers)} layers but {len(feedback)} feedback tensors")
    for layer, b in zip(layers, feedback):
        layer.forward = _feedback_forward(layer, b, holder)
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


def tap_output(y: torch.Tensor, holder: OutputError) -> torch.Tensor:
    """The network output, unchanged, with its error stored in `holder` during backward."""
    return _Tap.apply(y, holder)


@torch.no_grad()
def layer_inputs(net: nn.Module, layers: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """The input each layer sees on the batch `x` (one forward pass, by hooks), in eval mode so
    that batch norm's running statistics do not move (no change on a model without it)."""
    seen: dict[int, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, inp[0]))
             for i, layer in enumerate(layers)]
    was_training = net.training
    net.eval()
    try:
        net(x)
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return [seen[i] for i in range(len(layers))]


def patches(layer: nn.Module, z: torch.Tensor, limit: int | None = None) -> torch.Tensor:
    """A layer's input as rows the weight matrix `as_matrix(layer)` acts on: z itself for Linear;
    for Conv2d its receptive-field patches (N·positions × in·kh·kw), at most `limit` rows."""
    if isinstance(layer, nn.Linear):
        rows = z.reshape(-1, z.shape[-1])
    else:
        cols = nn.functional.unfold(z, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return rows if limit is None or rows.shape[0] <= limit else rows[:limit]
