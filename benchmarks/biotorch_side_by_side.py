"""This project's FA, uSF, brSF and frSF against BioTorch's own layers on the same LeNet, weights,
feedback matrices and batch: gradients in float64 (max abs difference) and time per update.

BioTorch (Sanfiz & Akrout 2021, https://github.com/jsalbert/biotorch) is not a dependency and
nothing is installed into the package. Its layer modules import without torchvision, so install it
without its dependencies (torchvision, jupyter, ... are only needed by its training scripts):

    pip install --no-deps biotorch==0.0.16

The networks: BioTorch's LeNet for MNIST (conv5(6), pool, conv5(16), pool, conv5(120), fc 84, fc 10)
built from `biotorch.layers.<mode>` Conv2d/Linear, and plasticity.models.LeNet on 1×32×32 inputs
(the same layers), the weights copied from ours. Feedback: FA's B is BioTorch's `weight_backward`
(transposed for Linear layers); uSF uses BioTorch's `scaling_factor` (the std of its Xavier init)
as our `scale`; frSF takes BioTorch's fixed |R|; brSF's per-batch magnitudes are redrawn by
BioTorch from torch's global generator, so the script reseeds it, replays the same draws
(Xavier-uniform, float32, layer by layer in forward order) and hands them to our rule. DFA is
not compared: BioTorch's DFA layers need its model wrapper's output hook.

Timing: float32, batch 128, one SGD step per update (credit + step), rounds alternating between
the two implementations, median over rounds. Run beside `uptime`:

    python benchmarks/biotorch_side_by_side.py [--updates 20] [--rounds 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from plasticity import registry
from plasticity.models import LeNet

MODES = ("fa", "usf", "brsf", "frsf")


def biotorch_lenet(mode: str, dtype: torch.dtype) -> nn.Module:
    import importlib
    layers = importlib.import_module(f"biotorch.layers.{mode}")
    cfg = lambda: {"type": mode, "options": {"init": "xavier", "constrain_weights": False,  # noqa: E731
                                             "gradient_clip": False}}
    net = nn.Sequential(
        layers.Conv2d(1, 6, 5, layer_config=cfg()), nn.ReLU(), nn.MaxPool2d(2),
        layers.Conv2d(6, 16, 5, layer_config=cfg()), nn.ReLU(), nn.MaxPool2d(2),
        layers.Conv2d(16, 120, 5, layer_config=cfg()), nn.ReLU(), nn.Flatten(),
        layers.Linear(120, 84, layer_config=cfg()), nn.ReLU(), layers.Linear(84, 10, layer_config=cfg()))
    return net.to(dtype)


def ours_and_theirs(mode: str, dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    theirs = biotorch_lenet(mode, dtype)
    ours = LeNet((1, 32, 32), 10).to(dtype)
    bt_layers = [m for m in theirs if isinstance(m, (nn.Conv2d, nn.Linear))]
    cls = registry.get_rule(mode)
    rule = cls(ours, cls.Params(), torch.optim.SGD(ours.parameters(), lr=1e-3, momentum=0.9),
               torch.Generator().manual_seed(1))
    with torch.no_grad():
        for mine, bt in zip(rule.layers, bt_layers):
            mine.weight.copy_(bt.weight)
            mine.bias.copy_(bt.bias)
    for l, (mine, bt) in enumerate(zip(rule.layers, bt_layers), start=1):
        if l == 1:
            continue  # neither implementation sends an error to the data
        wb = bt.weight_backward.detach().to(dtype)
        if mode == "fa":
            rule.B[l - 1] = wb.T.contiguous() if isinstance(mine, nn.Linear) else wb.clone()
        elif mode == "usf":
            rule.scale[l - 1] = float(bt.scaling_factor)
        elif mode == "frsf":
            rule.R[l - 1] = wb.clone()  # BioTorch stores |R| at init
    return rule, theirs, bt_layers


def brsf_replay(rule, bt_layers, seed: int, dtype: torch.dtype) -> None:
    """Give our brSF the magnitudes BioTorch draws in its next forward pass after `manual_seed(seed)`."""
    torch.manual_seed(seed)
    mags = []
    for bt in bt_layers:
        wb = torch.empty(bt.weight.shape)  # BioTorch: torch.Tensor(size), float32, then xavier_uniform_
        nn.init.xavier_uniform_(wb)
        mags.append(wb.abs().to(dtype))
    rule.magnitudes = lambda l: mags[l - 1]
    torch.manual_seed(seed)


def gradients_agree(mode: str) -> float:
    dtype = torch.float64
    rule, theirs, bt_layers = ours_and_theirs(mode, dtype)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 1, 32, 32, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (64,), generator=g)
    if mode == "brsf":
        brsf_replay(rule, bt_layers, 7, dtype)
    nn.functional.cross_entropy(theirs(x), y).backward()
    rule.credit(x.flatten(1), y)
    diffs = []
    for mine, bt in zip(rule.layers, bt_layers):
        diffs += [float((mine.weight.grad - bt.weight.grad).abs().max()),
                  float((mine.bias.grad - bt.bias.grad).abs().max())]
    return max(diffs)


def seconds_per_update(mode: str, updates: int, rounds: int) -> tuple[float, float]:
    rule, theirs, _ = ours_and_theirs(mode, torch.float32)
    opt = torch.optim.SGD(theirs.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(128, 1, 32, 32, generator=g)
    y = torch.randint(0, 10, (128,), generator=g)

    def bt_update():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(theirs(x), y).backward()
        opt.step()

    flat = x.flatten(1)
    steps = {"ours": lambda: rule.update(flat, y), "biotorch": bt_update}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for step in steps.values():  # warm-up
        for _ in range(3):
            step()
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(updates):
                step()
            times[name].append((time.perf_counter() - start) / updates)
    return statistics.median(times["ours"]), statistics.median(times["biotorch"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    try:
        import biotorch  # noqa: F401
    except ImportError:
        sys.exit("BioTorch is not installed: pip install --no-deps biotorch==0.0.16 (see this script's docstring)")
    if a.threads:
        torch.set_num_threads(a.threads)
    registry.load_plugins()
    print(f"LeNet (MNIST, 1×32×32), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'rule':<6} {'max |Δgrad| f64':>16} {'ours ms':>9} {'BioTorch ms':>12} {'ours/BioTorch':>14}")
    for mode in MODES:
        diff = gradients_agree(mode)
        ours, theirs = seconds_per_update(mode, a.updates, a.rounds)
        print(f"{mode:<6} {diff:>16.2e} {ours * 1e3:>9.2f} {theirs * 1e3:>12.2f} {ours / theirs:>14.2f}")


if __name__ == "__main__":
    main()
