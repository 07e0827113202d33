"""Data readers and downloads on small synthetic files and a local HTTP server (no network)."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from plasticity.data import checksums, cifar, download, ensure_cifar10, load_idx_dataset
from plasticity.data.idx import read_idx, read_idx_images, read_idx_labels, write_idx
from plasticity.errors import DataError


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    """Downloads only ever reach the local test server: the official tables point nowhere, and the
    synthetic files under official names are checked against no official checksum unless a test
    puts one in the table. Stamps go to a folder of the test's own."""
    monkeypatch.delenv("PLASTICITY_OFFLINE", raising=False)
    monkeypatch.setattr(download, "MIRRORS", {k: [] for k in download.MIRRORS})
    monkeypatch.setattr(download, "MD5", {k: {} for k in download.MD5})
    monkeypatch.setenv("PLASTICITY_STAMPS", str(tmp_path / "stamps"))


# --------------------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_idx_round_trip(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 4, 5), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    back = read_idx_images(tmp_path / name)
    assert back.dtype == np.uint8 and back.shape == (7, 4, 5)
    np.testing.assert_array_equal(back, images)
    assert back.flags.writeable


def test_idx_round_trip_other_dtypes(tmp_path):
    for array in (np.arange(6, dtype=np.int32).reshape(2, 3) - 3, np.linspace(0, 1, 5).astype(np.float32)):
        write_idx(tmp_path / "x.idx", array)
        back = read_idx(tmp_path / "x.idx")
        assert back.dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back, array)


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros(10, dtype=np.uint8))  # a labels file where images are expected
    with pytest.raises(DataError) as err:
        read_idx_images(path)
    msg = str(err.value)
    assert str(path) in msg and "magic" in msg and "0x00000803" in msg and "0x00000801" in msg
    assert "PLASTICITY_DATA" in msg and "--data-dir" in msg and "delete" in msg


def test_idx_truncated_gz(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.ones((20, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError) as err:
        read_idx_images(path)
    assert str(path) in str(err.value) and "gzip" in str(err.value)


def test_idx_size_does_not_match_dims(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, np.ones((3, 2, 2), dtype=np.uint8))
    payload = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(payload[:-1]))  # a complete gzip stream of a short file
    with pytest.raises(DataError, match=r"expected 28 bytes for shape \(3, 2, 2\).*found 27"):
        read_idx_images(path)


def test_idx_labels_out_of_range(tmp_path):
    write_idx(tmp_path / "labels", np.array([0, 3, 12], dtype=np.uint8))
    with pytest.raises(DataError, match="labels 0..9"):
        read_idx_labels(tmp_path / "labels", n_classes=10)


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="missing") as err:
        read_idx(tmp_path / "nope.gz")
    assert str(tmp_path / "nope.gz") in str(err.value)


def test_missing_file_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_idx_dataset(tmp_path, "mnist")
    msg = str(err.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert "PLASTICITY_OFFLINE" in msg and "PLASTICITY_DATA" in msg and "--data-dir" in msg


def test_idx_dataset_from_uncompressed_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
    arrays = load_idx_dataset(tmp_path, "mnist")
    assert arrays.x_train.shape == (6, 28, 28) and arrays.y_test.tolist() == [0, 1, 2, 3]


def test_idx_dataset_count_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="5 images .* but 4 labels"):
        load_idx_dataset(tmp_path, "fashion-mnist")


# ------------------------------------------------------------------------------------- CIFAR

def _batch(n: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"test", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist()}


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_cifar_batch_ok(tmp_path, protocol):
    batch = _batch()
    path = tmp_path / "data_batch_1"
    path.write_bytes(_py2_style_pickle(batch) if protocol == "py2" else pickle.dumps(batch, protocol=protocol))
    x, y = cifar.read_cifar_batch(path, rows=None)
    np.testing.assert_array_equal(x, batch[b"data"])
    assert y.dtype == np.int64 and y.tolist() == batch[b"labels"]


def _py2_style_pickle(batch: dict) -> bytes:
    """Protocol 2 as Python 2 wrote the official files: bytes as BINSTRING opcodes, where
    Python 3's protocol 2 would call `_codecs.encode` (a global the reader refuses)."""
    class Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us override save_bytes
        dispatch = dict(pickle._Pickler.dispatch)

        def save_bytes(self, obj):
            n = len(obj)
            self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256
                        else pickle.BINSTRING + n.to_bytes(4, "little")) + obj)
            self.memoize(obj)
        dispatch[bytes] = save_bytes

    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(batch)
    return buf.getvalue()


