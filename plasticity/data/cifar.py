"""Read the CIFAR-10 "python version" batches without ever unpickling anything but plain data.

The official batches are Python 2 pickles (protocol 2) of a dict holding a numpy array and a
list of ints. A pickle can name any importable callable and call it, so the unpickler here only
resolves the few numpy globals that rebuild an array; any other global is refused before it is
imported, let alone called.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .files import bad_file, read_file

ROWS_PER_BATCH = 10000
N_FEATURES = 3 * 32 * 32  # channel-major: 1024 red, 1024 green, 1024 blue values per image
#: Room in a batch file beyond its pixels: labels, file names, pickle framing (an official batch uses ~0.7 MB).
BATCH_OVERHEAD_BYTES = 2 << 20
#: The largest batch read when the number of rows is not fixed (`rows=None`).
MAX_BATCH_BYTES = 256 << 20
N_CLASSES = 10
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowed set."""


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for `_codecs.encode`, which Python 3 calls to pickle bytes under protocol 2.

    Only the one use it has there (a str encoded as latin-1) is allowed, so that the codec
    registry, which third-party codecs can extend, is never reached from a pickle.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise ForbiddenGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals plain dicts of numpy arrays need, under numpy 1 and numpy 2 module names."""
    try:  # numpy 2 moved numpy.core to numpy._core; import the real one, not the shim
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct  # protocol <= 4
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar  # numpy scalars, e.g. in a label list
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy globals needed to rebuild plain arrays."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"{module}.{name}") from None


def safe_load(data: bytes) -> Any:
    """Unpickle plain data (dicts, lists, numbers, bytes, numpy arrays) and nothing else.

    `encoding="bytes"` keeps Python 2 strings as bytes, which numpy needs for the array buffers
    of the official files (and so their keys are bytes: b"data", b"labels").
    """
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


HOLDING = "cifar-10-batches-py/"


def _bad(path: Path, problem: str) -> DataError:
    return bad_file(path, problem, HOLDING)


def read_cifar_batch(path: str | Path, rows: int | None = ROWS_PER_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: images uint8 (n, 3072) in CHW order and labels int64 (n,) in 0..9.

    `rows` is the number of images every official batch holds; None accepts any number. The
    file may be no larger than such a batch can be (the pixels plus `BATCH_OVERHEAD_BYTES`), so
    a huge or endless file is refused before it is read.
    """
    path = Path(path)
    max_bytes = MAX_BATCH_BYTES if rows is None else rows * N_FEATURES + BATCH_OVERHEAD_BYTES
    raw = read_file(path, HOLDING, max_bytes)
    try:
        batch = safe_load(raw)
    except ForbiddenGlobal as exc:
        raise DataError(f"{path}: refused to unpickle: it asks for the global '{exc}', which plain "
                        f"data never needs (nothing from it was run). Use the official CIFAR-10 "
                        f"python batches; delete this file so they are downloaded again") from None
    except Exception as exc:  # a corrupt pickle can raise nearly anything; none of it is ours
        raise _bad(path, f"expected a pickled CIFAR-10 batch, found an unreadable pickle "
                         f"({type(exc).__name__}: {exc})") from exc
    return _validate(path, batch, rows)


def _validate(path: Path, batch: Any, rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Check the batch's structure; return (images, labels)."""
    if not isinstance(batch, dict):
        raise _bad(path, f"expected a dict, found {type(batch).__name__}")
    # Official files have bytes keys; accept str keys from files re-pickled under Python 3.
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    missing = [k.decode() for k in (b"data", b"labels") if k not in batch]
    if missing:
        found = ", ".join(repr(k) for k in batch)
        raise _bad(path, f"expected keys 'data' and 'labels', found {found or 'none'}")
    data = batch[b"data"]
    is_array = isinstance(data, np.ndarray)
    if not is_array or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != N_FEATURES:
        what = f"{data.dtype} array of shape {data.shape}" if is_array else type(data).__name__
        raise _bad(path, f"expected 'data' a uint8 array of shape (n, {N_FEATURES}), found {what}")
    if rows is not None and data.shape[0] != rows:
        raise _bad(path, f"expected {rows} images, found {data.shape[0]}")
    labels_obj = batch[b"labels"]
    try:
        labels = np.asarray(labels_obj)
    except Exception:
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise _bad(path, f"expected 'labels' {len(data)} integers, found "
                         f"{type(labels_obj).__name__} of {labels.size} {labels.dtype} values")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise _bad(path, f"expected labels 0..{N_CLASSES - 1}, found values "
                         f"{int(labels.min())}..{int(labels.max())}")
    return data, labels.astype(np.int64)


def read_cifar10(directory: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The five training batches and the test batch of `directory` (a cifar-10-batches-py/).

    Returns x_train uint8 (50000, 3072), y_train int64 (50000,), x_test (10000, 3072), y_test.
    """
    directory = Path(directory)
    train = [read_cifar_batch(directory / name, ROWS_PER_BATCH) for name in TRAIN_BATCHES]
    x_test, y_test = read_cifar_batch(directory / TEST_BATCH, ROWS_PER_BATCH)
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test)
