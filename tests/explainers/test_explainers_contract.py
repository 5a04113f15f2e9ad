"""The explainer contract, checked for every registered method on LAP and vanilla models.

Output shape/dtype/device/finiteness, batch sizes 1 and 16, determinism, target forms, the
eval-mode context (flags restored, also on error), no hook left behind, registry and errors.
"""

import contextlib

import pytest
import torch
from torch import nn

import torchlap
from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d, explainers
from torchlap.explainers import Explainer, upsample
from torchlap.layers import LapBase

METHODS = [
    "lap",
    "gradcam",
    "guided_gradcam",
    "guided_backprop",
    "deeplift",
    "relevance_cam",
    "scorecam",
    "rise",
    "sise",
]
FAST_OPTIONS = {"rise": {"n_masks": 24, "mask_batch_size": 32}, "scorecam": {"mask_batch_size": 32}}


def randomize(model: nn.Module) -> nn.Module:
    """Non-trivial LAP heads and BatchNorm statistics (fresh LAP heads are constant 0.5)."""
    for module in model.modules():
        if isinstance(module, LapBase):
            for conv in module.scorer.heads:
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=0.5)
                    nn.init.normal_(conv.bias, std=0.5)
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model


def lap_cnn(n_concepts: int = 1, num_classes: int = 3) -> nn.Sequential:
    return randomize(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            LocalAttentionPool2d(8, 2, n_concepts=n_concepts),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            AdaptiveLocalAttentionPool2d(16, 1, n_concepts=n_concepts),
            nn.Flatten(),
            nn.Linear(16, num_classes),
        )
    )


def vanilla_cnn(num_classes: int = 3) -> nn.Sequential:
    return randomize(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, num_classes),
        )
    )


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def flags(model: nn.Module) -> list:
    return [(m.training, getattr(m, "inplace", None)) for m in model.modules()]


def make(method: str, model: nn.Module, **options) -> Explainer:
    return explainers.get(method)(model, **{**FAST_OPTIONS.get(method, {}), **options})


def models_for(method: str) -> list:
    return [lap_cnn()] if method == "lap" else [lap_cnn(), vanilla_cnn()]


def test_registry_lists_every_method():
    # bla and antehoc need their own models: tests/explainers/test_explainers_peers.py;
    # bcos a B-cos network: tests/models/test_models_bcos.py
    assert explainers.available() == sorted([*METHODS, "bla", "antehoc", "bcos"])
    for name in METHODS:
        assert explainers.get(name).name == name
    with pytest.raises(ValueError, match=r"unknown explainer 'nope'.*gradcam"):
        explainers.get("nope")
    with pytest.raises(ValueError, match="unknown explainer"):
        torchlap.explain(lap_cnn(), torch.randn(1, 3, 16, 16), method="grad_cam")


def test_register_refuses_duplicates_and_non_explainers():
    with pytest.raises(ValueError, match="already registered"):
        explainers.register("gradcam")(type("Other", (Explainer,), {}))
    with pytest.raises(TypeError, match="Explainer subclass"):
        explainers.register("thing")(int)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch", [1, 16])
def test_shape_finite_no_hooks_flags_restored(method, batch):
    for model in models_for(method)[: 1 if batch > 1 else None]:
        model.train()
        before = flags(model)
        images = torch.randn(batch, 3, 16, 16)
        explainer = make(method, model)
        maps = explainer(images)
        assert maps.shape == (batch, 16, 16)
        assert maps.dtype == torch.float32 and maps.device == images.device
        assert torch.isfinite(maps).all()
        assert hook_count(model) == 0
        assert flags(model) == before
        raw = explainer.raw(images)
        assert raw.dim() == 3 and raw.shape[0] == batch
        torch.testing.assert_close(upsample(raw, (16, 16)), maps)


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_and_train_mode_gives_eval_maps(method):
    model = lap_cnn() if method == "lap" else vanilla_cnn()
    images = torch.randn(4, 3, 16, 16)
    first = make(method, model)(images, target=1)
    torch.manual_seed(123)  # a different global seed must not matter
    second = make(method, model)(images, target=1)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    model.train()  # Dropout/BatchNorm in train mode would change the maps; explainers use eval
    third = make(method, model)(images, target=1)
    torch.testing.assert_close(first, third, rtol=1e-5, atol=1e-6)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("method", METHODS)
