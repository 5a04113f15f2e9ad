"""The units of the model-parameter randomization test (Adebayo et al. 2018, section 3) and
their re-initialisation, at the edges the other sanity tests do not reach: PyTorch's default
initialisation written out for a module without ``reset_parameters``, a module holding only
running statistics, units that did not run or are never called themselves, a unit whose
modules run on both sides of another unit, the probe pass's eval mode, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from torchlap.evaluate import EvaluateOptions
from torchlap.evaluate.sanity import (
    randomization_units,
    randomize_unit,
    randomized_models,
    sanity_check,
)
from torchlap.models import lapify
from torchlap.train.wrapping import NormalizedClassifier, SmallCNN


def _names(model: nn.Module, sample: Tensor, granularity: str = "block") -> list[str]:
    return [unit.name for unit in randomization_units(model, sample, granularity)]


def _shifted(model: nn.Module) -> nn.Module:
    """``model`` with every parameter moved away from any initialisation ("trained")."""
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.5 + torch.rand(param.shape, generator=generator))
    return model.eval()


class _Plain(nn.Module):
    """A layer without ``reset_parameters``: a 2-D weight, a conv-shaped weight, a bias, a
    one-element offset and a scalar sharpness, registered in that order."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((4, 6), 3.0))
        self.kernel = nn.Parameter(torch.full((2, 3, 2, 5), 3.0))
        self.bias = nn.Parameter(torch.full((7,), 3.0))
        self.offset = nn.Parameter(torch.full((1,), 3.0))
        self.alpha = nn.Parameter(torch.tensor(3.0))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.T * self.alpha + self.bias[:4] + self.kernel.sum() + self.offset


def test_a_layer_without_reset_parameters_gets_pytorchs_default_initialisation() -> None:
    # Kaiming-uniform with a = sqrt(5): bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 +
    # a^2)), fan_in = the size of dimension 1 times the kernel's size; a vector U(-1/sqrt(n),
    # 1/sqrt(n)); a scalar kept; the draws in the parameters' order after manual_seed(seed)
    model = nn.Sequential(_Plain())
    (unit,) = randomization_units(model, torch.rand(1, 6))
    assert unit.name == "0" and unit.modules == ("0",)
    randomize_unit(model, unit, seed=5)
    gain = math.sqrt(2.0 / (1.0 + 5.0))
    torch.manual_seed(5)
    expected = {}
    for name, shape, fan_in in (("weight", (4, 6), 6), ("kernel", (2, 3, 2, 5), 3 * 2 * 5)):
        bound = gain * math.sqrt(3.0 / fan_in)
        expected[name] = torch.empty(shape).uniform_(-bound, bound)
    expected["bias"] = torch.empty(7).uniform_(-1 / math.sqrt(7), 1 / math.sqrt(7))
    expected["offset"] = torch.empty(1).uniform_(-1.0, 1.0)
    layer = model[0]
    for name, value in expected.items():
        torch.testing.assert_close(getattr(layer, name).detach(), value, rtol=0, atol=0)
    assert layer.alpha.item() == 3.0


def test_a_module_holding_only_running_statistics_is_reset_with_its_unit() -> None:
    # a batch norm without affine parameters owns no parameter, only its running statistics:
    # it is re-initialised (statistics reset) with the block holding it
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(2, affine=False)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Sequential(nn.Conv2d(2, 2, 1), norm),
                          nn.Flatten(), nn.Linear(2 * 3 * 3, 3))  # fmt: skip
    model.train()
    model(torch.rand(4, 3, 5, 5))  # running statistics away from (0, 1)
    model.eval()
    units = randomization_units(model, torch.rand(1, 3, 5, 5))
    assert [u.name for u in units] == ["0", "1", "3"] and units[1].modules == ("1.0", "1.1")
    for name, copy_ in randomized_models(model, units, mode="independent"):  # one copy, reused
        statistics = (copy_[1][1].running_mean, copy_[1][1].running_var)
        reset = name == "1"
        assert torch.equal(statistics[0], torch.zeros(2)) is reset, name
        assert torch.equal(statistics[1], torch.ones(2)) is reset, name
    assert not torch.equal(norm.running_mean, torch.zeros(2))  # the model's own are kept


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.spare = nn.Linear(4, 4)  # never called
        self.fc = nn.Linear(2 * 3 * 3, 3)
        self.extra = nn.Linear(3, 3)  # never called

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).flatten(1))


