"""Read IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or not, with numpy.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order. Every check failure is a
DataError that names the file, what was expected and what was found.

The header is read and checked first (magic, type code, number of dimensions, each dimension
against `max_shape` when given, the total against `max_bytes`); only then is the payload read,
and a gzip stream is inflated incrementally up to the size the header implies plus one byte, so
a small file that inflates to gigabytes costs no more memory than the data it claims to hold.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .files import bad_file, open_regular

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions (n, rows, cols)
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension (n,)

# Type code (third byte of the magic number) -> big-endian numpy dtype.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
#: The most dimensions a file may declare, and the largest payload read when no smaller bound is given.
MAX_NDIM = 8
MAX_IDX_BYTES = 1 << 30


def _read_exact(stream: BinaryIO, n: int, path: Path, what: str) -> bytes:
    """`n` bytes of the (possibly inflating) stream; a short read is a DataError about `what`."""
    data = _safe_read(stream, n, path)
    if len(data) < n:
        raise bad_file(path, f"expected {what}, found the file ends after {len(data)} of its {n} bytes")
    return data


def read_idx(path: str | Path, magic: int | None = None, max_shape: tuple[int, ...] | None = None,
             max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """The array stored in an IDX file (native byte order).

    `magic`, if given, must match; `max_shape`, if given, fixes the number of dimensions and
    bounds each one; the payload may hold at most `max_bytes`. All of this is checked on the
    header, before the payload is read or inflated.
    """
    path = Path(path)
    with open_regular(path) as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw  # type: ignore[assignment]
        head = _safe_read(stream, 4, path)
        if len(head) < 4:
            raise bad_file(path, f"expected an IDX header of at least 4 bytes, found {len(head)} bytes")
        found = int.from_bytes(head, "big")
        if magic is not None and found != magic:
            raise bad_file(path, f"expected IDX magic number 0x{magic:08x}, found 0x{found:08x}")
        type_code, ndim = head[2], head[3]
        if head[:2] != b"\0\0" or type_code not in _DTYPES:
            raise bad_file(path, f"not an IDX file: magic number 0x{found:08x} has no known type code")
        if max_shape is not None and ndim != len(max_shape) or not 1 <= ndim <= MAX_NDIM:
            want = len(max_shape) if max_shape is not None else f"1..{MAX_NDIM}"
            raise bad_file(path, f"expected {want} dimensions, found {ndim}")
        header = 4 + 4 * ndim
        dims = _read_exact(stream, 4 * ndim, path, f"a {header}-byte header for {ndim} dimensions")
        shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
        if max_shape is not None:
            for i, (dim, bound) in enumerate(zip(shape, max_shape)):
                if dim > bound:
                    raise bad_file(path, f"expected dimension {i} at most {bound:,} (shape at most "
                                         f"{max_shape}), found {dim:,} (shape {shape})")
        dtype = np.dtype(_DTYPES[type_code])
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow whatever the header says
        if nbytes > max_bytes:
            raise bad_file(path, f"its header declares shape {shape} of {dtype.name}, {nbytes:,} bytes, "
                                 f"more than the {max_bytes:,} allowed")
        expected = header + nbytes
        if not compressed:
            size = os.fstat(raw.fileno()).st_size
            if size != expected:
                raise bad_file(path, f"expected {expected} bytes for shape {shape} of {dtype.name}, found {size} bytes")
        payload = _safe_read(stream, nbytes + 1, path)  # one byte more reveals a longer stream
    if len(payload) != nbytes:
        found_size = f"{header + len(payload)}" if len(payload) < nbytes else f"more than {expected}"
        raise bad_file(path, f"expected {expected} bytes for shape {shape} of {dtype.name}, found {found_size} bytes")
    # astype copies into a writable array in native byte order.
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _safe_read(stream: BinaryIO, n: int, path: Path) -> bytes:
    """Up to `n` bytes; gzip errors (a truncated or corrupt stream) become a DataError."""
    try:
        return stream.read(n)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise bad_file(path, f"expected a complete gzip stream, found a truncated or corrupt one "
                             f"({type(exc).__name__}: {exc})") from exc
    except OSError as exc:
        raise bad_file(path, f"cannot be read ({exc})") from exc


def read_idx_images(path: str | Path, max_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Images of an IDX3 file: uint8 array (n, rows, cols), each dimension at most `max_shape`'s."""
    return read_idx(path, IMAGES_MAGIC, max_shape)


def read_idx_labels(path: str | Path, n_classes: int | None = None, max_count: int | None = None) -> np.ndarray:
    """Labels of an IDX1 file: uint8 array (n,) with n at most `max_count`, each below `n_classes` when given."""
    labels = read_idx(path, LABELS_MAGIC, None if max_count is None else (max_count,))
    if n_classes is not None and labels.size and int(labels.max()) >= n_classes:
        raise bad_file(Path(path), f"expected labels 0..{n_classes - 1}, found {int(labels.max())}")
    return labels


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write `array` as an IDX file (gzip-compressed when the name ends in .gz); for tests and tools."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(_DTYPES[code]).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
