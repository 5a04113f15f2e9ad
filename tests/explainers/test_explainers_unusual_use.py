"""Explainers on unusual models and inputs: images on the meta device, a float16 model under
DeepLIFT, a LAP layer index past the layers that ran, two threads explaining one model."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import torchlap
from torchlap.explainers import explain, get


class Small(nn.Module):
    """A conv-BN-ReLU net with in-place ReLUs and dropout (train mode changes its outputs)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, padding=1, stride=2),
            nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.features(x).mean((2, 3))))


def test_images_on_the_meta_device_are_refused_saying_so() -> None:
    # before: RuntimeError "Tensor.item() cannot be called on meta tensors" from the NaN check
    with pytest.raises(ValueError, match="meta device, which holds shapes but no pixel values"):
        explain(Small(), torch.rand(2, 3, 16, 16, device="meta"), "gradcam")


def test_a_target_on_the_meta_device_is_refused_saying_so() -> None:
    # before: RuntimeError "Tensor.item() cannot be called on meta tensors"
    target = torch.tensor([0, 1], device="meta")
    with pytest.raises(ValueError, match="target is on the meta device"):
        explain(Small(), torch.rand(2, 3, 16, 16), "gradcam", target=target)


def test_a_model_on_the_meta_device_is_refused_saying_so() -> None:
    # before: "images are on cpu but the model's parameters are on meta: move them with
    # images.to('meta')", advice the images check then refuses
    with pytest.raises(ValueError, match="model's parameters are on the meta device"):
        explain(Small().to("meta"), torch.rand(2, 3, 16, 16), "rise", n_masks=4)


def test_deeplift_of_a_float16_model_has_no_nan_pixels() -> None:
    # captum's eps 1e-10 is 0 in float16: a ReLU whose input equals its baseline's gave 0 / 0
    model = Small().half().eval()
    torch.manual_seed(1)
    images = torch.rand(2, 3, 32, 24).half()
    maps = explain(model, images, "deeplift")
    assert maps.dtype == torch.float16
    assert bool(maps.isfinite().all())
    reference = explain(Small().eval(), images.float(), "deeplift")
    # the float32 map up to float16 rounding (its pixels are ~1e-4, float16 subnormals)
    pair = torch.stack([maps.float().flatten(), reference.flatten()])
    assert float(torch.corrcoef(pair)[0, 1]) > 0.99


class Branching(nn.Module):
    """Four LAP sites; ``p3`` runs only while ``both`` is True (as during ``lapify``)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.p1 = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.p2 = nn.MaxPool2d(2)
        self.p3 = nn.MaxPool2d(2)
        self.g = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)
        self.both = True

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.c2(self.p1(torch.relu(self.c1(x)))))
        if self.both:
            self.p3(x)
        return self.fc(self.g(self.p2(x)).flatten(1))


@pytest.mark.parametrize("layer", [3, -4])
def test_a_lap_layer_index_past_the_layers_that_ran_is_named(layer: int) -> None:
    torch.manual_seed(0)
    model, names = torchlap.lapify(Branching(), ["p1", "p2", "p3", "g"])
    assert names == ["p1", "p2", "p3", "g"]
    model.both = False
    # before: IndexError "list index out of range"
    with pytest.raises(ValueError, match=r"3 of the model's 4 LAP layers ran .*skipped: p3"):
        explain(model, torch.rand(2, 3, 32, 32), "lap", layer=layer)
    assert explain(model, torch.rand(2, 3, 32, 32), "lap", layer=-1).shape == (2, 32, 32)


class Slow(Small):
    """Its first forward in thread ``first`` waits until the other thread has started."""

    def __init__(self) -> None:
        super().__init__()
        self.other_started = threading.Event()
        self.waited = False

    def forward(self, x: Tensor) -> Tensor:
        if threading.current_thread().name == "first" and not self.waited:
            self.waited = True
            self.other_started.wait(timeout=5)
            threading.Event().wait(0.3)  # the other thread's explainer enters meanwhile
        return super().forward(x)


def test_two_threads_explaining_one_model_take_turns() -> None:
    # before: the second explanation saved the first's eval flags as the model's own, so the
    # model was left in eval mode with its ReLUs out of place, and hooks crossed threads
    model = Slow()
    model.train()
    torch.manual_seed(2)
    images = torch.rand(2, 3, 16, 16)
    twin = Small()
    twin.load_state_dict(model.state_dict())
    reference = explain(twin, images, "guided_backprop")
    results: dict[str, Tensor] = {}
    errors: list[BaseException] = []

    def work(name: str, method: str) -> None:
        try:
            if name == "second":
                model.other_started.set()
            results[name] = explain(model, images, method)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [
        threading.Thread(target=work, args=("first", "gradcam"), name="first"),
        threading.Thread(target=work, args=("second", "guided_backprop"), name="second"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert model.training and all(m.training for m in model.modules())
    assert [getattr(m, "inplace", None) for m in model.features] == [None, None, True, None, True]
    assert torch.allclose(results["second"], reference, atol=1e-6)
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


class InPlaceFirst(Small):
    """Its first module is an in-place ReLU on the input image itself."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.pre = nn.ReLU(inplace=inplace)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.pre(x))


