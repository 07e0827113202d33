"""MNIST handwritten digits (LeCun et al. 1998), read from the official IDX files."""
from __future__ import annotations

from pathlib import Path

from plasticity import RawData, Task, TaskParams, register_task
from plasticity.data import load_mnist


@register_task("mnist")
class MNIST(Task):
    """MNIST digits: 28×28 grey images as 784 inputs, 10 classes, 55k train / 5k val / 10k test."""

    # Params: TaskParams' defaults are this task's: MLP 256-256 ReLU, batch 100, 5,000 validation images.
    Params = TaskParams

    thresholds = (0.90, 0.95, 0.97, 0.98)
    budget = {"epochs": 10}
    image_shape = (1, 28, 28)

    def load_arrays(self, data_dir: Path) -> RawData:
        x_train, y_train, x_test, y_test = load_mnist(data_dir)
        return RawData(x_train.reshape(len(x_train), -1), y_train, x_test.reshape(len(x_test), -1),
                       y_test, n_classes=10)