class _Evil:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("protocol", ["py2", 2, 4])
@pytest.mark.parametrize("how", ["os.system", "builtins.exec"])
def test_cifar_malicious_pickle_is_refused(tmp_path, how, protocol):
    marker = tmp_path / "pwned"
    if how == "os.system":
        evil = _Evil(os.system, f"touch {marker}")
    else:
        evil = _Evil(exec, f"open({str(marker)!r}, 'w').close()")
    batch = {b"data": evil, b"labels": []}
    path = tmp_path / "data_batch_1"
    path.write_bytes(_py2_style_pickle(batch) if protocol == "py2" else pickle.dumps(batch, protocol=protocol))
    with pytest.raises(DataError) as err:
        cifar.read_cifar_batch(path)
    msg = str(err.value)
    assert str(path) in msg and "refused" in msg
    # Protocol 2 names builtins as Python 2 did: __builtin__.exec.
    builtins = "builtins" if protocol == 4 else "__builtin__"
    assert (f"'{os.name}.system'" if how == "os.system" else f"'{builtins}.exec'") in msg
    assert not marker.exists()


def test_cifar_codecs_encode_only_latin1(tmp_path):
    path = tmp_path / "data_batch_1"
    # _codecs.encode("x", "rot13"): harmless here, but only latin-1 is ever needed for data.
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DataError, match="refused.*rot13"):
        cifar.read_cifar_batch(path)


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b.pop(b"labels"), "keys 'data' and 'labels'"),
    (lambda b: b.__setitem__(b"data", b[b"data"].astype(np.float32)), "uint8 array"),
    (lambda b: b.__setitem__(b"data", b[b"data"][:, :100]), r"shape \(n, 3072\)"),
    (lambda b: b.__setitem__(b"labels", b[b"labels"][:-1]), "'labels' 6 integers"),
    (lambda b: b.__setitem__(b"labels", [10] * 6), "labels 0..9"),
    (lambda b: b.__setitem__(b"labels", ["cat"] * 6), "'labels' 6 integers"),
])
def test_cifar_bad_structure(tmp_path, mutate, match):
    batch = _batch()
    mutate(batch)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=match) as err:
        cifar.read_cifar_batch(path, rows=None)
    assert str(path) in str(err.value)


def test_cifar_wrong_rows_and_not_a_pickle(tmp_path):
    path = tmp_path / "data_batch_2"
    path.write_bytes(pickle.dumps(_batch(5)))
    with pytest.raises(DataError, match="expected 10000 images, found 5"):
        cifar.read_cifar_batch(path)
    path.write_bytes(pickle.dumps(_batch(5))[:-40])
    with pytest.raises(DataError, match="unreadable pickle"):
        cifar.read_cifar_batch(path, rows=None)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="expected a dict"):
        cifar.read_cifar_batch(path, rows=None)


def test_cifar_str_keys_accepted(tmp_path):
    batch = {k.decode(): v for k, v in _batch().items()}
    (tmp_path / "b").write_bytes(pickle.dumps(batch))
    x, _ = cifar.read_cifar_batch(tmp_path / "b", rows=None)
    assert x.shape == (6, 3072)


