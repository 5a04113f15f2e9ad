"""lapify(where="auto") on the smallest member of every torchvision family and a timm CNN."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from torchlap import attention_maps, lapify
from torchlap.layers import LapBase, lap_modules

# (architecture, probe/input size, expected replaced modules). The expected sites follow the
# auto rule: the down-sampling steps to 1/8, 1/16 and 1/32 of the input plus the global pool.
FAMILIES = [
    ("vgg11", 64, ["features.10", "features.15", "features.20", "avgpool"]),
    ("resnet18", 64, ["layer2.0", "layer3.0", "layer4.0", "avgpool"]),
    ("resnext50_32x4d", 64, ["layer2.0", "layer3.0", "layer4.0", "avgpool"]),
    (
        "densenet121",
        64,
        [
            "features.transition1.pool",
            "features.transition2.pool",
            "features.transition3.pool",
            "features.global_pool",
        ],
    ),
    (
        "mobilenet_v2",
        64,
        ["features.4.conv.1.0", "features.7.conv.1.0", "features.14.conv.1.0",
         "features.global_pool"],
    ),
    (
        "mobilenet_v3_small",
        64,
        ["features.2.block.1.0", "features.4.block.1.0", "features.9.block.1.0", "avgpool"],
    ),
    (
        "efficientnet_b0",
        64,
        ["features.3.0.block.1.0", "features.4.0.block.1.0", "features.6.0.block.1.0",
         "avgpool"],
    ),
    (
        "regnet_y_400mf",
        64,
        [f"trunk_output.block{i}.block{i}-0.{p}" for i in (2, 3, 4) for p in ("proj.0", "f.b.0")]
        + ["avgpool"],
    ),
    ("convnext_tiny", 64, ["features.2.1", "features.4.1", "features.6.1", "avgpool"]),
    ("inception_v3", 75, ["maxpool2", "Mixed_6a", "Mixed_7a", "avgpool"]),
]  # fmt: skip


def build(arch: str) -> nn.Module:
    kwargs = {}
    if arch == "inception_v3":
        kwargs = {"aux_logits": False, "init_weights": False}
    elif arch == "vgg11":
        kwargs = {"init_weights": False}  # skip re-initialising its 120M parameters
    return torchvision.models.get_model(arch, weights=None, num_classes=3, **kwargs).eval()


def check_lapified(model: nn.Module, names: list[str], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    assert out.shape == (x.shape[0], 3)  # the classifier output is unchanged in shape
    assert torch.isfinite(out).all()
    laps = lap_modules(model)
    expected_laps = model.torchlap_config["lapify"][-1]["lap_names"]
    assert sorted(laps) == sorted(expected_laps) and len(laps) == len(names)
    # fresh instances: no LAP is reachable under two names
    every = [n for n, m in model.named_modules(remove_duplicate=False) if isinstance(m, LapBase)]
    assert len(every) == len(laps) == len({id(m) for m in laps.values()})
    maps = attention_maps(model)
    assert list(maps) == expected_laps  # one map per LAP, in forward order
    for name, lap_maps in maps.items():
        assert lap_maps.score.shape[0] == x.shape[0], name
        assert lap_maps.concepts.shape[1] == laps[name].n_concepts
    return out


@pytest.mark.parametrize(("arch", "size", "expected"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_auto_lapify_every_torchvision_family(arch, size, expected):
    model = build(arch)
    x = torch.randn(1, 3, size, size)  # the probe's shape too: one warm-up of the kernels
    before = None
    if arch == "densenet121":
        with torch.no_grad():
            before = model(x)
    if arch == "resnext50_32x4d":  # a Bottleneck ResNet: the paper's ImageNet layout too
        # paper 000, IV.C: "we only used a LAP in the fourth layer" (one LAP, no global one)
        imagenet, names = lapify(model, where="resnet50-imagenet", input_size=size, inplace=False)
        assert names == ["layer4.0"]
        assert list(lap_modules(imagenet)) == ["layer4.0.lap"]
        assert imagenet.layer4[0].lap.in_channels == 1024
        assert isinstance(imagenet.avgpool, torch.nn.AdaptiveAvgPool2d)
        old, names = lapify(model, where="resnet50-imagenet-global", input_size=size, inplace=False)
        assert list(lap_modules(old)) == ["layer4.0.lap", "avgpool"]
        assert not lap_modules(model)
    _, names = lapify(model, input_size=size)
    assert names == expected
    after = check_lapified(model, names, x)
    if before is not None:
        # every DenseNet site is an average pool: LAP starts as exactly that average
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_auto_lapify_timm_cnn():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    _, names = lapify(model, input_size=64)
    # timm's blocks are not known blocks: the strided conv and the shortcut's AvgPool2d of
    # each step get their own LAP; the global pool is SelectAdaptivePool2d's inner pool
    assert names == [f"layer{i}.0.{p}" for i in (2, 3, 4) for p in ("conv1", "downsample.0")] + [
        "global_pool.pool"
    ]
    check_lapified(model, names, torch.randn(1, 3, 64, 64))


def test_timm_fast_global_pool_is_replaced_exactly():
    pytest.importorskip("timm")
    from timm.layers import SelectAdaptivePool2d

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), SelectAdaptivePool2d(pool_type="fast", flatten=True)
    ).eval()
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        before = model(x)
        _, names = lapify(model, where="global", input_size=9)
        after = model(x)
    assert names == ["1.pool"] and list(lap_modules(model)) == ["1.pool.0"]
    assert model.torchlap_config["lapify"][0]["lap_names"] == ["1.pool.0"]
    torch.testing.assert_close(after, before)