def test_units_that_did_not_run_come_first_in_module_order() -> None:
    # so the cascade (from the last unit down) randomizes them last
    assert _names(_Unused(), torch.rand(1, 3, 5, 5)) == ["spare", "extra", "conv", "fc"]


class _Listed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * 5 * 5, 3)  # registered first, called last
        self.stages = nn.ModuleList([nn.Conv2d(2, 2, 3, padding=1) for _ in range(2)])
        self.stem = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages:  # the ModuleList itself is never called
            x = stage(x)
        return self.fc(x.flatten(1))


def test_a_unit_never_called_itself_is_placed_by_its_modules() -> None:
    assert _names(_Listed(), torch.rand(1, 3, 5, 5)) == ["stem", "stages", "fc"]


class _Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 2, 3, padding=1)
        self.second = nn.Conv2d(2, 2, 3, padding=1)


class _Interleaved(nn.Module):
    """``pair.first``, then ``middle``, then ``pair.second``."""

    def __init__(self) -> None:
        super().__init__()
        self.middle = nn.Conv2d(2, 2, 3, padding=1)
        self.pair = _Pair()
        self.fc = nn.Linear(2 * 5 * 5, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pair.second(self.middle(self.pair.first(x)))
        return self.fc(x.flatten(1))


def test_a_unit_is_placed_at_the_first_call_of_its_modules() -> None:
    assert _names(_Interleaved(), torch.rand(1, 3, 5, 5)) == ["pair", "middle", "fc"]


class _Scaled(nn.Module):
    """Owns a parameter next to a single child with parameters: not a mere wrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.body = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) * self.scale


class _Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _Scaled()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def test_an_opened_module_owning_parameters_is_a_unit_and_its_single_child_stays_whole() -> None:
    # the wrapper's single child is opened; the child owns a parameter, so it is a unit and
    # its own single child (a Sequential of layers, not of blocks) is one unit, not opened
    assert _names(_Wrapper(), torch.rand(1, 3, 5, 5)) == ["net", "net.body"]


@pytest.mark.parametrize("granularity", ["block", "layer"])
def test_full_cascading_randomization_reinitialises_every_weight(granularity: str) -> None:
    # every parameter but a scalar (LAP's sharpness) differs from the trained one at the last
    # cascading step; LAP's concept heads are re-initialised with the LAP layer's unit
    torch.manual_seed(7)
    net = SmallCNN(3, width=4)
    lapify(net)
    models = {
        "lap": _shifted(NormalizedClassifier(net, [0.5] * 3, [0.25] * 3)),
        "scaled": _shifted(_Wrapper()),
    }
    samples = {"lap": torch.rand(1, 3, 16, 16), "scaled": torch.rand(1, 3, 5, 5)}
    for key, model in models.items():
        units = randomization_units(model, samples[key], granularity)
        *_, (_, last) = randomized_models(model, units, mode="cascading")
        trained = dict(model.named_parameters())
        for name, param in last.named_parameters():
            if param.dim():
                assert not torch.equal(param, trained[name]), (key, granularity, name)
            else:
                assert torch.equal(param, trained[name]), (key, granularity, name)
    units = randomization_units(models["lap"], samples["lap"], granularity)
    lap_unit = next(u for u in units if u.name == "net.layer3.pool")
    assert "net.layer3.pool.scorer.heads.0" in lap_unit.modules


def test_the_probe_pass_runs_in_eval_mode() -> None:
    # a batch norm after the pooling sees one value per channel for one image: only eval mode
    # accepts that batch (training mode raises)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.BatchNorm1d(4), nn.Linear(4, 2))  # fmt: skip
    model.train()
    assert _names(model, torch.rand(1, 3, 5, 5)) == ["0", "3", "4"]
    assert model.training


def test_a_model_that_is_no_module_or_has_no_parameters_is_refused() -> None:
    with pytest.raises(TypeError, match=r"model must be an nn\.Module, got str"):
        randomization_units("resnet18", torch.rand(1, 3, 5, 5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Sequential has no parameters to randomize"):
        randomization_units(nn.Sequential(nn.ReLU(), nn.Flatten()), torch.rand(1, 3, 5, 5))


def test_bad_randomization_options_are_refused_before_the_model_is_copied() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    units = randomization_units(model, torch.rand(1, 3))
    for options, error, message in (
        (dict(mode="both"), ValueError, r"mode must be one of \('cascading', 'independent'\), "
         r"got 'both'"),
        (dict(reseed="never"), ValueError, r"reseed must be one of \('per_unit', 'fixed'\)"),
        (dict(seed=True), TypeError, r"seed must be an int, got True"),
        (dict(seed=1.0), TypeError, r"seed must be an int, got 1\.0"),
    ):  # fmt: skip
        with pytest.raises(error, match=message):
            next(randomized_models(model, units, **options))


def _changed(model: nn.Module, copy_: nn.Module) -> set[str]:
    trained = dict(model.named_parameters())
    return {n for n, p in copy_.named_parameters() if not torch.equal(p, trained[n])}


def test_an_independent_layer_step_changes_only_that_layers_own_parameters() -> None:
    # granularity="layer": a module owning a parameter next to children with parameters (and
    # no reset_parameters) is re-initialised alone, its children keep their trained weights
    model = _shifted(_Wrapper())
    units = randomization_units(model, torch.rand(1, 3, 5, 5), "layer")
    assert [u.name for u in units] == ["net", "net.body.0", "net.body.3"]
    steps = {}
    for name, copy_ in randomized_models(model, units, mode="independent"):
        steps[name] = _changed(model, copy_)
    assert steps == {
        "net": {"net.scale"},
        "net.body.0": {"net.body.0.weight", "net.body.0.bias"},
        "net.body.3": {"net.body.3.weight", "net.body.3.bias"},
    }


def test_an_independent_block_step_changes_only_that_blocks_parameters() -> None:
    """Before metrics revision 14 the unit ``net`` (own ``scale`` next to its body) also
    re-initialised every unit under it."""
    model = _shifted(_Wrapper())
    units = randomization_units(model, torch.rand(1, 3, 5, 5))
    steps = {}
    for name, copy_ in randomized_models(model, units, mode="independent"):
        steps[name] = _changed(model, copy_)
    assert steps["net"] == {"net.scale"}


def test_the_default_seed_is_zero() -> None:
    model = _shifted(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))
    units = randomization_units(model, torch.rand(1, 3))

    def weights(**seed: int) -> Tensor:
        ((_, copy_),) = randomized_models(model, units, **seed)
        return copy_[1].weight.detach().clone()

    assert torch.equal(weights(), weights(seed=0)) and not torch.equal(weights(), weights(seed=1))


class _Tempered(nn.Module):
    """A root that owns a parameter (a temperature) next to its layers."""

    def __init__(self) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(3))
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(18, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).flatten(1)) * self.temperature


def test_full_block_cascade_reinitialises_a_parameter_the_root_owns() -> None:
    """Before metrics revision 14 the root's own parameters were in no block unit."""
    model = _shifted(_Tempered())
    units = randomization_units(model, torch.rand(1, 3, 5, 5))
    *_, (_, last) = randomized_models(model, units, mode="cascading")
    assert "temperature" in _changed(model, last)


def test_the_default_pass_threshold_is_the_evaluate_options_default() -> None:
    # torchlap's own number (the paper gives none): 0.5, the same for the library function and
    # for `torchlap evaluate --sanity`; a map that does not depend on the weights fails at it
    model = nn.Sequential(nn.Flatten(), nn.Linear(27, 2))

    def weightless(_: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return images.sum(1)

    images = torch.rand(2, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    result = sanity_check(model, images, torch.tensor([0, 1]), weightless, modes=("cascading",))
    assert result["threshold"] == EvaluateOptions().sanity_threshold == 0.5
    assert result["summary"]["spearman_abs"] == 1.0 and result["passed"] is False
