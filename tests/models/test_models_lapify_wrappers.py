"""lapify on models it cannot change in place, models with TorchScript parts, odd stems, and
where= predicates answering something else than a bool.

Before: a scripted or traced model failed deep inside the dry pass (``register_forward_pre_hook
is not supported on ScriptModules``) or said it found nothing to replace; a torch.compile
wrapper was told that its own ResNet blocks cannot be replaced; a DataParallel model was told
the preset does not fit without a word on ``model.module``; a model with a scripted stem failed
its dry pass (hooks refused, then a probe of the wrong channel count); a failed dry pass did
not say that its channel count was read from the first Conv2d.
"""

import warnings

import pytest
import torch
import torchvision
from torch import nn

from torchlap import lapify


def _resnet() -> nn.Module:
    return torchvision.models.resnet18(num_classes=3).eval()


@pytest.mark.parametrize("wrap", ["script", "trace"])
def test_a_torchscript_model_is_refused_before_any_work(wrap):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if wrap == "script":
            model = torch.jit.script(_resnet())
        else:
            model = torch.jit.trace(_resnet(), torch.randn(1, 3, 32, 32))
    for where in ("auto", "resnet18", ["avgpool"]):
        with pytest.raises(TypeError, match=r"TorchScript module .*lapify the nn.Module first"):
            lapify(model, where, input_size=32)


def test_a_torch_compile_wrapper_is_refused_and_named():
    model = torch.compile(_resnet())  # compiles lazily: nothing runs here
    with pytest.raises(TypeError, match=r"torch.compile wrapper .*lapify model._orig_mod"):
        lapify(model, "resnet18")


def test_a_preset_on_data_parallel_names_model_module():
    model = nn.DataParallel(_resnet())
    with pytest.raises(ValueError, match=r"DataParallel wrapper.*lapify model\.module"):
        lapify(model, "resnet18")
    names = lapify(model.module, "resnet18")[1]
    assert names == ["layer2.0", "layer3.0", "layer4.0", "avgpool"]


class _ScriptedStem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.stem = torch.jit.script(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU()))
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.body(self.stem(x))).flatten(1))


def test_a_model_with_a_scripted_part_gets_its_dry_pass():
    model = _ScriptedStem().train()
    x = torch.randn(2, 3, 32, 32)
    before = model.eval()(x)
    model.train()
    names = lapify(model, "global", input_size=32)[1]
    assert names == ["pool"]
    assert all(m.training for m in model.modules())
    python_modules = [m for m in model.modules() if not isinstance(m, torch.jit.ScriptModule)]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in python_modules)
    torch.testing.assert_close(model.eval()(x), before)


def test_blaify_refuses_torchscript_and_compiled_models_by_name():
    from torchlap.models.bla import blaify

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(_resnet())
    # before: "RecursiveScriptModule has no global average pool"
    with pytest.raises(TypeError, match=r"TorchScript module .*blaify the nn.Module first"):
        blaify(scripted)
    with pytest.raises(TypeError, match=r"torch.compile wrapper .*blaify model._orig_mod"):
        blaify(torch.compile(_resnet()))


def test_a_stem_that_changes_the_channels_is_named_when_the_probe_fails():
    # a space-to-depth stem (as timm's TResNet): the first Conv2d takes 12 channels, the model 3
    model = nn.Sequential(
        nn.PixelUnshuffle(2), nn.Conv2d(12, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1)
    ).train()
    with pytest.raises(
        ValueError, match=r"12 channels are the in_channels of the first Conv2d, '1'"
    ):
        lapify(model, "global", input_size=32)
    assert all(m.training for m in model.modules())
    assert lapify(model, "global", input_size=(3, 32, 32))[1] == ["2"]


def test_a_predicate_answering_something_else_than_a_bool_is_refused():
    # before: "no" is truthy, every site was chosen and lapify said 'layer2.0.conv1' lies
    # inside 'layer2.0'
    model = _resnet()
    with pytest.raises(TypeError, match=r"predicate's answer for 'conv1' must be True or False"):
        lapify(model, lambda name, module: "no")
    assert not any(type(m).__name__.startswith("Lap") for m in model.modules())


class _StandardisedConv(nn.Conv2d):
    """A Conv2d subclass with its own forward, as timm's StdConv2d (weight standardisation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return self._conv_forward(
            x, weight / (weight.std(dim=(1, 2, 3), keepdim=True) + 1e-5), None
        )


def _standardised_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, 2, 1),
        nn.ReLU(),
        _StandardisedConv(8, 8, 3, 2, 1, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, 2, 1),
        nn.AdaptiveAvgPool2d(1),
    ).eval()


def test_a_conv2d_subclass_with_its_own_forward_is_never_made_a_plain_lap_conv(caplog):
    # before: replaced by LapConv2d, a plain nn.Conv2d at stride 1: the weight standardisation
    # was dropped in silence (timm's Conv2dSame lost its padding and the model failed later)
    model = _standardised_net()
    with pytest.raises(ValueError, match=r"cannot replace '4': _StandardisedConv is a Conv2d"):
        lapify(model, ["4", "7"])
    assert type(model[4]) is _StandardisedConv and type(model[7]) is nn.AdaptiveAvgPool2d
    names = lapify(model, "auto", input_size=32)[1]
    assert "4" not in names and type(model[4]) is _StandardisedConv
    assert names == ["6", "7"]
    assert "left ['4'] as they are" in caplog.text


class _SamePaddedMaxPool(nn.MaxPool2d):
    """As timm's MaxPool2dSame: pads each input to 'same' size before pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = max(
            (-(-x.shape[-1] // self.stride) - 1) * self.stride + self.kernel_size - x.shape[-1], 0
        )
        x = nn.functional.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=-1e9)
        return super().forward(x)


def test_a_pool_subclass_with_its_own_forward_is_left_alone():
    # before: replaced by a LAP without its 'same' padding: 16 px became 7 px instead of 8
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1), _SamePaddedMaxPool(3, 2), nn.Conv2d(8, 8, 3, 1, 1)
    ).eval()
    assert model(torch.randn(1, 3, 16, 16)).shape[-1] == 8
    with pytest.raises(ValueError, match=r"'1': _SamePaddedMaxPool is a MaxPool2d subclass"):
        lapify(model, ["1"])
    assert type(model[1]) is _SamePaddedMaxPool


def _strided_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 2, 1), nn.AdaptiveAvgPool2d(1)
    )


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (
            lambda m: nn.utils.parametrizations.spectral_norm(m[1]),
            r"'1': ParametrizedConv2d carries parametrizations of \['weight'\]",
        ),
        (lambda m: nn.utils.weight_norm(m[1]), r"'1': Conv2d carries forward pre hooks"),
        (lambda m: m[2].register_forward_hook(lambda *args: None), r"'2': .* forward hooks"),
    ],
)
def test_a_module_with_parametrizations_or_hooks_is_not_replaced_in_silence(setup, match):
    # before: spectral norm and weight norm (weight_g, weight_v) were dropped, the weight frozen
    # at its current value; a user's hook on the pool never ran again
    model = _strided_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm's deprecation
        setup(model)
    kinds = [type(m) for m in model]
    with pytest.raises(ValueError, match=match):
        lapify(model, ["1", "2"])
    assert [type(m) for m in model] == kinds
