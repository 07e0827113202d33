"""Image models a task can train instead of its MLP (task parameter `model`): LeNet, the CIFAR
ResNets of He et al. (ResNet-20, ResNet-56) and a ResNet-9-style CNN, as plain `nn.Module`s built
from Linear and Conv2d layers, so that backprop and every rule of the feedback family train them.

Inputs arrive flattened (N, C·H·W, channel-major, as the data readers give them) and are viewed as
images. Layers are registered in forward order (the feedback family takes the first one as the
input layer). Batch norm is probed in eval mode by the metrics and the evaluation.

- `lenet`: BioTorch's LeNets (Sanfiz & Akrout 2021, models/le_net.py). Grey 28×28 images: conv5(6),
  pool, conv5(16), pool, conv5(120), fc 84, fc n, on the image zero-padded to 32×32 (BioTorch resizes
  MNIST to 32×32; padding keeps the digits' pixels). Colour 32×32: conv3(32), pool, conv3(64), pool,
  conv3(128), global average pool, fc 256, fc n. `width` scales the channels (0: these).
- `resnet20`, `resnet56`: He et al.'s CIFAR ResNets with option-A (parameter-free, zero-padded)
  shortcuts, as BioTorch's small_resnet.py (after Idelbayev): conv3(w)-bn, three stages of 3 or 9
  basic blocks at w, 2w, 4w channels (stride 2 between stages), global average pool, fc.
  w = `width` or 16 (0.27 M parameters for ResNet-20).
- `resnet9`: Page's DAWNBench ResNet-9 with channels w, 2w, 4w, 8w (w = `width` or 16; 64 is the
  original), max-pools, two residual blocks, global max-pool, linear × 1/8.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError, unknown
from .network import activation as activation_fn
from .network import init_layers

ModelName = Literal["mlp", "lenet", "resnet20", "resnet56", "resnet9"]
MODELS = ("mlp", "lenet", "resnet20", "resnet56", "resnet9")


class Act(nn.Module):
    """A named activation (plasticity.network.ACTIVATIONS) as a module."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.f = activation_fn(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


class ImageModel(nn.Module):
    """Base: views flat rows as `shape` images and runs `self.body`."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.view(-1, *self.shape))


class LeNet(ImageModel):
    def __init__(self, shape: tuple[int, int, int], n_classes: int, act: str = "relu", width: int = 0) -> None:
        super().__init__(shape)
        c, h, w = shape
        if (h, w) == (28, 28) or (h, w) == (32, 32) and c == 1:
            k = (width or 6) / 6
            c1, c2, c3, f = round(6 * k), round(16 * k), round(120 * k), 84
            self.body = nn.Sequential(
                nn.ZeroPad2d(2 if h == 28 else 0),
                nn.Conv2d(c, c1, 5), Act(act), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 5), Act(act), nn.MaxPool2d(2),
                nn.Conv2d(c2, c3, 5), Act(act), nn.Flatten(),
                nn.Linear(c3, f), Act(act), nn.Linear(f, n_classes))
        elif (h, w) == (32, 32):
            k = (width or 32) / 32
            c1, c2, c3, f = round(32 * k), round(64 * k), round(128 * k), 256
            self.body = nn.Sequential(
                nn.Conv2d(c, c1, 3), Act(act), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3), Act(act), nn.MaxPool2d(2),
                nn.Conv2d(c2, c3, 3), Act(act), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                nn.Linear(c3, f), Act(act), nn.Linear(f, n_classes))
        else:
            raise ConfigError(f"model 'lenet' takes 28×28 or 32×32 images, got {c}×{h}×{w}")


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = Act(act)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = Act(act)
        self.shortcut = _ShortcutA(c_out - c_in) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class CifarResNet(ImageModel):
    def __init__(self, shape: tuple[int, int, int], n_classes: int, blocks: int, act: str = "relu",
                 width: int = 0) -> None:
        super().__init__(shape)
        w = width or 16
        layers: list[nn.Module] = [nn.Conv2d(shape[0], w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), Act(act)]
        c = w
        for stage, c_out in enumerate((w, 2 * w, 4 * w)):
            for i in range(blocks):
                layers.append(BasicBlock(c, c_out, 2 if stage and i == 0 else 1, act))
                c = c_out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_classes))


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, act: str, pool: bool = False) -> None:
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), Act(act)]
        super().__init__(*layers, *([nn.MaxPool2d(2)] if pool else []))


class Residual(nn.Module):
    def __init__(self, channels: int, act: str) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBlock(channels, channels, act), ConvBlock(channels, channels, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(ImageModel):
    """ResNet-9-style CNN (Page's DAWNBench net, channels scaled by `width`)."""

    def __init__(self, shape: tuple[int, int, int], n_classes: int, act: str = "relu", width: int = 0) -> None:
        super().__init__(shape)
        w = width or 16
        self.features = nn.Sequential(
            ConvBlock(shape[0], w, act),
            ConvBlock(w, 2 * w, act, pool=True), Residual(2 * w, act),
            ConvBlock(2 * w, 4 * w, act, pool=True),
            ConvBlock(4 * w, 8 * w, act, pool=True), Residual(8 * w, act),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8 * w, n_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.view(-1, *self.shape))) * 0.125


def build_model(name: str, shape: tuple[int, int, int], n_classes: int, activation: str = "relu",
                width: int = 0, init: str = "torch", init_scale: float = 1.0,
                generator: torch.Generator | None = None) -> nn.Module:
    """One of the image models by name (not "mlp": the task builds that one)."""
    if name == "lenet":
        model: nn.Module = LeNet(shape, n_classes, activation, width)
    elif name in ("resnet20", "resnet56"):
        model = CifarResNet(shape, n_classes, 3 if name == "resnet20" else 9, activation, width)
    elif name == "resnet9":
        model = ResNet9(shape, n_classes, activation, width)
    else:
        raise ConfigError(unknown("model", name, MODELS))
    init_layers(model, init, init_scale, generator)  # the MLP's initialisation too
    return model


def augment_images(x: torch.Tensor, shape: tuple[int, int, int], generator: torch.Generator,
                   pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crops of the zero-padded images (the usual CIFAR augmentation: pad 4, crop back) and
    random horizontal flips, on `x`'s device, one draw per image; rows stay flat."""
    n = x.shape[0]
    c, h, w = shape
    img = F.pad(x.view(n, c, h, w), (pad, pad, pad, pad))
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=generator, device=dev)
    ox = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=generator, device=dev)
    rows = (oy + torch.arange(h, device=dev).view(1, h, 1)).expand(n, h, w)
    cols = (ox + torch.arange(w, device=dev).view(1, 1, w)).expand(n, h, w)
    if flip:
        mirror = torch.rand((n, 1, 1), generator=generator, device=dev) < 0.5
        cols = torch.where(mirror, ox + (w - 1) - torch.arange(w, device=dev).view(1, 1, w), cols)
    batch = torch.arange(n, device=dev).view(n, 1, 1).expand(n, h, w)
    out = img.permute(0, 2, 3, 1)[batch, rows, cols]  # n × h × w × c
    return out.permute(0, 3, 1, 2).reshape(n, -1)
