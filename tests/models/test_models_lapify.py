"""lapify: function-preserving insertion, presets, atomic failure, hooks, freezing, configs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torchvision
from torch import nn

import torchlap
from torchlap import attention_maps, freeze_all_but_lap, lap_parameters, lapify
from torchlap.layers import AdaptiveLocalAttentionPool2d, LapBase, LocalAttentionPool2d, lap_modules
from torchlap.models import PRESETS, LapConv2d, LapResidualBlock, apply_lapify_config


def randomize_bn(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, as in a trained network."""
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.normal_(0.0, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.normal_(1.0, 0.2)
                bn.bias.normal_(0.0, 0.2)


@pytest.fixture(scope="module")
def resnet18_base() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5)
    randomize_bn(model)
    return model.eval()


@pytest.fixture
def resnet18(resnet18_base) -> nn.Module:
    return copy.deepcopy(resnet18_base)


def structure(model: nn.Module) -> list[tuple[str, int, bool]]:
    return [(n, id(m), m.training) for n, m in model.named_modules()]


def test_exports():
    assert torchlap.lapify is lapify
    assert torchlap.lap_parameters is lap_parameters
    assert torchlap.freeze_all_but_lap is freeze_all_but_lap


@pytest.mark.parametrize("where", ["global", ["avgpool"]])
def test_global_pool_insertion_keeps_a_pretrained_resnet18_outputs(resnet18, where):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = resnet18(x)
    _, names = lapify(resnet18, where=where, input_size=64)
    assert names == ["avgpool"]
    assert isinstance(resnet18.avgpool, AdaptiveLocalAttentionPool2d)
    with torch.no_grad():
        after = resnet18(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_avg_pool_sites_are_exact_only_where_no_padding_is_counted():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.AvgPool2d(3, 1, 1), nn.AvgPool2d(2, 2)).eval()
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        padded_avg = model[1](conv(x))
        before = model(x)
        lapify(model, where=["1", "2"])
        padded_lap = model[1](conv(x))
    assert isinstance(model[1], LocalAttentionPool2d) and model[1].in_channels == 3  # static
    # interior windows hold no padding: exactly the average; border windows differ because
    # AvgPool2d(count_include_pad=True) counts the zero padding and LAP does not
    torch.testing.assert_close(padded_lap[..., 1:-1, 1:-1], padded_avg[..., 1:-1, 1:-1])
    assert not torch.allclose(padded_lap[..., 0, :], padded_avg[..., 0, :])
    assert model(x).shape == before.shape


def test_resnet18_preset_layout_and_maps_in_forward_order(resnet18):
    _, names = lapify(resnet18, where="resnet18", input_size=64)
    preset = PRESETS["resnet18"]
    assert names == list(preset.sites) == ["layer2.0", "layer3.0", "layer4.0", "avgpool"]
    assert list(lap_modules(resnet18)) == list(preset.lap_names)
    assert all(isinstance(resnet18.get_submodule(n), LapResidualBlock) for n in names[:3])
    with torch.no_grad():
        assert resnet18(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    maps = attention_maps(resnet18)
    assert list(maps) == ["layer2.0.lap", "layer3.0.lap", "layer4.0.lap", "avgpool"]
    assert [tuple(m.score.shape[-2:]) for m in maps.values()] == [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_auto_equals_the_resnet18_preset(resnet18):
    _, names = lapify(resnet18, input_size=64)
    assert names == list(PRESETS["resnet18"].sites)


def test_preset_that_does_not_fit(resnet18):
    before = structure(resnet18)
    with pytest.raises(ValueError, match=r"preset 'inception_v3' does not fit.*Mixed_6a"):
        lapify(resnet18, where="inception_v3")
    assert structure(resnet18) == before


def test_missing_name_fails_cleanly(resnet18):
    before = structure(resnet18)
    state = {k: v.clone() for k, v in resnet18.state_dict().items()}
    with pytest.raises(ValueError, match=r"no module 'layer2\.9'.*did you mean"):
        lapify(resnet18, where=["layer2.0", "avgpool", "layer2.9"], input_size=64)
    assert structure(resnet18) == before
    assert not hasattr(resnet18, "torchlap_config")
    assert all(torch.equal(value, state[key]) for key, value in resnet18.state_dict().items())


def test_unsupported_and_overlapping_names_fail_cleanly(resnet18):
    before = structure(resnet18)
    with pytest.raises(ValueError, match=r"cannot replace fc \(Linear\)"):
        lapify(resnet18, where=["avgpool", "fc"])
    with pytest.raises(ValueError, match=r"cannot replace layer1\.0 \(BasicBlock\)"):
        lapify(resnet18, where=["layer1.0"])  # a block that does not down-sample
    with pytest.raises(ValueError, match=r"lies inside 'layer2\.0'"):
        lapify(resnet18, where=["layer2.0", "layer2.0.conv1"])
    with pytest.raises(ValueError, match="listed twice"):
        lapify(resnet18, where=["avgpool", "avgpool"])
    with pytest.raises(ValueError, match="unknown where='resnet"):
        lapify(resnet18, where="resnet")
    with pytest.raises(ValueError, match=r"pass \['avgpool'\]"):
        lapify(resnet18, where="avgpool")
    with pytest.raises(TypeError, match="where must be"):
        lapify(resnet18, where=3)
    with pytest.raises(ValueError, match="n_concepts"):
        lapify(resnet18, where=["avgpool"], n_concepts=0)
    assert structure(resnet18) == before


def test_failure_while_building_leaves_the_model_unchanged():
    # the first site builds fine, the second cannot be made LAP: nothing may be swapped in
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), nn.MaxPool2d(2), nn.MaxPool2d(3, dilation=2)
    )
    before = structure(model)
    with pytest.raises(ValueError, match="dilated max pool"):
        lapify(model, where=["0", "1", "2"])
    assert structure(model) == before and tuple(model[0].stride) == (2, 2)


