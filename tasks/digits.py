"""scikit-learn's bundled 8×8 digits: the embedded default task (no download, seconds to run)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasticity import Activation, RawData, Task, TaskParams, register_task


@register_task("digits")
class Digits(Task):
    """8×8 handwritten digits bundled with scikit-learn (1,797 images, 10 classes), no download."""

    # Two hidden layers, not one: on a single hidden layer FA and DFA are the same computation
    # (one feedback matrix from the output), and so are TP and DTP (the only target is set by the
    # gradient), so the quick suite could not tell them apart.
    @dataclass(frozen=True)
    class Params(TaskParams):
        hidden: tuple[int, ...] = (64, 64)
        activation: Activation = "tanh"
        batch_size: int = 32
        val_size: int = 300
        test_fraction: float = 0.2  # share of the 1,797 images kept for test (fixed stratified split)

        def __post_init__(self) -> None:
            super().__post_init__()
            if not 0 < self.test_fraction < 1:
                raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {self.test_fraction}")

    thresholds = (0.8, 0.9, 0.95)
    budget = {"epochs": 20}
    needs_files = False
    image_shape = (1, 8, 8)  # small image models (resnet20 at a low width) run on it in tests

    def load_arrays(self, data_dir: Path) -> RawData:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        # A fixed, stratified test split: part of the task's definition, not of the seed.
        x_tr, x_te, y_tr, y_te = train_test_split(
            x.astype(np.float32), y, test_size=self.params.test_fraction, random_state=0, stratify=y)
        return RawData(x_tr, y_tr, x_te, y_te, n_classes=10)
