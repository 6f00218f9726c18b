"""Model registry: a name on the command line picks an architecture.

Every model takes float images in [0, 1] and normalises inside (so a saved model needs
no separate preprocessing), and exposes ``features(x)`` (the penultimate layer, used by
identification analyses and probes) and ``head`` (the final linear layer).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        return fn

    return deco


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    **kwargs,
) -> nn.Module:
    """Instantiate a registered architecture; unknown names list the registered ones.

    A factory gets, as keywords, those of ``num_classes``, ``in_channels``, ``mean`` and
    ``std`` that its signature names (so a user's ``def net(num_classes)`` registers as
    it is; it then normalises its inputs itself), and every other keyword given here."""
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; registered: {', '.join(sorted(MODELS))}")
    factory = MODELS[name]
    standard = dict(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
    offered = ", ".join(standard)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): give it everything
        params = ()
    if params and not any(p.kind is p.VAR_KEYWORD for p in params):
        names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        standard = {k: v for k, v in standard.items() if k in names}
    try:
        return factory(**standard, **kwargs)
    except TypeError as e:
        raise ValueError(
            f"architecture {name!r} could not be built ({e}); its factory is called with "
            f"those of the keywords {offered} it names: take num_classes, and give any "
            "other argument a default"
        ) from e


def forward_flops(name: str, input_shape: tuple[int, ...], num_classes: int = 10) -> float:
    """Floating-point operations of one forward pass on one image (torch's flop counter):
    what the bench's dry run scales measured times by when a recipe swaps architectures."""
    return network_size(name, input_shape, num_classes)[0]


def network_size(
    name: str, input_shape: tuple[int, ...], num_classes: int = 10
) -> tuple[float, int]:
    """(:func:`forward_flops`, trainable parameters) of one architecture, from one model."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(name, num_classes, in_channels=input_shape[0]).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return float(counter.get_total_flops()), params


class Classifier(nn.Module):
    """Normalisation -> feature extractor -> linear head."""

    def __init__(
        self, body: nn.Module, width: int, num_classes: int, in_channels: int, mean, std
    ) -> None:
        super().__init__()
        mean = mean if mean is not None else (0.5,) * in_channels
        std = std if std is not None else (0.25,) * in_channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.body = body
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_bn(cin: int, cout: int, act: type[nn.Module] = nn.GELU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), act()
    )


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a, self.b = _conv_bn(c, c), _conv_bn(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


@register("cpunet")
def cpunet(
    num_classes: int,
    in_channels: int = 3,
    mean=None,
    std=None,
    widths: tuple[int, ...] = (32, 64, 128, 128),
) -> nn.Module:
    """The `cpu` recipe's network: a 4-stage residual CNN with GELU and batch norm
    (widths 32-64-128-128), pooling after stages 2-4, global max-pool."""
    layers: list[nn.Module] = [_conv_bn(in_channels, widths[0])]
    cin = widths[0]
    for i, c in enumerate(widths):
        layers.append(_conv_bn(cin, c))
        if i > 0:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        layers.append(_Residual(c))
        cin = c
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), cin, num_classes, in_channels, mean, std)


@register("cpunet-tiny")
def cpunet_tiny(num_classes: int, in_channels: int = 3, mean=None, std=None) -> nn.Module:
    """A narrow cpunet for tests and the embedded demo."""
    return cpunet(num_classes, in_channels, mean, std, widths=(16, 32, 64, 64))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(out)) + self.short(x))


@register("resnet18")
def resnet18(num_classes: int, in_channels: int = 3, mean=None, std=None) -> nn.Module:
    """ResNet-18, CIFAR variant (3x3 stride-1 stem, no max-pool), the paper recipe's model."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
    ]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), 512, num_classes, in_channels, mean, std)


# -- the paper's architecture ablation (Fig. 7, Table 12) -----------------------------------
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@register("vgg16-bn")
def vgg16_bn(
    num_classes: int, in_channels: int = 3, mean=None, std=None, cfg: tuple = VGG16
) -> nn.Module:
    """VGG-16 with batch norm, CIFAR variant (one linear head on the 512 pooled
    features). Pooling uses ceil mode and ends in a global average, so the `cpu`
    recipe's 16 px images (or 14 px Fashion-MNIST) pass through all five pools."""
    layers: list[nn.Module] = []
    cin = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
            cin = v
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), cin, num_classes, in_channels, mean, std)


class _WideBlock(nn.Module):
    """Pre-activation wide residual block (Zagoruyko and Komodakis 2016)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.b1, self.c1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b2, self.c2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.b1(x))
        y = self.c2(F.relu(self.b2(self.c1(o))))
        return y + (self.short(o) if self.short is not None else x)


def wide_resnet(
    num_classes: int, in_channels: int = 3, mean=None, std=None, depth: int = 16, widen: int = 4
) -> nn.Module:
    """WRN-depth-widen for 32 px inputs (three stages of (depth - 4) / 6 blocks)."""
    if (depth - 4) % 6:
        raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
    n = (depth - 4) // 6
    widths = (16 * widen, 32 * widen, 64 * widen)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)]
    cin = 16
    for i, w in enumerate(widths):
        for j in range(n):
            layers.append(_WideBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
            cin = w
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), cin, num_classes, in_channels, mean, std)


@register("wrn16-4")
def wrn16_4(num_classes: int, in_channels: int = 3, mean=None, std=None) -> nn.Module:
    """WRN-16-4: the WideResNet a CPU can train (2.7 M weights)."""
    return wide_resnet(num_classes, in_channels, mean, std, 16, 4)


@register("wrn28-10")
def wrn28_10(num_classes: int, in_channels: int = 3, mean=None, std=None) -> nn.Module:
    """WRN-28-10, the usual CIFAR WideResNet (36 M weights; a GPU model)."""
    return wide_resnet(num_classes, in_channels, mean, std, 28, 10)