def test_predicate_and_strided_conv_sites(resnet18):
    _, names = lapify(
        resnet18,
        where=lambda name, module: isinstance(module, nn.Conv2d) and name.startswith("layer3"),
    )
    assert names == ["layer3.0.conv1", "layer3.0.downsample.0"]
    conv = resnet18.layer3[0].conv1
    assert isinstance(conv, LapConv2d) and tuple(conv.stride) == (1, 1)
    assert conv.lap.kernel_size == (2, 2) and conv.lap.stride == (2, 2)
    assert conv.lap.in_channels == 256  # conv.out_channels, no dry forward needed
    with torch.no_grad():
        assert resnet18(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    assert list(attention_maps(resnet18)) == ["layer3.0.conv1.lap", "layer3.0.downsample.0.lap"]
    with pytest.raises(ValueError, match="selected no module"):
        lapify(resnet18, where=lambda name, module: False)


def test_inplace_false_leaves_the_original(resnet18):
    before = structure(resnet18)
    copy_, names = lapify(resnet18, where="resnet18", input_size=64, inplace=False)
    assert copy_ is not resnet18 and structure(resnet18) == before
    assert len(lap_modules(copy_)) == len(names) == 4


def test_probe_restores_flags_and_removes_hooks_even_on_error(resnet18):
    resnet18.train()
    resnet18.layer1.eval()
    flags = structure(resnet18)
    with pytest.raises(ValueError, match=r"dry forward pass.*failed"):
        lapify(resnet18, where="auto", input_size=(2, 64, 64))  # wrong channel count
    assert structure(resnet18) == flags
    for module in resnet18.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    lapify(resnet18, where="auto", input_size=64)
    after = {n: t for n, _, t in structure(resnet18)}
    assert after["layer1"] is False and after[""] is True and after["fc"] is True
    assert after["layer2.0.lap"] is True and after["avgpool"] is True  # follow their site
    for module in resnet18.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_probe_too_small_to_tell_steps_apart(resnet18):
    with pytest.raises(ValueError, match="probe input is too small"):
        lapify(resnet18, where="auto", input_size=16)


def test_float64_model_gets_float64_laps(resnet18):
    resnet18.double()
    lapify(resnet18, input_size=64)
    for parameter in lap_parameters(resnet18):
        assert parameter.dtype == torch.float64
    with torch.no_grad():
        out = resnet18(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert all(m.score.dtype == torch.float64 for m in attention_maps(resnet18).values())


def test_freeze_all_but_lap(resnet18):
    with pytest.raises(ValueError, match="no LAP layer"):
        freeze_all_but_lap(resnet18)
    lapify(resnet18, where="resnet18", input_size=64)
    trainable = freeze_all_but_lap(resnet18)
    lap_ids = {id(p) for p in lap_parameters(resnet18)}
    assert len(lap_ids) == len(lap_parameters(resnet18)) == len(trainable) > 0
    for name, parameter in resnet18.named_parameters():
        assert parameter.requires_grad == (id(parameter) in lap_ids), name
        assert parameter.requires_grad == (name in trainable)
    resnet18.train()
    resnet18(torch.randn(2, 3, 64, 64)).logsumexp(1).sum().backward()
    for name, parameter in resnet18.named_parameters():
        if id(parameter) not in lap_ids:
            assert parameter.grad is None, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lap_parameters(resnet18))
    # the paper's second phase: the fourth layer (with its LAP) and the classifier
    trainable = freeze_all_but_lap(resnet18, also_trainable=["layer4", "fc"])
    assert "fc.weight" in trainable and "layer4.1.conv2.weight" in trainable
    assert "layer3.1.conv2.weight" not in trainable and "layer2.0.lap.alpha" in trainable
    with pytest.raises(ValueError, match="no module 'layer9'"):
        freeze_all_but_lap(resnet18, also_trainable=["layer9"])


def test_lap_parameters_and_freeze_check_their_arguments(resnet18):
    # a model without LAP: the same clear error from both (an optimizer given [] would fail
    # later with an unrelated message)
    for function in (lap_parameters, freeze_all_but_lap):
        with pytest.raises(ValueError, match=r"no LAP layer; put some in with torchlap\.lapify"):
            function(resnet18)
        with pytest.raises(TypeError, match=r"model must be an nn\.Module, got str"):
            function("x")
    lapify(resnet18, where="resnet18", input_size=64)
    before = [p.requires_grad for p in resnet18.parameters()]
    for also in (5, [5], ["fc", None]):
        with pytest.raises(TypeError, match="also_trainable must be a module name or a list"):
            freeze_all_but_lap(resnet18, also)
    assert [p.requires_grad for p in resnet18.parameters()] == before  # nothing changed


def test_config_is_json_and_rebuilds_the_same_model(resnet18_base, resnet18):
    lapify(resnet18, where="auto", n_concepts=2, aggregation="sum", input_size=64)
    config = json.loads(json.dumps(resnet18.torchlap_config))
    (call,) = config["lapify"]
    assert call["where"] == "auto" and call["n_concepts"] == 2 and call["aggregation"] == "sum"
    assert call["sites"] == ["layer2.0", "layer3.0", "layer4.0", "avgpool"]
    assert call["lap_names"] == ["layer2.0.lap", "layer3.0.lap", "layer4.0.lap", "avgpool"]
    with torch.no_grad():
        for lap in lap_modules(resnet18).values():  # trained-looking LAPs
            lap.scorer.heads[-1].weight.normal_()
        fresh = apply_lapify_config(copy.deepcopy(resnet18_base), config["lapify"])
        fresh.load_state_dict(resnet18.state_dict())
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(fresh(x), resnet18(x))
    assert fresh.torchlap_config["lapify"][0]["sites"] == call["sites"]


def test_per_head_hidden_channels_are_recorded_and_rebuilt(resnet18_base, resnet18):
    """``head_hidden`` reaches every LAP, the record, and a model rebuilt from the record; a
    record written before the option existed rebuilds with shared hidden channels."""
    lapify(resnet18, where=["layer4.0", "avgpool"], n_concepts=3, head_hidden="per_head",
           input_size=64)  # fmt: skip
    for lap in lap_modules(resnet18).values():
        assert lap.scorer.head_hidden == "per_head" and lap.scorer.heads[2].groups == 3
    (call,) = json.loads(json.dumps(resnet18.torchlap_config))["lapify"]
    assert call["head_hidden"] == "per_head"
    fresh = apply_lapify_config(copy.deepcopy(resnet18_base), [call])
    fresh.load_state_dict(resnet18.state_dict())  # the same parameter shapes
    old = {key: value for key, value in call.items() if key != "head_hidden"}
    shared = apply_lapify_config(copy.deepcopy(resnet18_base), [old])
    assert all(m.scorer.head_hidden == "shared" for m in lap_modules(shared).values())
    with pytest.raises(ValueError, match="head_hidden must be one of"):
        lapify(copy.deepcopy(resnet18_base), where=["avgpool"], head_hidden="each")


def test_aggregation_module_is_not_shared(resnet18):
    aggregation = nn.Sequential(nn.Conv2d(3, 1, 1), nn.Sigmoid())
    lapify(resnet18, where=["layer2.0", "avgpool"], n_concepts=3, aggregation=aggregation,
           input_size=64)  # fmt: skip
    first = resnet18.layer2[0].lap.scorer.aggregate
    second = resnet18.avgpool.scorer.aggregate
    assert first is not aggregation and second is not aggregation and first is not second
    assert resnet18.torchlap_config["lapify"][0]["aggregation"] == "module"
    with pytest.raises(ValueError, match=r"nn\.Module aggregation"):
        apply_lapify_config(nn.Sequential(), resnet18.torchlap_config["lapify"])


def test_second_call_adds_laps_and_keeps_both_records(resnet18):
    lapify(resnet18, where=["avgpool"], input_size=64)
    _, names = lapify(resnet18, where=["maxpool"], input_size=64)
    assert names == ["maxpool"]
    assert [c["sites"] for c in resnet18.torchlap_config["lapify"]] == [["avgpool"], ["maxpool"]]
    with pytest.raises(ValueError, match="cannot replace avgpool"):
        lapify(resnet18, where=["avgpool"])  # already LAP
    assert all(isinstance(m, LapBase) for m in lap_modules(resnet18).values())


def test_pool_sites_keep_kernel_stride_padding_and_ceil_mode():
    pools = [
        nn.MaxPool2d(3, 2, 1),
        nn.MaxPool2d((3, 2), (2, 1), (1, 0), ceil_mode=True),
        nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
        nn.AdaptiveMaxPool2d((2, 3)),
        nn.AdaptiveAvgPool2d((None, 2)),
    ]
    for pool in pools:
        model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU(), pool)
        x = torch.randn(1, 2, 7, 9)
        expected = model(x).shape
        _, names = lapify(model, where=["2"])
        lap = model[2]
        assert names == ["2"] and isinstance(lap, LapBase) and lap.in_channels == 3
        if isinstance(pool, (nn.MaxPool2d, nn.AvgPool2d)):
            pair = nn.modules.utils._pair
            assert lap.kernel_size == pair(pool.kernel_size) and lap.stride == pair(pool.stride)
            assert lap.padding == pair(pool.padding) and lap.ceil_mode == pool.ceil_mode
        assert model(x).shape == expected, pool


