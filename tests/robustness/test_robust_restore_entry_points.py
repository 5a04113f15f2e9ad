"""Every library entry point that runs a user's model gives it back as it found it, whatever
stops it: the model's forward raising at its call N (N = 1, 2, 3: before, between and inside
the entry point's later passes), or a KeyboardInterrupt from a user's hook at its call N. The
model has LAP layers (their last maps must stay the caller's), half its submodules in eval
mode, every third parameter frozen, and accumulated gradients; afterwards each submodule has
its own flags, hooks, parameters (``requires_grad``, values, ``.grad``), buffers (batch-norm
running statistics: a probe in train mode would update them) and children again, and the
process its grad mode, random state, threads, environment and global hooks. The explainers
are held to the same by test_robust_restore.py; this table covers the other entry points."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import torch
from restore_state import (
    BoomError,
    RaisesOnCall,
    assert_process_same,
    assert_same,
    freeze_some,
    interrupt_from_a_hook,
    mixed_flags,
    model_state,
    process_state,
)
from torch import nn

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d, explainers

IMAGES = 4
SIDE = 16


def faulty_cnn(fault: str) -> nn.Sequential:
    """A small classifier with two LAP layers; ``fault == "forward"``: with a module that can
    raise inside a forward pass (after the first convolution, batch norm and LAP layer)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        LocalAttentionPool2d(8, 2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.2),
        AdaptiveLocalAttentionPool2d(8, 1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ]
    if fault == "forward":
        layers.insert(4, RaisesOnCall(ok=10**6))  # the test arms it: ok = at - 1
    return nn.Sequential(*layers)


def _gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return explainers.GradCam(model)(images, targets)


def entry_points() -> dict[str, Callable[[nn.Module], object]]:
    """name -> a call of the entry point on a model (its inputs drawn here, before the state
    is read)."""
    from torchlap.bench.explain import run_benchmark
    from torchlap.data.grid import build_grid_set, confident_images
    from torchlap.evaluate.common import EvalData
    from torchlap.evaluate.lap_predictors import lap_predictor_results
    from torchlap.evaluate.sanity import randomization_units, sanity_check
    from torchlap.explainers import explain, probe_features
    from torchlap.metrics import drop_inc_win, drop_increase, keep_top_k, stability
    from torchlap.metrics.lime_faithfulness import (
        lime_cell_scores,
        lime_spearman,
        patch_feature_mask,
    )

    generator = torch.Generator().manual_seed(1)
    images = torch.rand(IMAGES, 3, SIDE, SIDE, generator=generator)
    labels = torch.tensor([0, 1, 2, 0])
    maps = torch.rand(IMAGES, SIDE, SIDE, generator=generator)
    mask = patch_feature_mask(SIDE, SIDE, 8, images.device)
    regions = torch.zeros(IMAGES, SIDE, SIDE, dtype=torch.bool)
    split = EvalData(images, labels, regions, regions.flatten(1).any(1), ["a", "b", "c"], "t")
    return {
        "probe_features": lambda m: probe_features(m, images[:1], []),
        "explain": lambda m: explain(m, images, "gradcam"),
        "check_layers": lambda m: explainers.GradCam(m).check_layers(images),
        "lime_cell_scores": lambda m: lime_cell_scores(m, images[:2], mask, n_samples=8),
        "lime_spearman": lambda m: lime_spearman(m, images[:2], maps[:2], patch=8, n_samples=8),
        "build_grid_set": lambda m: build_grid_set(
            m, images, labels, 3, shape=(1, 2), n_grids=1, min_confidence=0.0
        ),
        "randomization_units": lambda m: randomization_units(m, images[:1]),
        "sanity_check": lambda m: sanity_check(m, images[:2], labels[:2], _gradcam),
        "lap_predictor_results": lambda m: lap_predictor_results(
            m, split, split, labels, None, batch_size=2, device=torch.device("cpu")
        ),
        "drop_increase": lambda m: drop_increase(m, images, maps, labels),
        "keep_top_k": lambda m: keep_top_k(m, images, maps, labels, ks=(10,)),
        "drop_inc_win": lambda m: drop_inc_win(m, images, maps, labels),
        "stability": lambda m: stability(
            m, lambda x, y: explainers.GradCam(m)(x, y), images, labels, fractions=(0.1,)
        ),
        "confident_images": lambda m: confident_images(m, images, labels),
        "run_benchmark": lambda m: run_benchmark(
            sizes=(SIDE,), batch_size=2, methods=["gradcam"], repeats=1, rounds=1, model=m
        ),
    }


@pytest.mark.parametrize("entry", sorted(entry_points()))
@pytest.mark.parametrize(
    ("fault", "at"),
    [("forward", 1), ("forward", 2), ("forward", 3), ("interrupt", 1), ("interrupt", 3)],
)
def test_entry_points_give_the_model_and_the_process_back(entry: str, fault: str, at: int) -> None:
    model = freeze_some(mixed_flags(faulty_cnn(fault)))
    with torch.no_grad():  # the caller's last maps, which must stay
        model(torch.rand(1, 3, SIDE, SIDE))
    for parameter in model.parameters():  # gradients the caller accumulated: left alone
        if parameter.requires_grad:
            parameter.grad = torch.full_like(parameter, 0.5)
    if fault == "forward":
        model[4].ok, model[4].calls = at - 1, 0  # the faults start now
    else:
        interrupt_from_a_hook(model, at)
    run = entry_points()[entry]
    before, process = model_state(model), process_state()
    try:
        run(model)
        outcome = "ran"
    except (BoomError, KeyboardInterrupt, ValueError) as error:  # ValueError: too few
        # confidently classified images for a grid (after the confidence pass ran)
        outcome = type(error).__name__
    assert_same(before, model_state(model))
    assert_process_same(process, process_state())
    if at == 1:  # every entry point runs the model (or a copy of it) at least once
        assert outcome != "ran"


class TrainRaises(nn.Module):
    """A user's module whose own ``train(False)`` raises (after its parent and the modules
    before it were switched to eval mode by ``model.eval()``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def train(self, mode: bool = True) -> TrainRaises:
        if not mode:
            raise BoomError("this module refuses eval mode")
        return super().train(mode)


@pytest.mark.parametrize("entry", sorted(entry_points()))
def test_a_train_override_raising_in_eval_leaves_every_flag_as_it_was(entry: str) -> None:
    """Entry points that switch the model with ``model.eval()``: a submodule's ``train()``
    raising halfway (its parent and earlier siblings already switched) leaves every flag as
    the caller had it. Before: the LIME metrics' ``EvalMode`` saved the flags but restored
    them only in ``__exit__``, which a failing ``__enter__`` never reaches."""
    model = faulty_cnn("none")
    model.insert(3, TrainRaises())
    model = freeze_some(mixed_flags(model))
    run = entry_points()[entry]
    before, process = model_state(model), process_state()
    with contextlib.suppress(BoomError, ValueError):
        run(model)
    assert_same(before, model_state(model))
    assert_process_same(process, process_state())
