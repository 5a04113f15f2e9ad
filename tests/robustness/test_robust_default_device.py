"""New tensors follow the inputs' device, never torch's default device.

A factory call without ``device=`` (``torch.zeros``, ``torch.tensor``, ``torch.rand``, ...)
lands on torch's *default* device, which a user may change (``torch.set_default_device("cuda")``,
or ``with torch.device("cuda"):``). Before: RISE's masks, LIME's patterns, the bootstrap
interval, the global threshold's subsample and the learned concept predictor drew from a CPU
generator into such a tensor (a CUDA default device refuses a CPU generator); ``miou_top20``,
the grid pointing game's quartiles and the evaluation's flat-map fill mixed one with the maps;
lapify and blaify drew their probe image from a CPU generator on the default device.

Here the default device is ``meta`` (it stands in for CUDA on a CPU-only machine: a meta tensor
has no values, so mixing one with the CPU inputs fails, and copying one out fails too), the
inputs are on the CPU, and every result must equal the one computed without the context.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import torchlap
from torchlap import explainers, layers, losses, metrics
from torchlap.evaluate.common import _flatten_nonfinite
from torchlap.metrics.grid_pointing import grid_pointing_summary
from torchlap.models import AnteHocModel
from torchlap.models.bla import blaify

SRC = Path(torchlap.__file__).parent
HOT_PACKAGES = ("explainers", "metrics", "losses", "layers", "evaluate")
FACTORIES = {
    "arange", "as_tensor", "empty", "empty_strided", "eye", "full", "linspace", "logspace",
    "ones", "rand", "randint", "randn", "randperm", "scalar_tensor", "tensor", "zeros",
}  # fmt: skip
#: (file, enclosing function) whose factory calls rightly take torch's default device: they
#: take no tensor whose device they could follow (module buffers as nn.Linear makes them; a
#: concept table built from Python values, moved by its user)
DEFAULT_DEVICE_ALLOWED = {
    ("metrics/lap_predictors.py", "__init__"),
    ("losses/concepts.py", "default"),
    ("losses/concepts.py", "from_mapping"),
}


def _factory_calls_without_device() -> list[tuple[str, str, int, str]]:
    found = []
    for package in HOT_PACKAGES:
        for path in sorted((SRC / package).glob("*.py")):
            tree = ast.parse(path.read_text())
            for function in ast.walk(tree):
                if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(function):
                    if (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "torch"
                        and node.func.attr in FACTORIES
                        and not any(k.arg == "device" for k in node.keywords)
                    ):
                        name = f"{package}/{path.name}"
                        found.append((name, function.name, node.lineno, node.func.attr))
    return found


def test_every_factory_call_on_the_hot_paths_names_its_device() -> None:
    calls = _factory_calls_without_device()
    left = [c for c in calls if (c[0], c[1]) not in DEFAULT_DEVICE_ALLOWED]
    assert not left, f"factory calls following torch's default device: {left}"
    # the allowance is not stale: each entry still names a function with such a call
    assert {(c[0], c[1]) for c in calls} == DEFAULT_DEVICE_ALLOWED


def _same(got: object, expected: object) -> None:
    """``got`` equals ``expected`` (tensors on the CPU, nested dicts/lists/MetricResults)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.device.type == "cpu"
        torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)
    elif isinstance(expected, metrics.MetricResult):
        assert got.n == expected.n and got.n_excluded == expected.n_excluded
        _same(got.per_sample, expected.per_sample)
        assert got.value == pytest.approx(expected.value, rel=0, abs=0, nan_ok=True)
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            _same(got[key], value)
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            _same(a, b)
    else:
        assert got == pytest.approx(expected, rel=0, abs=0, nan_ok=True)


def _tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    ).eval()


def _lap_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        layers.LocalAttentionPool2d(8, 2, n_concepts=2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        layers.AdaptiveLocalAttentionPool2d(8, 1, n_concepts=2),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    for module in model.modules():
        if isinstance(module, layers.LapBase):
            for conv in module.scorer.heads:
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=0.5)
    return model.eval()


def _inputs() -> dict[str, object]:
    """Every input on the CPU, built outside the meta context."""
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 16, 16, generator=g, dtype=torch.float64)
    maps[0, :4, :4] = maps[0].max()  # ties at the top
    masks = torch.rand(3, 16, 16, generator=g) > 0.6
    bad = maps.clone()
    bad[1, 2, 3] = float("nan")
    return {
        "maps": maps,
        "masks": masks,
        "bad_maps": bad,
        "images": torch.rand(3, 3, 16, 16, generator=g),
        "labels": torch.tensor([0, 1, 1]),
        "scores": torch.rand(12, generator=g, dtype=torch.float64),
        "others": torch.rand(12, generator=g, dtype=torch.float64),
        "probs": torch.rand(3, 4, 8, 8, generator=g).clamp(0.01, 0.99),
        "present": torch.rand(3, 4, generator=g) > 0.5,
        "cells": torch.arange(16).reshape(4, 4).repeat_interleave(4, 0).repeat_interleave(4, 1),
        "features": torch.rand(3, 4, generator=g),
        "generator_seed": 3,
        "vanilla": _tiny_cnn(),
        "lap": _lap_cnn(),
        "predictors": [_predictor(), _predictor()],
    }


def _predictor() -> metrics.LearnedConceptPredictor:
    torch.manual_seed(0)
    return metrics.LearnedConceptPredictor(4, 2, hidden_features=4, epochs=2, batch_size=2)