def test_inplace_false_after_a_training_pass_keeps_the_original_maps():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1))
    lapify(model, where=["1"])
    model(torch.randn(1, 2, 9, 9)).sum().backward()  # maps now hold a graph
    maps = model[1].maps
    copied, names = lapify(model, where=["2"], inplace=False)
    assert names == ["2"] and model[1].maps is maps and copied[1].maps is None
    assert isinstance(model[2], nn.AdaptiveAvgPool2d) and isinstance(copied[2], LapBase)


class _PoolTwice(nn.Module):
    """One MaxPool2d called at 8 and then at 16 channels."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.pool(self.c2(self.pool(self.c1(x)))).mean((2, 3)))


def test_a_module_with_several_uses_is_refused_before_the_model_changes():
    """Before: the pool called twice was replaced and the next forward failed (8 vs 16
    channels), and of a module under two names only one name was replaced."""
    model = _PoolTwice()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"'pool' is one module .*called 2 times .*\(1, 8, 16"):
        lapify(model, where=["pool"], input_size=16)
    assert type(model.pool) is nn.MaxPool2d and model.state_dict().keys() == before.keys()
    shared = nn.Sequential(nn.Conv2d(3, 8, 3), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3))
    shared.add_module("again", shared[1])
    for name in ("1", "again"):
        with pytest.raises(ValueError, match=rf"'{name}' is one module .*\['1', 'again'\]"):
            lapify(shared, where=[name], input_size=16)
    assert type(shared[1]) is nn.MaxPool2d


def test_a_pool_returning_indices_is_refused_also_when_adaptive():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveMaxPool2d(1, return_indices=True))
    with pytest.raises(ValueError, match=r"returning indices .* LAP returns the pooled map only"):
        lapify(model, where=["1"], input_size=16)
