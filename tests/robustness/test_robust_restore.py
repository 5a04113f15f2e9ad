"""Every explainer gives the model and the process back as it found them, on every exit path.

A model whose forward raises midway, a target whose backward raises, a KeyboardInterrupt from
a user's hook: afterwards each submodule has its own train/eval and in-place flags again (a
model with some submodules in eval mode and others in train mode comes back exactly so), the
user's hooks and no other, the same parameters (objects, values, ``requires_grad``: every
third one is frozen), buffers, children and attributes, and the process its grad mode, torch
function modes, default dtype, threads, deterministic flag, autocast state and random state.
The library calls that run a user's model (the metrics, the data grid's confidence pass,
lapify's and blaify's dry passes, the batch-norm folding, the ante-hoc second pass) are held
to the same on a KeyboardInterrupt; test_robust_restore_entry_points.py covers the others.
The state compared and the faults injected: restore_state.py."""

from __future__ import annotations

import pytest
import torch
from restore_state import (
    BackwardRaisesForClassOne,
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
from torchlap.models.antehoc import AnteHocModel
from torchlap.models.bcos import bcos_available, build_bcos
from torchlap.models.bla import blaify

FAST = {
    "rise": {"n_masks": 8, "mask_batch_size": 2},
    "scorecam": {"mask_batch_size": 8},
    "sise": {"mu": 0.5},
}
#: every method of the comparison (LAP and the eight post-hoc methods), from the registry, so a
#: method added there is checked here too
COMPARISON = explainers.comparison_methods()


def lap_cnn(fault: str, at: int) -> nn.Sequential:
    torch.manual_seed(0)
    relu = nn.ReLU(inplace=True)  # one module run twice: DeepLIFT swaps in per-call copies
    layers = [
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        relu,
        LocalAttentionPool2d(8, 2),
        nn.Conv2d(8, 8, 3, padding=1),
        relu,
        nn.Dropout(0.2),
        AdaptiveLocalAttentionPool2d(8, 1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ]
    if fault == "forward":
        layers.insert(6, RaisesOnCall(ok=at - 1))
    if fault == "backward":
        layers.append(BackwardRaisesForClassOne())
    return nn.Sequential(*layers)


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def peer_model(method: str) -> nn.Module:
    if method == "bla":
        return blaify(tiny_cnn(), input_size=16, k=4)[0]
    if method == "antehoc":
        return AnteHocModel(tiny_cnn(), eta=2)
    return build_bcos("resnet18", 3, in_channels=3)


def explain_and_check(model: nn.Module, method: str, target: int | None, **options) -> str:
    images = torch.rand(2, 3, 16, 16)
    explainer = explainers.get(method)(model, **{**FAST.get(method, {}), **options})
    for parameter in model.parameters():  # gradients the caller accumulated: left alone
        if parameter.requires_grad:
            parameter.grad = torch.full_like(parameter, 0.5)
    before, process = model_state(model), process_state()
    try:
        explainer(images, target)
        outcome = "ran"
    except (BoomError, KeyboardInterrupt) as error:
        outcome = type(error).__name__
    assert_same(before, model_state(model))
    assert_process_same(process, process_state())
    return outcome


# explained by one forward pass (guided backprop: its target read from the same one): no call 2
ONE_FORWARD = {"lap", "guided_backprop", "bla", "antehoc", "bcos"}
# call 5 is one of their masked forwards (after the probes, with batch norms folded in eval)
MASKED = {"scorecam", "rise", "sise"}
# call 5 is Relevance-CAM's own forward, after the layer's probe and its first call's three
# canonizer probes (the plain logits, the batch-norm pairs, the canonized logits)
PROBED = {"relevance_cam"}
DIFFERENTIATE = {
    "gradcam",
    "guided_gradcam",
    "guided_backprop",
    "deeplift",
    "relevance_cam",
    "sise",
}


@pytest.mark.parametrize("method", COMPARISON)
@pytest.mark.parametrize(
    ("fault", "at"),
    [
        ("forward", 1),
        ("forward", 2),
        ("forward", 5),
        ("backward", 1),
        ("interrupt", 1),
        ("interrupt", 2),
        ("interrupt", 5),
    ],
)
@pytest.mark.parametrize("flags", ["mixed", "eval"])
def test_the_model_and_the_process_come_back_as_they_were(
    method: str, fault: str, at: int, flags: str
) -> None:
    """``forward``: the model raises midway through its forward pass number ``at`` (the first
    layers ran, the method's hooks fired; 5: in the perturbation methods' masked forwards);
    ``backward``: target 1, whose logit's gradient raises; ``interrupt``: a user's hook raises
    KeyboardInterrupt at its call ``at``. ``flags``: half the submodules in eval mode, or all
    (the perturbation methods then fold the batch norms into the convolutions for their
    masked forwards)."""
    model = lap_cnn(fault, at)
    if fault == "interrupt":
        interrupt_from_a_hook(model, at)
    model = freeze_some(mixed_flags(model) if flags == "mixed" else model.eval())
    outcome = explain_and_check(model, method, 1 if fault == "backward" else None)
    if fault == "backward":
        assert outcome == ("BoomError" if method in DIFFERENTIATE else "ran")
    elif (at == 2 and method in ONE_FORWARD) or (at == 5 and method not in MASKED | PROBED):
        assert outcome == "ran"
    else:
        assert outcome == ("BoomError" if fault == "forward" else "KeyboardInterrupt")


@pytest.mark.parametrize("method", sorted(MASKED))
@pytest.mark.parametrize("fault", ["forward", "interrupt"])
def test_masked_forwards_in_bfloat16_leave_autocast_off(method: str, fault: str) -> None:
    """The masked forwards run under autocast, batch norms folded: a fault in one of them
    (call 5) leaves autocast as it was, the model unfolded."""
    model = lap_cnn(fault, 5)
    if fault == "interrupt":
        interrupt_from_a_hook(model, 5)
    outcome = explain_and_check(model.eval(), method, None, precision="bfloat16")
    assert outcome == ("BoomError" if fault == "forward" else "KeyboardInterrupt")


@pytest.mark.parametrize("method", ["bla", "antehoc", "bcos"])
@pytest.mark.parametrize("fault", ["none", "interrupt"])
def test_the_peers_models_come_back_as_they_were(method: str, fault: str) -> None:
    if method == "bcos" and not bcos_available():  # pragma: no cover - the extra is installed
        pytest.skip("the bcos extra is not installed")
    model = peer_model(method)
    if fault == "interrupt":
        interrupt_from_a_hook(model, 1)
    outcome = explain_and_check(freeze_some(mixed_flags(model)), method, None)
    assert outcome == ("ran" if fault == "none" else "KeyboardInterrupt")


def _library_calls() -> dict:
    from torchlap.data.grid import confident_images
    from torchlap.metrics import drop_inc_win, drop_increase, keep_top_k, stability
    from torchlap.metrics.lime_faithfulness import lime_patch_scores
    from torchlap.models import lapify
    from torchlap.models.folding import folded_batch_norms

    images, labels, maps = (
        torch.rand(4, 3, 16, 16),
        torch.tensor([0, 1, 2, 0]),
        torch.rand(4, 16, 16),
    )

    def folded(model: nn.Module) -> None:
        with folded_batch_norms(model, images[:1]):
            model(images)

    return {
        "drop_increase": lambda m: drop_increase(m, images, maps, labels),
        "keep_top_k": lambda m: keep_top_k(m, images, maps, labels, ks=(10,)),
        "drop_inc_win": lambda m: drop_inc_win(m, images, maps, labels),
        "stability": lambda m: stability(
            m, lambda x, y: explainers.GradCam(m)(x, y), images, labels, fractions=(0.1,)
        ),
        "lime": lambda m: lime_patch_scores(m, images[:1], patch=8, n_samples=8),
        "confident_images": lambda m: confident_images(m, images, labels),
        "lapify": lambda m: lapify(m, input_size=16),
        "blaify": lambda m: blaify(m, input_size=16),
        "folded_batch_norms": folded,
    }


@pytest.mark.parametrize("call", sorted(_library_calls()))
@pytest.mark.parametrize("flags", ["mixed", "eval"])
def test_library_calls_that_run_the_model_give_it_back_on_an_interrupt(
    call: str, flags: str
) -> None:
    """Metrics, the data grid's confidence pass, lapify's and blaify's dry passes and the
    batch-norm folding, with a KeyboardInterrupt from a user's hook in the first forward:
    the model as it was (flags of each submodule, hooks, weights, children) and the process."""
    model = tiny_cnn()
    interrupt_from_a_hook(model, 1)
    model = freeze_some(mixed_flags(model) if flags == "mixed" else model.eval())
    run = _library_calls()[call]  # its inputs drawn before the random state is read
    before, process = model_state(model), process_state()
    with pytest.raises(KeyboardInterrupt):
        run(model)
    assert_same(before, model_state(model))
    if call in ("lapify", "blaify"):  # they build layers (an options check first), and module
        process = (*process[:7], torch.get_rng_state(), *process[8:])  # constructors draw
    assert_process_same(process, process_state())


@pytest.mark.parametrize("mode", ["current", "eval"])
def test_antehoc_second_pass_and_maps_give_the_model_back_on_an_interrupt(mode: str) -> None:
    from torchlap.models.antehoc import antehoc_pass_two_loss

    model = peer_model("antehoc")
    interrupt_from_a_hook(model, 2)  # the second pass (on the energy maps) is interrupted
    model = mixed_flags(model)
    images = torch.rand(2, 3, 16, 16)
    before, process = model_state(model), process_state()
    with pytest.raises(KeyboardInterrupt):
        antehoc_pass_two_loss(model, images, mode)
    after = model_state(model)
    # the cached maps (model.maps) are the loss's own result: only set when it returns
    assert_same(before, after)
    assert_process_same(process, process_state())
    interrupt_from_a_hook(model, 1)
    before = model_state(model)
    with pytest.raises(KeyboardInterrupt):
        model.interpretation_map(images)
    assert_same(before, model_state(model))
