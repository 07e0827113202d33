"""Read IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or not, with numpy.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order. Every check failure is a
DataError that names the file, what was expected and what was found.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .files import bad_file, read_file

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions (n, rows, cols)
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension (n,)

# Type code (third byte of the magic number) -> big-endian numpy dtype.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip (recognised by content, not name)."""
    raw = read_file(path)
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise bad_file(path, f"expected a complete gzip stream, found a truncated or corrupt one "
                         f"({type(exc).__name__}: {exc})") from exc


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (native byte order); `magic` if given must match."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise bad_file(path, f"expected an IDX header of at least 4 bytes, found {len(data)} bytes")
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise bad_file(path, f"expected IDX magic number 0x{magic:08x}, found 0x{found:08x}")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or type_code not in _DTYPES:
        raise bad_file(path, f"not an IDX file: magic number 0x{found:08x} has no known type code")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad_file(path, f"expected a {header}-byte header for {ndim} dimensions, found {len(data)} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise bad_file(path, f"expected {expected} bytes for shape {shape} of {dtype.name}, "
                         f"found {len(data)} bytes")
    # astype copies into a writable array in native byte order.
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_images(path: str | Path) -> np.ndarray:
    """Images of an IDX3 file: uint8 array (n, rows, cols)."""
    return read_idx(path, IMAGES_MAGIC)


def read_idx_labels(path: str | Path, n_classes: int | None = None) -> np.ndarray:
    """Labels of an IDX1 file: uint8 array (n,), each below `n_classes` when given."""
    labels = read_idx(path, LABELS_MAGIC)
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
