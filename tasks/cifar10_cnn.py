"""CIFAR-10 with a small ResNet-9-style CNN (Page's DAWNBench ResNet-9, channels scaled by `width`).

    prep    conv3×3(w)                          32×32
    layer1  conv3×3(2w), max-pool 2, residual   16×16   (residual: x + conv(conv(x)))
    layer2  conv3×3(4w), max-pool 2              8×8
    layer3  conv3×3(8w), max-pool 2, residual    4×4
    head    global max-pool, linear(8w → 10), × 1/8

Every conv is conv → batch-norm → activation. `width = 64` is the original ResNet-9 (~6.5 M
parameters). Measured on two CPU cores (batch 100, float32): the default `width = 16` (0.41 M
parameters) trains an epoch of all 45,000 training images in about 45 s; `width = 8` (0.10 M)
with `train_subset = 10000` in about 4 s. Use a wider net on a GPU. Data arrive flattened (N, 3072) in the
pickles' channel-major order and are reshaped to (N, 3, 32, 32) inside the network.

Only rules that train through `net(x)` and autograd (bp, gofau-*) run on it; rules that need an
MLP's per-layer trace (`forward_trace`, `layers`) stop with a ConfigError saying so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from torch import nn

from plasticity import ConfigError, RawData, register_task, registry
from plasticity.network import activation as activation_fn
from plasticity.task import VAL_SPLIT_SEED

# Plugin files are not importable modules: load the sibling cifar10.py and take its class.
registry.load_plugin_file(Path(__file__).with_name("cifar10.py"))
CIFAR10 = registry.get_task("cifar10")

MLP_ONLY = ("task 'cifar10-cnn' builds a convolutional network, which has no MLP per-layer trace "
            "(forward_trace / layers / activation_vjp) for this rule to use; run rules that train through "
            "net(x) and autograd (bp, gofau-mult, gofau-hybrid) on it, or use the MLP task 'cifar10'")


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, act: nn.Module, pool: bool = False) -> None:
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), act]
        super().__init__(*layers, *([nn.MaxPool2d(2)] if pool else []))


class Residual(nn.Module):
    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBlock(channels, channels, act), ConvBlock(channels, channels, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Act(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.f = activation_fn(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


class ResNet9(nn.Module):
    """ResNet-9-style CNN on flattened (N, 3·32·32) channel-major CIFAR rows."""

    def __init__(self, width: int = 8, n_classes: int = 10, activation: str = "relu",
                 init_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        act = _Act(activation)
        w = width
        self.features = nn.Sequential(
            ConvBlock(3, w, act),
            ConvBlock(w, 2 * w, act, pool=True), Residual(2 * w, act),
            ConvBlock(2 * w, 4 * w, act, pool=True),
            ConvBlock(4 * w, 8 * w, act, pool=True), Residual(8 * w, act),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8 * w, n_classes, bias=False)
        self.reset_parameters(init_scale, generator)

    @torch.no_grad()
    def reset_parameters(self, scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """torch's default init (kaiming-uniform, a = √5) from `generator`, conv and linear weights
        × `scale`; batch-norm starts at (1, 0), so `scale` changes the learning dynamics of the
        normalised convs (their effective step) and the output scale of the classifier."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                m.weight.mul_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.view(-1, 3, 32, 32))) * 0.125

    # The MLP interface that non-autograd rules build on (weights, depth, sizes, layers, the trace):
    # each refuses with the same message, so any such rule stops when it is built, before a cell
    # writes anything, instead of failing later with an IndexError or AttributeError.
    def weights(self) -> NoReturn:
        raise ConfigError(MLP_ONLY)

    @property
    def depth(self) -> NoReturn:
        raise ConfigError(MLP_ONLY)

    @property
    def sizes(self) -> NoReturn:
        raise ConfigError(MLP_ONLY)

    @property
    def layers(self) -> NoReturn:
        raise ConfigError(MLP_ONLY)

    def forward_trace(self, x: torch.Tensor) -> NoReturn:
        raise ConfigError(MLP_ONLY)

    def activation_vjp(self, l: int, h: torch.Tensor, g: torch.Tensor) -> NoReturn:
        raise ConfigError(MLP_ONLY)


def _subset(n: int, keep: int, stream: int) -> slice | np.ndarray:
    if not keep or keep >= n:
        return slice(None)
    return np.sort(np.random.default_rng([VAL_SPLIT_SEED, stream]).permutation(n)[:keep])


@register_task("cifar10-cnn")
class CIFAR10CNN(CIFAR10):
    """CIFAR-10 images (3×32×32) for a ResNet-9-style CNN; `width` sets its channels, `train_subset` its data."""

    @dataclass(frozen=True)
    class Params(CIFAR10.Params):
        width: int = 16  # channels of the first conv (64: the original ResNet-9)
        train_subset: int = 0  # training images kept (0: all 45,000 left after validation)
        test_subset: int = 0   # test images kept (0: all 10,000); evaluation is most of a small run's time

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.width < 1:
                raise ValueError(f"width must be positive, got {self.width}")
            for name in ("train_subset", "test_subset"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be non-negative (0: all), got {getattr(self, name)}")

    thresholds = (0.35, 0.45, 0.55, 0.65)
    budget = {"epochs": 5}

    def load_arrays(self, data_dir: Path) -> RawData:
        raw = super().load_arrays(data_dir)
        p = self.params
        # Fixed random subsets, the same for every seed; validation is carved out of the training one.
        train = _subset(len(raw.x_train), p.train_subset + p.val_size if p.train_subset else 0, 1)
        test = _subset(len(raw.x_test), p.test_subset, 2)
        return RawData(raw.x_train[train], raw.y_train[train], raw.x_test[test], raw.y_test[test], raw.n_classes)

    def build_network(self, n_inputs: int, n_classes: int, generator: torch.Generator) -> ResNet9:
        if n_inputs != 3 * 32 * 32:
            raise ConfigError(f"task 'cifar10-cnn' expects 3×32×32 images (3072 inputs), got {n_inputs}")
        p = self.params
        return ResNet9(p.width, n_classes, p.activation, p.init_scale, generator)
