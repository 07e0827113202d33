"""MNIST handwritten digits (LeCun et al. 1998), read from the official IDX files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plasticity import Activation, RawData, Task, TaskParams, register_task
from plasticity.data import load_mnist


@register_task("mnist")
class MNIST(Task):
    """MNIST digits: 28×28 grey images as 784 inputs, 10 classes, 55k train / 5k val / 10k test."""

    @dataclass(frozen=True)
    class Params(TaskParams):
        hidden: tuple[int, ...] = (256, 256)
        activation: Activation = "relu"
        batch_size: int = 100
        val_size: int = 5000

    thresholds = (0.90, 0.95, 0.97, 0.98)
    budget = {"epochs": 10}

    def load_arrays(self, data_dir: Path) -> RawData:
        x_train, y_train, x_test, y_test = load_mnist(data_dir)
        return RawData(x_train.reshape(len(x_train), -1), y_train, x_test.reshape(len(x_test), -1),
                       y_test, n_classes=10)
