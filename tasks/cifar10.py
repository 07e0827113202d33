"""CIFAR-10 (Krizhevsky 2009), read from the official python batches with a restricted unpickler."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plasticity import Activation, RawData, Task, TaskParams, register_task
from plasticity.data import load_cifar10


@register_task("cifar10")
class CIFAR10(Task):
    """CIFAR-10 colour images: 32×32×3 flattened (CHW) to 3072 inputs, 10 classes, 45k/5k/10k split."""

    @dataclass(frozen=True)
    class Params(TaskParams):
        hidden: tuple[int, ...] = (1024, 512)
        activation: Activation = "relu"
        batch_size: int = 100
        val_size: int = 5000

    thresholds = (0.35, 0.45, 0.50, 0.55)
    budget = {"epochs": 20}

    def load_arrays(self, data_dir: Path) -> RawData:
        # The batches already hold one flat CHW row per image, the layout MLP results use.
        return RawData(*load_cifar10(data_dir), n_classes=10)
