"""lapify's arguments: its defaults are the LAP layer's, bad ones are refused before any work
(no dry forward pass, the model unchanged), and the pool sites whose function changes say so."""

from __future__ import annotations

import inspect
import logging

import pytest
from torch import nn

from torchlap import lapify
from torchlap.layers import LapBase, LocalAttentionPool2d

LAP_OPTIONS = ("n_concepts", "hidden_channels", "aggregation", "alpha", "eps", "head_hidden")


def small_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2)
    ).eval()


def count_forwards(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_the_defaults_are_the_lap_layers_and_the_model_is_changed_in_place():
    layer = inspect.signature(LocalAttentionPool2d).parameters
    function = inspect.signature(lapify).parameters
    for name in LAP_OPTIONS:
        assert function[name].default == layer[name].default, name
    model = small_model()
    returned, names = lapify(model, where=["3"])
    assert returned is model and names == ["3"]
    lap, fresh = model[3], LocalAttentionPool2d(4, 2)
    assert isinstance(lap, LocalAttentionPool2d)
    assert (lap.n_concepts, lap.eps, float(lap.alpha.detach())) == (
        fresh.n_concepts,
        fresh.eps,
        float(fresh.alpha.detach()),
    )
    assert [type(m) for m in lap.modules()] == [type(m) for m in fresh.modules()]
    assert [p.shape for p in lap.parameters()] == [p.shape for p in fresh.parameters()]
    (entry,) = model.torchlap_config["lapify"]
    assert {k: entry[k] for k in LAP_OPTIONS} == {k: layer[k].default for k in LAP_OPTIONS}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(n_concepts=0), ValueError, "n_concepts"),
        (dict(alpha=float("nan")), ValueError, "alpha"),
        (dict(aggregation="median"), ValueError, "aggregation"),
        (dict(inplace="yes"), TypeError, "inplace must be a bool, got 'yes'"),
        (dict(input_size=0), ValueError, "input_size entries must be positive"),
        (dict(input_size=(1, 2, 3, 4)), TypeError, "input_size must be an int"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
@pytest.mark.parametrize("where", ["auto", ["3"]])
def test_bad_arguments_are_refused_before_any_forward_and_change(kwargs, error, match, where):
    model = small_model()
    calls = count_forwards(model)
    with pytest.raises(error, match=match):
        lapify(model, where=where, **kwargs)
    assert calls[0] == 0
    assert not any(isinstance(m, LapBase) for m in model.modules())
    assert not hasattr(model, "torchlap_config")


def test_what_is_not_a_model_is_refused():
    with pytest.raises(TypeError, match=r"model must be an nn\.Module, got object"):
        lapify(object(), where="global")
    with pytest.raises(TypeError, match=r"model must be an nn\.Module, got str"):
        lapify("resnet18")


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        (nn.AvgPool2d(2, divisor_override=3), "divisor_override is dropped"),
        (nn.AvgPool2d(3, 1, 1), "AvgPool2d counts padding, LAP does not"),
    ],
)
def test_avg_pools_whose_function_changes_say_so(pool, message, caplog):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), pool)
    with caplog.at_level(logging.INFO, logger="torchlap"):
        lapify(model, where=["1"])
    assert f"1: {message}" in caplog.text


@pytest.mark.parametrize(
    "pool",
    [
        nn.AvgPool2d(2),
        nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        nn.AvgPool2d(2, ceil_mode=True),
        nn.MaxPool2d(2),
    ],
    ids=["plain", "padding-not-counted", "ceil", "max"],
)
def test_exact_avg_pools_log_nothing_about_a_change(pool, caplog):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), pool)
    with caplog.at_level(logging.INFO, logger="torchlap"):
        lapify(model, where=["1"])
    assert "divisor_override" not in caplog.text and "counts padding" not in caplog.text


@pytest.mark.parametrize("dilation", [2, (2, 1), (1, 2)], ids=str)
def test_a_dilated_max_pool_is_refused_on_either_axis(dilation):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2, dilation=dilation))
    with pytest.raises(ValueError, match=r"1: a dilated max pool .* has no LAP equivalent"):
        lapify(model, where=["1"])
    assert type(model[1]) is nn.MaxPool2d


@pytest.mark.parametrize("dilation", [1, (1, 1)], ids=str)
def test_an_undilated_max_pool_is_replaced_whatever_the_spelling(dilation):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2, dilation=dilation))
    assert lapify(model, where=["1"])[1] == ["1"] and isinstance(model[1], LapBase)