def _fit_predictor(x: dict) -> torch.Tensor:
    predictor = x["predictors"].pop()  # a module made outside the context: its own device
    predictor.fit(x["features"], x["labels"])
    return predictor.predict_top_k(x["features"], k=2)


def _lime(x: dict) -> torch.Tensor:
    from torchlap.metrics.lime_faithfulness import lime_cell_scores

    return lime_cell_scores(x["vanilla"], x["images"][:2], x["cells"], n_samples=16)


CASES: dict[str, Callable[[dict], object]] = {
    "localization_metrics": lambda x: metrics.localization_metrics(
        x["maps"], x["masks"], threshold=0.5, normalize=True
    ),
    "fit_global_threshold": lambda x: metrics.fit_global_threshold(
        x["maps"] + x["masks"],
        x["masks"],
        max_pixels=300,  # maps higher inside the regions
    ),
    "top_k_mask random": lambda x: metrics.top_k_mask(
        x["maps"], 20, tie_break="random", generator=torch.Generator().manual_seed(1)
    ),
    "bootstrap_interval": lambda x: metrics.bootstrap_interval(x["scores"], resamples=50),
    "paired_difference": lambda x: metrics.paired_difference(
        x["scores"], x["others"], resamples=50
    ),
    "concept_sum_rule": lambda x: metrics.concept_sum_rule(x["probs"], [[0, 1], [2, 3]]),
    "LearnedConceptPredictor": _fit_predictor,
    "lime_scores": _lime,
    "grid_pointing_summary": lambda x: grid_pointing_summary(
        x["scores"], x["present"][:, 0], (2, 2)
    ),
    "keep_top_k": lambda x: metrics.keep_top_k(
        x["vanilla"], x["images"], x["maps"].float(), x["labels"], ks=(10, 50), tie_draws=2
    ),
    "drop_increase": lambda x: metrics.drop_increase(
        x["vanilla"], x["images"], x["maps"].float(), x["labels"], baseline="blur"
    ),
    "concept_discrimination_loss": lambda x: losses.concept_discrimination_loss(
        x["probs"], x["present"]
    ),
    "expert_supervision_loss": lambda x: losses.expert_supervision_loss(
        x["probs"], x["masks"], x["present"], torch.ones(3, dtype=torch.bool, device="cpu")
    ),
    "suggest_ratios": lambda x: losses.suggest_ratios(x["scores"] * 0.5 + 0.1),
    "flat maps of the evaluation": lambda x: _flatten_nonfinite(x["bad_maps"]),
    "lap_all": lambda x: explainers.lap_all([x["maps"], x["maps"][:, ::2, ::2]]),
    "sise_fusion": lambda x: explainers.sise_fusion(torch.stack([x["maps"], x["maps"] ** 2])),
    "rise_masks": lambda x: explainers.rise_masks(6, (16, 16), grid_size=4, seed=2),
    "lap layer": lambda x: x["lap"](x["images"]),
}
for _method in ("rise", "scorecam", "sise", "gradcam", "deeplift"):
    CASES[f"explain {_method}"] = lambda x, m=_method: explainers.explain(
        x["vanilla"], x["images"], m, x["labels"], **({"n_masks": 12} if m == "rise" else {})
    )
CASES["explain lap"] = lambda x: explainers.explain(
    x["lap"], x["images"], "lap", x["labels"], concept_sets={0: [0], 1: [1]}
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_results_do_not_depend_on_the_default_device(case: str) -> None:
    inputs = _inputs()
    expected = CASES[case](inputs)
    with torch.device("meta"):
        got = CASES[case](inputs)
    _same(got, expected)


@pytest.mark.parametrize("method", ["bla", "antehoc"])
def test_peer_explainers_do_not_depend_on_the_default_device(method: str) -> None:
    torch.manual_seed(0)
    if method == "bla":
        model, _ = blaify(_tiny_cnn(), input_size=16, init="glorot", k=4)
    else:
        model = AnteHocModel(_tiny_cnn(), eta=2)
    model.eval()
    images = _inputs()["images"]
    expected = explainers.explain(model, images, method)
    with torch.device("meta"):
        got = explainers.explain(model, images, method)
    _same(got, expected)


@pytest.mark.parametrize("rebuild", ["lapify", "blaify"])
def test_rebuilding_a_model_does_not_depend_on_the_default_device(rebuild: str) -> None:
    """lapify and blaify probe the model with a seeded random image drawn on the host (before:
    drawn on the default device, where a CUDA default refuses the CPU generator)."""

    def build(model: nn.Module) -> nn.Module:
        torch.manual_seed(1)
        if rebuild == "lapify":
            return torchlap.lapify(model, input_size=16)[0]
        return blaify(model, input_size=16, init="glorot", k=4)[0]

    expected = build(_tiny_cnn())
    model = _tiny_cnn()  # on the CPU
    with torch.device("meta"):
        got = build(model)
    assert [type(m) for m in got.modules()] == [type(m) for m in expected.modules()]
    shapes = {k: (v.shape, v.device.type) for k, v in got.state_dict().items()}
    assert shapes == {k: (v.shape, "cpu") for k, v in expected.state_dict().items()}
    # the same weights give the same outputs (the initial weights differ: lapify checks its
    # options on a throwaway layer whose initial weights draw from the global generator on the
    # default device, which outside the context shifts the later draws)
    got.load_state_dict(expected.state_dict())
    images = _inputs()["images"]
    _same(got.eval()(images), expected.eval()(images))
