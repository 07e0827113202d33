"""The task contract: data splits, a default architecture, thresholds and a default budget.

A task in `tasks/` subclasses `Task`, declares `Params` (extending `TaskParams` to change the
defaults), and implements `load_arrays(data_dir)` returning the raw train and test arrays. The
base class carves the validation split out of train (a fixed permutation, the same for every
seed, so seeds vary only initialisation and batch order), normalises with training statistics
and moves tensors to the device.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import torch

from .errors import ConfigError
from .models import MODELS, ModelName, augment_images, build_model
from .network import MLP

VAL_SPLIT_SEED = 20240531
Activation = Literal["relu", "tanh", "leaky_relu", "sigmoid", "linear"]
Init = Literal["torch", "he_normal", "xavier_uniform", "lecun_normal"]
Normalize = Literal["standard", "per_feature", "unit", "symmetric"]

#: the widest hidden layer a task accepts (784 × 10⁶ float32 weights are 3 GB already)
MAX_WIDTH = 1_000_000


def default_data_dir() -> Path:
    """`PLASTICITY_DATA` if set, else a per-user cache (`$XDG_CACHE_HOME/plasticity`)."""
    env = os.environ.get("PLASTICITY_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "plasticity"


@dataclass(frozen=True)
class TaskParams:
    """Parameters every task shares; a task's own `Params` extends this with new defaults."""
    hidden: tuple[int, ...] = (256, 256)  # widths of the hidden layers of the MLP
    activation: Activation = "relu"  # hidden-layer nonlinearity (the output layer is linear)
    init: Init = "torch"  # weight initialisation (torch: nn.Linear's uniform ±1/√fan_in)
    init_scale: float = 1.0  # multiplies every initial weight
    batch_size: int = 100  # examples per update (0: the whole training set, one update per epoch)
    val_size: int = 5000  # training examples held out for validation (thresholds are crossed on it)
    normalize: Normalize = "standard"  # inputs: standard (one mean, std), per_feature, unit [0, 1], symmetric [-1, 1]
    model: ModelName = "mlp"  # network: mlp (hidden widths), lenet, resnet20, resnet56, resnet9 (plasticity.models)
    width: int = 0  # channels of an image model's first stage (0: the model's own; ignored by the mlp)
    augment: bool = False  # random crop (zero-pad 4) and horizontal flip of each training image, on the device

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.width < 0:
            raise ValueError(f"width must be non-negative (0: the model's own), got {self.width}")
        if self.batch_size < 0:
            raise ValueError(f"batch_size must be positive (0 means full batch), got {self.batch_size}")
        if self.val_size < 1:
            raise ValueError(f"val_size must be at least 1, got {self.val_size}")
        if any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {list(self.hidden)}")
        if any(w > MAX_WIDTH for w in self.hidden):
            raise ValueError(f"hidden widths must be at most {MAX_WIDTH:,} (a wider layer does not fit in "
                             f"memory), got {list(self.hidden)}")
        if self.init_scale <= 0:
            raise ValueError(f"init_scale must be positive, got {self.init_scale}")