# ---------------------------------------------------------------------------------- download

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over `tmp_path/www`; yields (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()


def _dead_url() -> str:
    """A URL on a port nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.gz"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_fetch_ok(server, tmp_path):
    base, www = server
    payload = os.urandom(3000)
    (www / "f.gz").write_bytes(payload)
    dest = tmp_path / "data" / "f.gz"
    assert download.fetch([base + "f.gz"], dest, _md5(payload), timeout=5) == dest
    assert dest.read_bytes() == payload
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left


def test_fetch_checksum_mismatch(server, tmp_path):
    base, www = server
    (www / "f.gz").write_bytes(b"not what was promised")
    dest = tmp_path / "data" / "f.gz"
    with pytest.raises(DataError) as err:
        download.fetch([base + "f.gz"], dest, "0" * 32, timeout=5)
    msg = str(err.value)
    assert base + "f.gz" in msg and "0" * 32 in msg and _md5(b"not what was promised") in msg
    assert list(dest.parent.iterdir()) == []


def test_fetch_falls_back_to_mirror(server, tmp_path):
    base, www = server
    (www / "f.gz").write_bytes(b"payload")
    dest = tmp_path / "f.gz"
    download.fetch([_dead_url(), base + "missing.gz", base + "f.gz"], dest, _md5(b"payload"), timeout=5)
    assert dest.read_bytes() == b"payload"


def test_fetch_all_fail(server, tmp_path):
    base, _ = server
    urls = [_dead_url(), base + "missing.gz"]
    dest = tmp_path / "f.gz"
    with pytest.raises(DataError) as err:
        download.fetch(urls, dest, "0" * 32, timeout=5)
    msg = str(err.value)
    assert "f.gz" in msg and all(u in msg for u in urls) and "404" in msg
    assert "PLASTICITY_DATA" in msg and not dest.exists()


def test_fetch_times_out(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/f.gz"
        with pytest.raises(DataError, match="timed out"):
            download.fetch([url], tmp_path / "f.gz", "0" * 32, timeout=0.3)


def test_ensure_file_downloads_from_table(server, tmp_path, monkeypatch):
    base, www = server
    (www / "train-labels-idx1-ubyte.gz").write_bytes(b"labels")
    monkeypatch.setitem(download.MIRRORS, "mnist", [base])
    monkeypatch.setitem(download.MD5, "mnist", {"train-labels-idx1-ubyte.gz": _md5(b"labels")})
    path = download.ensure_file("mnist", "train-labels-idx1-ubyte.gz", tmp_path / "mnist")
    assert path.read_bytes() == b"labels"
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")  # present files need no network
    assert download.ensure_file("mnist", "train-labels-idx1-ubyte.gz", tmp_path / "mnist") == path


def _tar(path: Path, files: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def test_cifar_archive_download_and_extract(server, tmp_path, monkeypatch):
    base, www = server
    batch = pickle.dumps(_batch(10))
    names = [*cifar.TRAIN_BATCHES, cifar.TEST_BATCH, "batches.meta"]
    archive = _tar(www / "cifar-10-python.tar.gz", {f"cifar-10-batches-py/{n}": batch for n in names})
    monkeypatch.setitem(download.MIRRORS, "cifar-10", [base])
    monkeypatch.setitem(download.MD5, "cifar-10", {"cifar-10-python.tar.gz": _md5(archive)})
    root = tmp_path / "data"
    folder = ensure_cifar10(root)
    assert folder == root / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    x, _ = cifar.read_cifar_batch(folder / "data_batch_3", rows=None)
    assert x.shape == (10, 3072)
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_cifar_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")
    with pytest.raises(DataError, match="data_batch_1 is missing.*PLASTICITY_OFFLINE"):
        ensure_cifar10(tmp_path)


@pytest.mark.parametrize("bad", ["../escape.txt", "cifar-10-batches-py/../../escape.txt", "ABSOLUTE"])
def test_extract_rejects_path_traversal(tmp_path, bad):
    if bad == "ABSOLUTE":
        bad = str(tmp_path / "escape.txt")
    archive = tmp_path / "evil.tar.gz"
    _tar(archive, {"cifar-10-batches-py/data_batch_1": b"x", bad: b"owned"})
    dest = tmp_path / "out" / "inner"
    with pytest.raises(DataError, match="unsafe member") as err:
        download.extract_tar(archive, dest)
    assert str(archive) in str(err.value)
    assert not any(p.name == "escape.txt" for p in tmp_path.rglob("*"))
    assert not (dest / "cifar-10-batches-py" / "data_batch_1").exists()  # nothing half-extracted


def test_extract_rejects_symlink(tmp_path):
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="unsafe member"):
        download.extract_tar(archive, tmp_path / "out")


def test_extract_corrupt_archive(tmp_path):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(DataError, match="not a readable tar archive"):
        download.extract_tar(archive, tmp_path / "out")


def test_offline_flag(monkeypatch):
    for value, expected in (("1", True), ("yes", True), ("0", False), ("", False), ("false", False)):
        monkeypatch.setenv("PLASTICITY_OFFLINE", value)
        assert download.offline() is expected


# ------------------------------------------------------------ files already on disk: checksums


LABELS = "train-labels-idx1-ubyte.gz"


def _labels_file(folder: Path, n: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / LABELS, np.arange(n, dtype=np.uint8) % 10)
    return folder / LABELS


def test_present_file_checked_against_table(tmp_path, monkeypatch):
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")  # present files need no network
    path = _labels_file(tmp_path / "mnist")
    monkeypatch.setitem(download.MD5, "mnist", {LABELS: "0" * 32})
    with pytest.raises(DataError) as err:
        download.ensure_file("mnist", LABELS, tmp_path / "mnist")
    msg = str(err.value)
    assert str(path) in msg and "0" * 32 in msg and _md5(path.read_bytes()) in msg and "checksum mismatch" in msg
    monkeypatch.setitem(download.MD5, "mnist", {LABELS: _md5(path.read_bytes())})
    assert download.ensure_file("mnist", LABELS, tmp_path / "mnist") == path


def test_stamp_spares_rehashing_until_the_file_changes(tmp_path, monkeypatch):
    path = _labels_file(tmp_path / "data" / "mnist")
    good = _md5(path.read_bytes())
    hashed = []
    real = checksums.md5sum
    monkeypatch.setattr(checksums, "md5sum", lambda p, *a: hashed.append(p) or real(p, *a))
    checksums.verify(path, good)
    checksums.verify(path, good)
    assert hashed == [path], "a stamped, unchanged file is not hashed again"
    stamps = list((tmp_path / "stamps").glob("*.json"))
    assert len(stamps) == 1 and json.loads(stamps[0].read_text())["md5"] == good
    assert sorted(p.name for p in path.parent.iterdir()) == [LABELS], "nothing is written beside the data"

    # the same size, another content, another mtime: hashed again, and the damage found
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    with pytest.raises(DataError, match=f"expected md5 {good}, found {_md5(bytes(data))}"):
        checksums.verify(path, good)
    assert len(hashed) == 2
    # a stamp for another checksum (a changed table) does not count either
    checksums.verify(path, _md5(bytes(data)))
    with pytest.raises(DataError, match="checksum mismatch"):
        checksums.verify(path, good)


def test_stamps_unwritable_fall_back_to_rehashing(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("PLASTICITY_STAMPS", str(blocker / "stamps"))  # cannot be created, even by root
    path = _labels_file(tmp_path / "mnist")
    hashed = []
    real = checksums.md5sum
    monkeypatch.setattr(checksums, "md5sum", lambda p, *a: hashed.append(p) or real(p, *a))
    for _ in range(2):
        checksums.verify(path, _md5(path.read_bytes()))
    assert len(hashed) == 2


def test_stamp_folder_default_is_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("PLASTICITY_STAMPS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert checksums.stamp_dir() == tmp_path / "cache" / "plasticity" / "stamps"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert checksums.stamp_dir() == tmp_path / "home" / ".cache" / "plasticity" / "stamps"


def test_download_is_stamped(server, tmp_path, monkeypatch):
    base, www = server
    (www / LABELS).write_bytes(b"labels")
    monkeypatch.setitem(download.MIRRORS, "mnist", [base])
    monkeypatch.setitem(download.MD5, "mnist", {LABELS: _md5(b"labels")})
    monkeypatch.setattr(checksums, "md5sum", lambda *a: pytest.fail("a fresh download was hashed again"))
    path = download.ensure_file("mnist", LABELS, tmp_path / "mnist")
    assert download.ensure_file("mnist", LABELS, tmp_path / "mnist") == path


# --------------------------------------------------------------- only regular files are read

def _in_thread(fn, seconds: float = 10.0):
    """fn() in a thread; its exception, or a failure when it does not return in time (a hang)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "reading hung"
    return box.get("error")


@pytest.mark.parametrize("target, kind", [("/dev/zero", "character device"), ("FIFO", "FIFO"),
                                          ("DIR", "folder")])
@pytest.mark.parametrize("reader", ["idx", "cifar", "checksum", "link-only"])
def test_non_regular_files_refused_without_opening(tmp_path, target, kind, reader):
    if target == "FIFO":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    elif target == "DIR":
        target = tmp_path / "folder"
        target.mkdir()
    elif not os.path.exists(target):
        pytest.skip("no /dev/zero here")
    path = tmp_path / "data_batch_1"
    if reader == "link-only":  # the special file itself under the data file's name, no symlink
        if target == "/dev/zero":
            pytest.skip("cannot create a device node")
        path = Path(target)
    else:
        path.symlink_to(target)
    call = {"idx": lambda: read_idx(path), "cifar": lambda: cifar.read_cifar_batch(path, rows=None),
            "checksum": lambda: checksums.verify(path, "0" * 32), "link-only": lambda: read_idx(path)}[reader]
    error = _in_thread(call)
    assert isinstance(error, DataError), error
    assert str(path) in str(error) and kind in str(error) and "not a regular file" in str(error)


def test_symlink_to_regular_file_is_read(tmp_path):
    write_idx(tmp_path / "real.gz", np.arange(4, dtype=np.uint8))
    (tmp_path / "link.gz").symlink_to(tmp_path / "real.gz")
    assert read_idx(tmp_path / "link.gz").tolist() == [0, 1, 2, 3]
    (tmp_path / "dangling.gz").symlink_to(tmp_path / "nowhere.gz")
    with pytest.raises(DataError, match="missing"):
        read_idx(tmp_path / "dangling.gz")


# ------------------------------------------------------- headers checked, inflation bounded

def _idx_header(dims: list[int], code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def _gzip_stream(path: Path, head: bytes, zeros: int) -> None:
    """A gzip file of `head` and then `zeros` zero bytes, written without holding them in memory."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(head)
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(chunk)


def test_gzip_bomb_inflates_no_further_than_the_header_says(tmp_path):
    import tracemalloc
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    _gzip_stream(path, _idx_header([1000]), 64 << 20)  # ~64 KB on disk, 64 MiB inflated
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"expected 1008 bytes for shape \(1000,\) of uint8, found more than 1008"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"inflating took {peak:,} bytes"


@pytest.mark.parametrize("dims, code, pattern", [
    ([0xFFFFFFFF] * 3, 0x08, (r"declares shape \(4294967295, 4294967295, 4294967295\) of uint8, [\d,]+ bytes, "
                              r"more than the 1,073,741,824 allowed")),
    ([2**16, 2**16, 2**16], 0x0E, r"declares shape .* of float64"),
    ([1] * 9, 0x08, r"expected 1..8 dimensions, found 9"),
    ([], 0x08, r"expected 1..8 dimensions, found 0"),
])
def test_idx_header_checked_before_allocation(tmp_path, dims, code, pattern):
    for name in ("x.gz", "x"):
        path = tmp_path / name
        head = _idx_header(dims, code) + b"\0" * 8
        path.write_bytes(gzip.compress(head) if name.endswith(".gz") else head)
        with pytest.raises(DataError, match=pattern):
            read_idx(path)


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(_idx_header([3, 2, 2])[:9])
    with pytest.raises(DataError, match=r"expected a 16-byte header for 3 dimensions, found the file ends"):
        read_idx(path)


def test_known_dataset_shape_bounds(tmp_path, monkeypatch):
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")
    folder = tmp_path / "mnist"
    folder.mkdir()
    # the header claims one image more than MNIST's training set (no payload behind it)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_header([60001, 28, 28])))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"dimension 0 at most 60,000 .* found 60,001"):
        load_idx_dataset(tmp_path, "mnist")
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"dimension 1 at most 28"):
        load_idx_dataset(tmp_path, "mnist")


def test_cifar_batch_size_bounded_before_reading(tmp_path):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:  # sparse: 10 GB on paper, nothing on disk
        f.truncate(10 * 10**9)
    with pytest.raises(DataError, match=r"holds 10,000,000,000 bytes, more than the 32,817,152"):
        cifar.read_cifar_batch(path)
    with pytest.raises(DataError, match=r"more than the 268,435,456"):
        cifar.read_cifar_batch(path, rows=None)


def test_extract_refuses_archive_bigger_than_expected(tmp_path):
    archive = tmp_path / "big.tar.gz"
    _tar(archive, {"cifar-10-batches-py/data_batch_1": bytes(5000)})
    with pytest.raises(DataError, match=r"would extract 5,000 bytes, more than the 1,000 expected"):
        download.extract_tar(archive, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out" / "cifar-10-batches-py").exists()
