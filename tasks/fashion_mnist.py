"""Fashion-MNIST (Xiao et al. 2017): Zalando clothing images in MNIST's IDX format."""
from __future__ import annotations

from pathlib import Path

from plasticity import RawData, Task, TaskParams, register_task
from plasticity.data import load_fashion_mnist


@register_task("fashion-mnist", aliases=["fashion_mnist"])
class FashionMNIST(Task):
    """Fashion-MNIST clothing: 28×28 grey images as 784 inputs, 10 classes, 55k/5k/10k split."""

    # Params: TaskParams' defaults are this task's: MLP 256-256 ReLU, batch 100, 5,000 validation images.
    Params = TaskParams

    thresholds = (0.80, 0.85, 0.88)
    budget = {"epochs": 10}
    image_shape = (1, 28, 28)

    def load_arrays(self, data_dir: Path) -> RawData:
        x_train, y_train, x_test, y_test = load_fashion_mnist(data_dir)
        return RawData(x_train.reshape(len(x_train), -1), y_train, x_test.reshape(len(x_test), -1),
                       y_test, n_classes=10)
