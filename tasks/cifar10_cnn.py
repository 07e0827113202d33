"""CIFAR-10 with the ResNet-9-style CNN: the task "cifar10" with `model = "resnet9"` and `width = 16`
by default (plasticity.models.ResNet9), kept under its own name with its thresholds and budget.

Measured on two CPU cores (batch 100, float32): `width = 16` (0.41 M parameters) trains an epoch
of all 45,000 training images in about 45 s; `width = 8` (0.10 M) with `train_subset = 10000` in
about 4 s. Use a wider net on a GPU (64: the original ResNet-9, ~6.5 M parameters). Every rule
whose `layer_types` covers Linear and Conv2d runs on it (bp, gofau-*, the feedback family).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plasticity import register_task, registry
from plasticity.models import ModelName

# Plugin files are not importable modules: load the sibling cifar10.py and take its class.
registry.load_plugin_file(Path(__file__).with_name("cifar10.py"))
CIFAR10 = registry.get_task("cifar10")


@register_task("cifar10-cnn")
class CIFAR10CNN(CIFAR10):
    """CIFAR-10 images (3×32×32) for a ResNet-9-style CNN; `width` sets its channels, `train_subset` its data."""

    @dataclass(frozen=True)
    class Params(CIFAR10.Params):
        model: ModelName = "resnet9"
        width: int = 16  # channels of the first conv (64: the original ResNet-9)

    thresholds = (0.35, 0.45, 0.55, 0.65)
    budget = {"epochs": 5}