@pytest.mark.parametrize(
    ("method", "options"),
    [("scorecam", {}), ("rise", {"n_masks": 8, "grid_size": 4}), ("sise", {})],
)
def test_an_in_place_first_module_leaves_the_callers_images_alone(method, options) -> None:
    # before: the batch-norm folding's probe forwards (a view of the images, in-place flags
    # on) wrote the caller's images, and the maps were of the rectified images
    model = InPlaceFirst().eval()
    twin = InPlaceFirst(inplace=False).eval()
    torch.manual_seed(3)
    images = torch.randn(2, 3, 16, 16)
    copy = images.clone()
    maps = explain(model, images, method, **options)
    assert torch.equal(images, copy)
    assert torch.allclose(maps, explain(twin, images, method, **options), atol=1e-5)


class TupleBlock(nn.Module):
    """A block returning (feature map, a scalar aside), as some backbones' stages do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.relu(self.conv(x))
        return y, y.mean()


class TupleLayerModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = TupleBlock()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        features, _ = self.block(x)
        return self.fc(features.mean((2, 3)))


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam", "relevance_cam", "scorecam"])
def test_a_layer_returning_a_tuple_is_named_when_resolved(method: str) -> None:
    # before: gradcam failed inside captum ("zero-dimensional tensor (at position 0) cannot be
    # concatenated"), the others with a TypeError during the work, not on the layer check
    with pytest.raises(ValueError, match="layer 'block' returns a tuple, not a tensor"):
        get(method)(TupleLayerModel().eval(), layer="block").check_layers(torch.rand(1, 3, 8, 8))
    maps = explain(TupleLayerModel().eval(), torch.rand(2, 3, 8, 8), method, layer="block.conv")
    assert maps.shape == (2, 8, 8)


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam", "relevance_cam", "scorecam"])
def test_a_tuple_returning_layer_inside_a_lap_layer_is_named_when_resolved(method: str) -> None:
    """The concept scorer of a LAP layer returns a tuple; the probe did not look at the outputs
    of modules inside a LAP layer, so the layer passed the check (evaluate named no bad
    ``--method-options`` layer up front) and the explanation failed with a TypeError after the
    methods before it had run and been cached."""
    from torchlap.models import lapify
    from torchlap.train.wrapping import SmallCNN

    torch.manual_seed(0)
    model, _ = lapify(SmallCNN(2, 3), "auto")
    scorers = [n for n, m in model.named_modules() if n.endswith("pool.scorer")]
    assert scorers
    explainer = get(method)(model.eval(), layer=scorers[0])
    with pytest.raises(ValueError, match=rf"layer '{scorers[0]}' returns a tuple, not a tensor"):
        explainer.check_layers(torch.rand(1, 3, 32, 32))


class Squeezing(Small):
    """Drops every dimension of size 1 from its logits (and so the batch of one image)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).squeeze()


