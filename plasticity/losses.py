"""Output losses shared by rules: softmax cross-entropy and squared error against one-hot targets."""
from __future__ import annotations

from typing import Callable, Literal

import torch
from torch.nn import functional as F

LossName = Literal["ce", "mse"]


def cross_entropy(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of logits `output` against integer labels, averaged over the batch."""
    return F.cross_entropy(output, y)


def squared_error(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½‖output − onehot(y)‖², summed over classes and averaged over the batch."""
    target = F.one_hot(y, output.shape[1]).to(output.dtype)
    return 0.5 * (output - target).pow(2).sum(dim=1).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": cross_entropy, "mse": squared_error}


def loss_and_error(name: str, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch loss and its gradient with respect to the network's output: the error that a
    credit-assignment rule sends down (for "ce": (softmax(output) − onehot(y)) / batch size)."""
    with torch.enable_grad():
        out = output.detach().requires_grad_(True)
        loss = LOSSES[name](out, y)
        (error,) = torch.autograd.grad(loss, out)
    return loss.detach(), error
