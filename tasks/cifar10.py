"""CIFAR-10 (Krizhevsky 2009), read from the official python batches with a restricted unpickler."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasticity import Activation, RawData, Task, TaskParams, register_task
from plasticity.data import load_cifar10
from plasticity.task import VAL_SPLIT_SEED


def _subset(n: int, keep: int, stream: int) -> slice | np.ndarray:
    if not keep or keep >= n:
        return slice(None)
    return np.sort(np.random.default_rng([VAL_SPLIT_SEED, stream]).permutation(n)[:keep])


@register_task("cifar10")
class CIFAR10(Task):
    """CIFAR-10 colour images: 32×32×3 flattened (CHW) to 3072 inputs, 10 classes, 45k/5k/10k split."""

    @dataclass(frozen=True)
    class Params(TaskParams):
        hidden: tuple[int, ...] = (1024, 512)
        activation: Activation = "relu"
        batch_size: int = 100
        val_size: int = 5000
        train_subset: int = 0  # training images kept (0: all 45,000 left after validation)
        test_subset: int = 0   # test images kept (0: all 10,000); evaluation is most of a small run's time

        def __post_init__(self) -> None:
            super().__post_init__()
            for name in ("train_subset", "test_subset"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be non-negative (0: all), got {getattr(self, name)}")

    thresholds = (0.35, 0.45, 0.50, 0.55)
    budget = {"epochs": 20}
    image_shape = (3, 32, 32)

    def load_arrays(self, data_dir: Path) -> RawData:
        # The batches already hold one flat CHW row per image, the layout MLP results use.
        x_train, y_train, x_test, y_test = load_cifar10(data_dir)
        p = self.params
        # Fixed random subsets, the same for every seed; validation is carved out of the training one.
        train = _subset(len(x_train), p.train_subset + p.val_size if p.train_subset else 0, 1)
        test = _subset(len(x_test), p.test_subset, 2)
        return RawData(x_train[train], y_train[train], x_test[test], y_test[test], n_classes=10)