@dataclass
class RawData:
    """Arrays as read from disk: inputs (n, features) of any numeric type, integer labels."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class TaskData:
    train: Split
    val: Split
    test: Split
    n_inputs: int
    n_classes: int


class Task:
    """Base class of the task harnesses; subclass, set the class attributes, register it."""

    name: ClassVar[str] = "?"
    Params: ClassVar[type] = TaskParams
    #: Validation accuracies whose first crossing gives updates-to-accuracy.
    thresholds: ClassVar[tuple[float, ...]] = (0.9,)
    #: Budget used when a suite gives none: any of updates / epochs / seconds.
    budget: ClassVar[dict[str, float]] = {"epochs": 10}
    #: Whether the task needs files (False for embedded data).
    needs_files: ClassVar[bool] = True
    #: (channels, height, width) of the flat input rows, for image models and augmentation (None: not images).
    image_shape: ClassVar[tuple[int, int, int] | None] = None

    def __init__(self, params: Any, data_dir: str | Path | None = None) -> None:
        self.params = params
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()

    def load_arrays(self, data_dir: Path) -> RawData:
        raise NotImplementedError

    def data(self, device: torch.device, dtype: torch.dtype) -> TaskData:
        """Train / validation / test tensors on `device`, normalised with training statistics."""
        key = (type(self), self.params, str(self.data_dir), str(device), dtype)
        if key in _DATA_CACHE:
            return _DATA_CACHE[key]
        raw = self.load_arrays(self.data_dir)
        data = prepare(raw, self.params, device, dtype)
        _DATA_CACHE.clear()  # keep one task in memory: CIFAR-10 alone is ~0.6 GB
        _DATA_CACHE[key] = data
        return data

    def build_network(self, n_inputs: int, n_classes: int, generator: torch.Generator) -> torch.nn.Module:
        """The MLP of `hidden` widths, or the image model the `model` parameter names."""
        p = self.params
        if p.model == "mlp":
            return MLP([n_inputs, *p.hidden, n_classes], hidden_activation=p.activation,
                       init=p.init, init_scale=p.init_scale, generator=generator)
        shape = self._shape(n_inputs)
        return build_model(p.model, shape, n_classes, p.activation, p.width, p.init, p.init_scale, generator)

    def _shape(self, n_inputs: int) -> tuple[int, int, int]:
        shape = self.image_shape
        if shape is None:
            raise ConfigError(f"task '{self.name}' has no image shape: model = {self.params.model!r} and augment "
                              f"need images; use model = \"mlp\"")
        if shape[0] * shape[1] * shape[2] != n_inputs:
            raise ConfigError(f"task '{self.name}' expects {shape[0]}×{shape[1]}×{shape[2]} images "
                              f"({shape[0] * shape[1] * shape[2]} inputs), got {n_inputs}")
        return shape

    def augmenter(self, n_inputs: int, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The training-batch augmentation (`augment`), or None: crops and flips drawn from `generator`."""
        if not self.params.augment:
            return None
        shape = self._shape(n_inputs)
        return lambda x: augment_images(x, shape, generator)


_DATA_CACHE: dict[tuple, TaskData] = {}


def prepare(raw: RawData, params: TaskParams, device: torch.device, dtype: torch.dtype) -> TaskData:
    """Carve validation from train, normalise with training statistics, flatten, move to `device`.

    Works in the target precision with one copy per split (CIFAR-10 is 0.6 GB in float32);
    statistics are accumulated in float64.
    """
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    n = len(raw.x_train)
    if params.val_size >= n:
        raise ConfigError(f"val_size={params.val_size} leaves no training data (the training set has {n} examples)")
    order = np.random.default_rng(VAL_SPLIT_SEED).permutation(n)
    val_idx, train_idx = np.sort(order[: params.val_size]), np.sort(order[params.val_size:])

    def flat(x: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        x = x.reshape(len(x), -1)
        return (x[idx] if idx is not None else x).astype(np_dtype)  # fancy indexing/astype: one new array

    x_tr, x_val, x_te = flat(raw.x_train, train_idx), flat(raw.x_train, val_idx), flat(raw.x_test)
    if params.normalize == "standard":  # one mean and std over all training inputs
        shift, scale = x_tr.mean(dtype=np.float64), x_tr.std(dtype=np.float64)
    elif params.normalize == "per_feature":  # each input standardised on its own
        shift, scale = x_tr.mean(axis=0, dtype=np.float64), x_tr.std(axis=0, dtype=np.float64)
        scale = np.where(scale < 1e-8 * max(1.0, float(scale.max())), 1.0, scale)
    else:
        lo, hi = float(x_tr.min()), float(x_tr.max())
        if params.normalize == "unit":  # [0, 1]
            shift, scale = lo, (hi - lo) or 1.0
        else:  # symmetric: [-1, 1]
            shift, scale = (hi + lo) / 2, ((hi - lo) / 2) or 1.0
    shift, scale = np.asarray(shift, dtype=np_dtype), np.asarray(scale, dtype=np_dtype)

    def tensor_split(x: np.ndarray, y: np.ndarray) -> Split:
        x -= shift
        x /= scale
        return Split(torch.from_numpy(x).to(device), torch.as_tensor(np.asarray(y, dtype=np.int64)).to(device))

    return TaskData(tensor_split(x_tr, raw.y_train[train_idx]), tensor_split(x_val, raw.y_train[val_idx]),
                    tensor_split(x_te, raw.y_test), n_inputs=x_tr.shape[1], n_classes=raw.n_classes)