def test_target_forms_agree(method):
    model = lap_cnn()
    images = torch.randn(3, 3, 16, 16)
    predicted = model.eval()(images).argmax(dim=1)
    explainer = make(method, model)
    by_none = explainer(images)
    by_tensor = explainer(images, predicted)
    torch.testing.assert_close(by_none, by_tensor, rtol=1e-5, atol=1e-7)
    by_int = explainer(images, 2)
    by_int_tensor = explainer(images, torch.tensor([2, 2, 2]))
    torch.testing.assert_close(by_int, by_int_tensor, rtol=1e-5, atol=1e-7)
    by_scalar_tensor = explainer(images, torch.tensor(2))
    torch.testing.assert_close(by_int, by_scalar_tensor, rtol=1e-5, atol=1e-7)


def test_bad_inputs_raise_before_work():
    model = lap_cnn()
    explainer = make("gradcam", model)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        explainer([[1.0]])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        explainer(torch.randn(3, 16, 16))
    with pytest.raises(TypeError, match="floating-point"):
        explainer(torch.zeros(1, 3, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"):
        explainer(torch.zeros(0, 3, 16, 16))
    images = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        explainer(images, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="integer classes"):
        explainer(images, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="bool"):
        explainer(images, True)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        explainer(images, 7)
    with pytest.raises(ValueError, match=">= 0"):
        explainer(images, -1)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        explainers.GradCam(lambda x: x)
    assert hook_count(model) == 0


def test_model_with_non_logit_output_is_refused():
    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = vanilla_cnn()

        def forward(self, x):
            return {"logits": self.net(x)}

    with pytest.raises(TypeError, match=r"logits of shape \(B, num_classes\)"):
        explainers.Rise(Dict(), n_masks=2)(torch.randn(1, 3, 16, 16))


class BoomError(RuntimeError):
    pass


class FailingAfter(nn.Module):
    """Raises in its forward after ``ok`` successful calls."""

    def __init__(self, ok: int):
        super().__init__()
        self.ok = ok
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.ok:
            raise BoomError("failure inside the model")
        return x


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ok", [0, 1, 2])
def test_no_hook_survives_an_error_and_flags_are_restored(method, ok):
    model = lap_cnn()
    model.insert(5, FailingAfter(ok))  # between the second conv's ReLU and the global LAP
    model.train()
    before = flags(model)
    explainer = make(method, model)
    with contextlib.suppress(BoomError):
        explainer(torch.randn(2, 3, 16, 16))
    assert hook_count(model) == 0
    assert flags(model) == before


def last_maps(model: nn.Module) -> list:
    return [m.maps for m in model.modules() if isinstance(m, LapBase)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ok", [0, 2, None])
def test_the_callers_lap_maps_are_kept_also_on_error(method, ok):
    """Before: each method left the maps of its own batches (masked copies, baselines) in the
    LAP layers, with the autograd graph of its gradient passes alive in them."""
    model = lap_cnn()
    with torch.no_grad():
        model(torch.randn(3, 3, 16, 16))  # the caller's pass
    if ok is not None:
        model.insert(5, FailingAfter(ok))
    before = last_maps(model)
    assert all(m is not None for m in before)
    explainer = make(method, model)
    with contextlib.suppress(BoomError):
        explainer(torch.randn(2, 3, 16, 16))
    after = last_maps(model)
    assert all(a is b for a, b in zip(after, before, strict=True))


def test_context_manager_keeps_eval_state_and_restores_on_error():
    model = vanilla_cnn().train()
    before = flags(model)
    explainer = explainers.GradCam(model)
    with pytest.raises(BoomError), explainer:
        assert not any(m.training for m in model.modules())
        assert not any(getattr(m, "inplace", False) for m in model.modules())
        explainer(torch.randn(1, 3, 16, 16))
        explainer(torch.randn(1, 3, 16, 16))
        assert not any(m.training for m in model.modules())
        raise BoomError("user code failing inside the with block")
    assert flags(model) == before
    assert hook_count(model) == 0


def test_last_stats_count_passes_per_image():
    model = lap_cnn()
    images = torch.randn(4, 3, 16, 16)
    lap = make("lap", model)
    lap(images)
    assert lap.last_stats == {"forwards_per_image": 1.0, "backwards_per_image": 0.0}
    rise = explainers.Rise(model, n_masks=10, mask_batch_size=7)
    rise(images, target=0)
    # 10 masks, plus the two one-image forwards that find and check the batch-norm fold
    assert rise.last_stats["forwards_per_image"] == 10.0 + 2 / 4


def test_upsample_is_bilinear_without_corner_alignment():
    maps = torch.arange(4.0).view(1, 2, 2)
    out = upsample(maps, (4, 4))
    expected = torch.nn.functional.interpolate(
        maps[:, None], size=(4, 4), mode="bilinear", align_corners=False
    )[:, 0]
    torch.testing.assert_close(out, expected)
    # corner pixels are the corner values, the centre is the mean (pixel-centre alignment)
    assert out[0, 0, 0] == 0.0 and out[0, 3, 3] == 3.0
    assert out[0, 1:3, 1:3].mean() == pytest.approx(1.5)
    assert upsample(maps, (2, 2)) is maps
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        upsample(maps[0], (4, 4))


def test_explain_is_reexported_at_top_level():
    model = lap_cnn()
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(
        torchlap.explain(model, images), explainers.LapExplainer(model)(images)
    )
    assert "explain" in torchlap.__all__


@pytest.mark.parametrize(
    ("method", "lap"), [(m, lap) for m in METHODS for lap in (False, True) if lap or m != "lap"]
)
def test_torchvision_resnet18_vanilla_and_lapified(method, lap):
    """Every method on a torchvision ResNet18 (in-place ReLUs, shared ReLU modules, BatchNorm),
    plain and LAP-extended: maps come out, weights and flags are untouched, no hook is left."""
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=4)
    if lap:
        model, _ = torchlap.lapify(model, where="resnet18")
    randomize(model).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = flags(model)
    options = {"sise": {"mu": 0.5}}.get(method, {})
    maps = make(method, model, **options)(torch.randn(1, 3, 64, 64))
    assert maps.shape == (1, 64, 64) and torch.isfinite(maps).all()
    if method not in ("gradcam", "relevance_cam", "scorecam"):  # ReLU'd maps may be all 0
        assert float(maps.abs().max()) > 0
    assert flags(model) == before and hook_count(model) == 0
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


def test_in_place_forwards_switch_back_only_what_the_model_had_in_place():
    model = lap_cnn()
    model[5].inplace = False  # the user's own choice stays
    explainer = make("gradcam", model)
    with explainer.in_place_forwards():  # outside the explanation context: nothing to switch
        assert model[2].inplace and not model[5].inplace
    with explainer:
        assert not model[2].inplace
        with pytest.raises(RuntimeError, match="inside"), explainer.in_place_forwards():
            assert model[2].inplace and not model[5].inplace
            raise RuntimeError("inside")
        assert not model[2].inplace
    assert model[2].inplace and not model[5].inplace


def test_class_scores_checks_target_against_the_logits():
    logits = torch.rand(2, 3)
    # was torch's "index 5 is out of bounds for dimension 1 with size 3"
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 3\)"):
        explainers.class_scores(logits, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 3\)"):
        explainers.class_scores(logits, torch.tensor([0, -1]))
    with pytest.raises(TypeError, match="integer tensor of 2 class indices"):
        explainers.class_scores(logits, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="integer tensor of 2 class indices"):
        explainers.class_scores(logits, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(
        explainers.class_scores(logits, torch.tensor([2, 0])),
        logits.softmax(1)[[0, 1], [2, 0]],
    )


@pytest.mark.parametrize("method", METHODS)
def test_inference_mode_gives_the_same_maps(method):
    """Before: 7 of the 9 methods failed inside torch ("Inference tensors cannot be saved for
    backward"); the explainer now runs outside inference mode on copies of the inputs."""
    model = lap_cnn()
    images = torch.randn(2, 3, 16, 16)
    expected = make(method, model)(images, 1)
    with torch.inference_mode():
        frozen, target = images.clone(), torch.tensor([1, 1])
        maps = make(method, model)(frozen, target)
    torch.testing.assert_close(maps, expected)
    assert hook_count(model) == 0


def test_numpy_integer_targets_are_ints_and_huge_ones_are_refused():
    """Before: target=np.int64(1) was refused as "got int64" and 2**70 overflowed in torch."""
    np = pytest.importorskip("numpy")
    model, images = vanilla_cnn(), torch.randn(2, 3, 16, 16)
    explainer = explainers.GradCam(model)
    torch.testing.assert_close(explainer(images, np.int64(1)), explainer(images, 1))
    with pytest.raises(ValueError, match="target must be a class index of the model, got 1180"):
        explainer(images, 2**70)
    with pytest.raises(TypeError, match=r"got a numpy array: pass torch.as_tensor\(target\)"):
        explainer(images, np.array([1, 1]))
