"""Fetch missing data files from their official locations, checksum-verified.

Every download goes to a temporary file beside the target, is checked against its md5 and only
then renamed into place, so an interrupted or corrupted transfer never leaves a file that looks
complete. Mirrors are tried in order. `PLASTICITY_OFFLINE=1` turns downloads off.

A file already on disk is checked against the same table the first time it is used (and again
whenever it changes; see `checksums` for the stamps that spare rehashing it on every run).

The URL and checksum tables are module-level data (`MIRRORS`, `MD5`) so that tests, or users
behind a proxy cache, can point them elsewhere.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from .checksums import verify, write_stamp
from .files import open_regular

#: Base URLs per dataset, tried in order; a file's URL is base + file name.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror: the primary
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar-10": ["https://www.cs.toronto.edu/~kriz/"],
}

#: md5 of each downloadable file, per dataset.
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar-10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
}

#: Seconds to wait on a connection or a read before giving up on a mirror.
TIMEOUT = 30.0
_CHUNK = 1 << 20
_PROGRESS_MIN_BYTES = 1 << 20  # no progress bar for the small label files


def offline() -> bool:
    """Whether downloads are disabled (`PLASTICITY_OFFLINE` set to anything but 0/false/no)."""
    return os.environ.get("PLASTICITY_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def supply_hint(directory: Path) -> str:
    """How a researcher supplies data by hand; appended to every data error message."""
    return (f"to supply the files yourself, put them in {directory} or point --data-dir DIR "
            f"(or PLASTICITY_DATA=DIR) at a folder holding mnist/, fashion-mnist/ and "
            f"cifar-10-batches-py/")


def _fetch_one(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Download `url` to `dest` via a temporary file; raise DataError or OSError on failure."""
    from tqdm.auto import tqdm  # a notebook widget in Jupyter, a text bar in a terminal

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            # disable=None: a bar on a terminal, silence in logs and CI.
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=True if total is not None and total < _PROGRESS_MIN_BYTES else None,
                      leave=False) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        got = digest.hexdigest()
        if got != md5:
            raise DataError(f"checksum mismatch for {url}: expected md5 {md5}, got {got}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(urls: Sequence[str], dest: Path, md5: str, timeout: float | None = None) -> Path:
    """Download `dest` from the first of `urls` that delivers a file with the right md5.

    A failing mirror (network error, HTTP error, checksum mismatch) passes on to the next one;
    when none succeeds the DataError lists every URL tried with its error.
    """
    dest = Path(dest)
    if not urls:
        raise DataError(f"{dest} is missing and no download location is known; {supply_hint(dest.parent)}")
    errors = []
    for url in urls:
        try:
            _fetch_one(url, dest, md5, TIMEOUT if timeout is None else timeout)
            return dest
        except DataError as exc:
            errors.append(str(exc))
        # URLError, HTTPError and timeouts are OSErrors; a cut transfer is an HTTPException.
        except (OSError, ValueError, http.client.HTTPException) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    tried = "\n  ".join(errors)
    raise DataError(f"could not download {dest.name} into {dest.parent}; tried:\n  {tried}\n"
                    f"Check the network, or {supply_hint(dest.parent)}")


def missing_error(path: Path, dataset: str) -> DataError:
    """The error for a file that is absent while downloads are off."""
    return DataError(f"{path} is missing and downloads are disabled (PLASTICITY_OFFLINE is set); "
                     f"unset PLASTICITY_OFFLINE to download {dataset} from "
                     f"{' or '.join(MIRRORS.get(dataset, [])) or '(no known location)'}; "
                     f"or, {supply_hint(path.parent)}")


def ensure_file(dataset: str, filename: str, directory: Path) -> Path:
    """`directory/filename`, checked against the checksum table when present, else downloaded first.

    A file present on disk whose md5 differs from the table's is a DataError naming both sums
    (files the table does not list are only checked for structure by their readers).
    """
    path = Path(directory) / filename
    md5 = MD5.get(dataset, {}).get(filename)
    if os.path.lexists(path):  # a dangling or hostile symlink is reported, not downloaded over
        if md5 is not None:
            verify(path, md5, supply_hint(path.parent))
        return path
    if offline():
        raise missing_error(path, dataset)
    if md5 is None:
        raise DataError(f"{path} is missing and is not a known file of {dataset}; "
                        f"{supply_hint(path.parent)}")
    fetch([base + filename for base in MIRRORS.get(dataset, [])], path, md5)
    write_stamp(path, md5)  # checked while it downloaded: no need to hash it again
    return path


def _check_members(tf: tarfile.TarFile, archive: Path, max_bytes: int) -> list[tarfile.TarInfo]:
    """The archive's members, refusing anything but plain files and folders with relative paths,
    and an archive whose files together would hold more than `max_bytes`.

    `filter="data"` already blocks these; checking here too gives a message that names the
    archive and keeps extraction safe on Pythons whose tarfile lacks filters.
    """
    members = tf.getmembers()
    total = sum(m.size for m in members if m.isfile())
    if total > max_bytes:
        raise DataError(f"{archive} would extract {total:,} bytes, more than the {max_bytes:,} expected; it "
                        f"was not extracted. Delete the archive so it is downloaded again, or "
                        f"{supply_hint(archive.parent)}")
    for m in members:
        parts = Path(m.name).parts
        if not (m.isfile() or m.isdir()) or Path(m.name).is_absolute() or ".." in parts:
            raise DataError(f"{archive} holds an unsafe member '{m.name}' (a link, device, absolute "
                            f"path or one leaving the folder); it was not extracted. Delete the "
                            f"archive so it is downloaded again, or {supply_hint(archive.parent)}")
    return members


#: The most an archive may extract: the CIFAR-10 python archive holds about 178 MB.
MAX_EXTRACT_BYTES = 512 << 20


def extract_tar(archive: Path, dest: Path, max_bytes: int = MAX_EXTRACT_BYTES) -> None:
    """Extract a .tar(.gz) archive safely into `dest`, never overwriting a file already there.

    Extraction goes to a temporary folder first and files are moved into place one by one, so
    an archive that fails midway leaves no half-written file behind.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with open_regular(archive) as raw, tarfile.open(fileobj=raw) as tf:
                members = _check_members(tf, archive, max_bytes)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # Python < 3.11.4: the member check above is the safeguard
                    tf.extractall(tmp, members=members)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{archive} is not a readable tar archive ({type(exc).__name__}: {exc}); "
                            f"delete it so it is downloaded again, or {supply_hint(archive.parent)}") from exc
        for src in sorted(tmp.rglob("*")):
            target = dest / src.relative_to(tmp)
            if src.is_dir():
                target.mkdir(exist_ok=True)
            elif not target.exists():
                os.replace(src, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
