"""Data readers for the file-based tasks: MNIST, Fashion-MNIST (IDX) and CIFAR-10 (python batches).

Each loader takes the data root (the folder `--data-dir` / `PLASTICITY_DATA` names), finds its
dataset's subfolder (`mnist/`, `fashion-mnist/`, `cifar-10-batches-py/`, the same layout as the
official archives), downloads what is missing unless `PLASTICITY_OFFLINE` is set, and validates
what it reads. Every problem is a `DataError` naming the file.

What is checked, and when:
- a file the checksum table (`download.MD5`) lists, the MNIST / Fashion-MNIST `.gz` files and
  the CIFAR-10 archive, is verified against its md5 the first time it is used and whenever it
  changes (`checksums`: stamps kept in a per-user cache, never beside the data);
- files the table does not list (uncompressed IDX twins, the extracted CIFAR batches, whose
  md5s differ between copies that hold the same data) are checked for structure and size:
  every IDX header field before any allocation, each dimension against the dataset's official
  shape, the inflated size against the header; each CIFAR batch against the size a batch holds;
- only regular files are read (`files`): a symlink to one is followed, one to a device, FIFO,
  socket or folder is refused without being opened.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from . import checksums, cifar, download
from .idx import read_idx, read_idx_images, read_idx_labels, write_idx

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: The official size of each split of MNIST and Fashion-MNIST: files may hold fewer images, never more.
IDX_MAX_ROWS = {"train": 60000, "test": 10000}
IDX_IMAGE_SIDE = 28
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"


class Arrays(NamedTuple):
    """Train and test arrays as read from disk (inputs keep their file shape and dtype)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _idx_file(directory: Path, dataset: str, filename: str) -> Path:
    """The file itself, or its uncompressed twin when only that is present, else a download."""
    unpacked = directory / filename.removesuffix(".gz")
    if not (directory / filename).exists() and unpacked.exists():
        return unpacked
    return download.ensure_file(dataset, filename, directory)


def load_idx_dataset(root: str | Path, dataset: str, n_classes: int = 10) -> Arrays:
    """An MNIST-format dataset under `root/dataset/`: images uint8 (n, 28, 28), labels uint8 (n,).

    `dataset` is the subfolder and download-table name: "mnist" or "fashion-mnist". A split may
    hold at most the official number of images (60,000 / 10,000), each 28×28.
    """
    directory = Path(root) / dataset
    out = []
    for split, (images_name, labels_name) in IDX_FILES.items():
        images_path = _idx_file(directory, dataset, images_name)
        labels_path = _idx_file(directory, dataset, labels_name)
        rows = IDX_MAX_ROWS[split]
        images = read_idx_images(images_path, (rows, IDX_IMAGE_SIDE, IDX_IMAGE_SIDE))
        labels = read_idx_labels(labels_path, n_classes, rows)
        if len(images) != len(labels):
            raise DataError(f"{directory}: the {split} split has {len(images)} images in "
                            f"{images_path.name} but {len(labels)} labels in {labels_path.name}; "
                            f"replace the files with matching copies, or delete them so they are "
                            f"downloaded again")
        out += [images, labels]
    return Arrays(*out)


def load_mnist(root: str | Path) -> Arrays:
    """MNIST under `root/mnist/`: 60,000 training and 10,000 test 28×28 images."""
    return load_idx_dataset(root, "mnist")


def load_fashion_mnist(root: str | Path) -> Arrays:
    """Fashion-MNIST under `root/fashion-mnist/`: 60,000 training and 10,000 test 28×28 images."""
    return load_idx_dataset(root, "fashion-mnist")


def ensure_cifar10(root: str | Path) -> Path:
    """`root/cifar-10-batches-py/`, downloaded and extracted first when any batch is missing."""
    root = Path(root)
    directory = root / CIFAR10_FOLDER
    needed = [directory / name for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH)]
    missing = [p for p in needed if not p.exists()]
    if not missing:
        return directory
    if download.offline():
        raise download.missing_error(missing[0], "cifar-10")
    # The archive stays in root, so deleting a corrupt batch re-extracts it without a download.
    archive = download.ensure_file("cifar-10", CIFAR10_ARCHIVE, root)
    download.extract_tar(archive, root)
    still = [p for p in needed if not p.exists()]
    if still:
        raise DataError(f"{archive} did not contain {', '.join(p.name for p in still)} under "
                        f"{CIFAR10_FOLDER}/; delete the archive so it is downloaded again, or "
                        f"{download.supply_hint(root)}")
    return directory


def load_cifar10(root: str | Path) -> Arrays:
    """CIFAR-10 under `root/cifar-10-batches-py/`: images uint8 (n, 3072) in CHW order, labels int64."""
    return Arrays(*cifar.read_cifar10(ensure_cifar10(root)))


__all__ = [
    "Arrays", "load_idx_dataset", "load_mnist", "load_fashion_mnist", "load_cifar10", "ensure_cifar10",
    "read_idx", "read_idx_images", "read_idx_labels", "write_idx", "checksums", "cifar", "download",
]