class OneScore(Small):
    """A single-output model returning (B,), not (B, 1)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)[:, 0]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (Squeezing, r"got \(3,\) for a batch of 1 image: the model drops the batch dimension"),
        (OneScore, r"got \(1,\) for a batch of 1 image\(s\): one score per image without its"),
    ],
)
def test_a_one_dimensional_output_is_explained(model: type[nn.Module], message: str) -> None:
    # before: "got (3,)" only, though the user's batch of 2 gave (2, 3): the one-image forward
    # of the target check is where the squeeze bit
    with pytest.raises(TypeError, match=message):
        explain(model().eval(), torch.rand(2, 3, 16, 16), "gradcam", target=0)


class FunctionalRelus(Small):
    """``Small`` with its ReLUs applied as functions (as torchvision's Inception v3 does)."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style

    def forward(self, x: Tensor) -> Tensor:
        conv1, bn, _, conv2, _ = self.features
        y = bn(conv1(x))
        if self.style == "inplace":
            y = F.relu(y, inplace=True)
            z = conv2(y)
            z.relu_()
        else:
            z = conv2(torch.relu(y)).relu()
        return self.fc(self.drop(z.mean((2, 3))))


@pytest.mark.parametrize("style", ["inplace", "out_of_place"])
@pytest.mark.parametrize(
    ("method", "options"),
    [("guided_backprop", {}), ("guided_gradcam", {"layer": "features.3"})],
)
def test_guided_methods_guide_relus_applied_as_functions(style, method, options) -> None:
    # before: captum hooks nn.ReLU modules only, so F.relu / torch.relu / x.relu_() passed
    # negative gradients and the map was a plain gradient map there (half its pixels off)
    modules = Small().eval()
    functional = FunctionalRelus(style).eval()
    functional.load_state_dict(modules.state_dict())
    torch.manual_seed(4)
    images = torch.rand(2, 3, 16, 16)
    copy = images.clone()
    assert torch.allclose(functional(images), modules(images))
    expected = explain(modules, images, method, sign="signed", **options)
    maps = explain(functional, images, method, sign="signed", **options)
    assert torch.allclose(maps, expected, atol=1e-6 * float(expected.abs().max()))
    assert torch.equal(images, copy)


@pytest.mark.parametrize("style", ["inplace", "out_of_place"])
def test_deeplift_rescales_relus_applied_as_functions(style) -> None:
    # before: captum's Rescale rule hooks nn.ReLU modules only, so DeepLIFT took F.relu /
    # torch.relu / x.relu_() for linear functions (their plain gradient), a different map
    modules = Small().eval()
    functional = FunctionalRelus(style).eval()
    functional.load_state_dict(modules.state_dict())
    torch.manual_seed(5)
    images = torch.rand(3, 3, 16, 16)
    expected = explain(modules, images, "deeplift", sign="signed")
    maps = explain(functional, images, "deeplift", sign="signed")
    assert torch.allclose(maps, expected, atol=1e-5 * float(expected.abs().max()))
    # and DeepLIFT's completeness holds for the functional model too: the attributions of an
    # image sum to its target logit minus the zero baseline's
    from captum.attr import DeepLift as CaptumDeepLift

    from torchlap.explainers.guided import rescale_functional_relus

    with rescale_functional_relus(1e-10):
        _, delta = CaptumDeepLift(functional).attribute(
            images, baselines=torch.zeros_like(images), target=0, return_convergence_delta=True
        )
    assert float(delta.abs().max()) < 1e-4, delta


class _ReadOnlyInplace(nn.Module):
    """An activation whose ``inplace`` is a read-only property (always out of place)."""

    @property
    def inplace(self) -> bool:
        return False

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)


@pytest.mark.parametrize("method", ["gradcam", "rise"])
def test_a_read_only_inplace_flag_that_is_off_is_left_alone(method: str) -> None:
    """Before: every explainer raised AttributeError ("property 'inplace' ... has no setter")
    switching off a flag that was already off."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        _ReadOnlyInplace(),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).train()
    model[0].eval()
    options = {"n_masks": 4, "mask_batch_size": 4} if method == "rise" else {}
    maps = explain(model, torch.rand(1, 3, 8, 8), method, **options)
    assert maps.shape == (1, 8, 8)
    assert [m.training for m in model.modules()] == [True, False, True, True, True, True, True]
    assert model[2].inplace is True
