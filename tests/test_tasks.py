"""The file-based tasks: their declared shapes, synthetic files end to end, and the real files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plasticity.data import cifar, load_cifar10, load_fashion_mnist, load_mnist
from plasticity.data.idx import write_idx
from plasticity.errors import DataError
from plasticity.registry import entries, get_task
from plasticity.testing import make_rule

CPU = torch.device("cpu")
EXPECTED = {
    "mnist": ((256, 256), (0.90, 0.95, 0.97, 0.98), {"epochs": 10}),
    "fashion-mnist": ((256, 256), (0.80, 0.85, 0.88), {"epochs": 10}),
    "cifar10": ((1024, 512), (0.35, 0.45, 0.50, 0.55), {"epochs": 20}),
}
FOLDERS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar-10-batches-py"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test here may reach the network: missing files are errors, not downloads."""
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_declarations(name):
    task_cls = get_task(name)
    hidden, thresholds, budget = EXPECTED[name]
    params = task_cls.Params()
    assert params.hidden == hidden and params.activation == "relu"
    assert params.batch_size == 100 and params.val_size == 5000
    assert task_cls.thresholds == thresholds and task_cls.budget == budget and task_cls.needs_files
    summary = next(e.summary for e in entries("task") if e.name == name)
    assert "10 classes" in summary


@pytest.mark.parametrize("a, b", [("fa", "dfa"), ("tp", "dtp")])
def test_digits_default_network_tells_rules_apart(a, b):
    """On one hidden layer FA and DFA are the same computation, and so are TP and DTP (the quick
    suite then shows two rules with the same numbers): the default digits network must be deeper."""
    p = get_task("digits").Params()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 64, generator=g), torch.randint(0, 10, (32,), generator=g)
    trained = []
    for name in (a, b):
        rule = make_rule(name, seed=0, sizes=(64, *p.hidden, 10), activation=p.activation)
        for _ in range(3):
            rule.update(x, y)
        trained.append([w.detach().clone() for w in rule.net.parameters()])
    gap = max(float((u - v).abs().max()) for u, v in zip(*trained))
    assert gap > 1e-3, f"{a} and {b} trained the same weights (largest difference {gap:.1e})"


def _fake_idx_dataset(folder: Path, n_train: int = 60, n_test: int = 20) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def _fake_cifar(folder: Path, rows: int) -> None:
    import pickle
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True)
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        batch = {b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8), b"labels": list(np.arange(rows) % 10)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_task_on_synthetic_files(tmp_path, name, monkeypatch):
    from plasticity.data import download
    monkeypatch.setattr(download, "MD5", {})  # synthetic files under the official names: no official md5s
    _fake_idx_dataset(tmp_path / FOLDERS[name])
    task_cls = get_task(name)
    data = task_cls(task_cls.Params(val_size=10), tmp_path).data(CPU, torch.float32)
    assert (len(data.train), len(data.val), len(data.test)) == (50, 10, 20)
    assert data.n_inputs == 784 and data.n_classes == 10
    assert data.train.x.shape == (50, 784) and data.train.y.dtype == torch.int64


def test_cifar_task_on_synthetic_files(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "ROWS_PER_BATCH", 4)  # official batches hold 10,000
    _fake_cifar(tmp_path / FOLDERS["cifar10"], rows=4)
    task_cls = get_task("cifar10")
    data = task_cls(task_cls.Params(val_size=5), tmp_path).data(CPU, torch.float32)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 4)
    assert data.n_inputs == 3072


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_missing_files_offline(tmp_path, name):
    task_cls = get_task(name)
    with pytest.raises(DataError, match="PLASTICITY_OFFLINE") as err:
        task_cls(task_cls.Params(), tmp_path).data(CPU, torch.float32)
    assert str(tmp_path / FOLDERS[name]) in str(err.value)


# ---------------------------------------------------------------------------- the real files

def _real(root: Path, name: str) -> Path:
    if not (root / FOLDERS[name]).is_dir():
        pytest.skip(f"{root / FOLDERS[name]} not present")
    return root


@pytest.mark.parametrize("name, loader", [("mnist", load_mnist), ("fashion-mnist", load_fashion_mnist)])
def test_real_idx_files(real_data_dir, name, loader):
    root = _real(real_data_dir, name)
    x_train, y_train, x_test, y_test = loader(root)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.shape == (60000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10)) and set(np.unique(y_test)) == set(range(10))

    task_cls = get_task(name)
    data = task_cls(task_cls.Params(), root).data(CPU, torch.float32)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert data.n_inputs == 784 and data.n_classes == 10 and data.train.x.dtype == torch.float32
    assert abs(float(data.train.x.mean())) < 1e-3  # standardised with training statistics
    assert int(data.val.y.min()) == 0 and int(data.val.y.max()) == 9


def test_real_cifar10_files(real_data_dir):
    root = _real(real_data_dir, "cifar10")
    x_train, y_train, x_test, y_test = load_cifar10(root)
    assert x_train.shape == (50000, 3072) and x_test.shape == (10000, 3072) and x_train.dtype == np.uint8
    assert y_train.shape == (50000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10)) and np.bincount(y_test).tolist() == [1000] * 10
    # Through the task (load_arrays only: normalising 50k×3072 is the engine's cost, not the reader's).
    raw = get_task("cifar10")(get_task("cifar10").Params(), root).load_arrays(root)
    assert raw.x_train.shape == (50000, 3072) and raw.n_classes == 10


@pytest.mark.parametrize("params, message", [
    ({"test_fraction": 2.0}, "test_fraction must lie strictly between 0 and 1"),
    ({"test_fraction": 0.0}, "test_fraction must lie strictly between 0 and 1"),
    ({"hidden": [10**14]}, "hidden widths must be at most"),
])
def test_digits_parameters_out_of_range_refused_when_the_suite_is_read(params, message):
    from plasticity.errors import ConfigError
    from plasticity.params import make_params
    with pytest.raises(ConfigError, match=message):
        make_params(get_task("digits").Params, params, "tasks[0]")
