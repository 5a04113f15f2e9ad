"""The gradient explainers leave the model as they found it, on success and on error (DeepLIFT's
per-call copies of a shared ReLU, captum's tensors on the modules, hooks, train flag), say
nothing of captum's own informational warnings, and refuse bad ``reduce_channels`` input."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_explainers_gradient_reference import Tiny, _images
from torch import Tensor, nn

from torchlap.explainers import DeepLift, GradCam, GuidedBackprop, GuidedGradCam
from torchlap.explainers.gradient import deeplift_eps, reduce_channels


class NanForMarkedImages(Tiny):
    """``Tiny`` whose logits are NaN for an image whose first pixel is 7."""

    def forward(self, x: Tensor) -> Tensor:
        poisoned = torch.where(x[:, 0, 0, 0] == 7.0, float("nan"), 0.0)
        return super().forward(x) + poisoned[:, None]


def _hooks(model: nn.Module) -> list[int]:
    return [
        len(getattr(module, kind))
        for module in model.modules()
        for kind in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        )
    ]


@pytest.mark.parametrize("relus", ["modules", "shared"])
def test_deeplift_puts_back_a_shared_relu_and_clears_captum_tensors_on_error(relus: str) -> None:
    model = NanForMarkedImages(relus).train()
    children = dict(model.named_children())
    hooks = _hooks(model)
    torch.manual_seed(2)
    images = torch.rand(4, 3, 8, 8, dtype=torch.float64)  # more images than channels
    baseline = torch.zeros_like(images)
    baseline[2, 0, 0, 0] = 7.0  # the baseline of image 2: row 6 of captum's doubled batch
    with pytest.raises(ValueError, match=r"NaN or infinite logits for images \[2\]"):
        DeepLift(model, baseline=baseline)(images, torch.tensor([0, 1, 2, 0]))
    assert dict(model.named_children()) == children
    keys = ("input", "output")
    assert [(name, k) for name, m in model.named_modules() for k in keys if k in vars(m)] == []
    assert _hooks(model) == hooks
    assert model.training


def test_deeplift_keeps_attributes_named_like_captums_that_were_there_before() -> None:
    model = Tiny("shared")
    model.conv1.input = "the user's"
    model.act1.output = "the user's too"
    maps = DeepLift(model)(_images(), torch.tensor([0, 1]))
    assert torch.isfinite(maps).all()
    assert hasattr(model.conv1, "input") and hasattr(model.act1, "output")
    assert not hasattr(model.act1, "input") and not hasattr(model.fc, "output")


@pytest.mark.parametrize(
    ("explainer", "options"),
    [
        (GradCam, {"layer": "conv2"}),
        (GuidedGradCam, {"layer": "conv2"}),
        (GuidedBackprop, {}),
        (DeepLift, {}),
    ],
)
def test_captums_informational_warnings_are_silenced(explainer: type, options: dict) -> None:
    model = Tiny("shared")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explainer(model, **options)(_images(), torch.tensor([0, 1]))
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64])
def test_deeplift_refuses_a_baseline_tensor_that_is_not_real_numbers(dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=f"baseline must be .* a real tensor, got dtype {dtype}"):
        DeepLift(Tiny(), baseline=torch.zeros(3, 1, 1, dtype=dtype))
    DeepLift(Tiny(), baseline=torch.zeros(3, 1, 1, dtype=torch.int64))  # integers are accepted


def test_deeplift_refuses_a_baseline_with_one_nan_pixel() -> None:
    baseline = torch.zeros(3, 8, 8, dtype=torch.float64)
    baseline[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="baseline must be finite"):
        DeepLift(Tiny(), baseline=baseline)


def test_deeplift_eps_is_captums_unless_the_dtype_cannot_hold_it() -> None:
    assert deeplift_eps(torch.float32) == 1e-10
    assert deeplift_eps(torch.float64) == 1e-10
    assert deeplift_eps(torch.float16) == torch.finfo(torch.float16).tiny
    assert deeplift_eps(torch.bfloat16) == 1e-10  # bfloat16's range reaches below 1e-10


def test_reduce_channels_refuses_what_is_not_a_floating_b_c_h_w_tensor() -> None:
    with pytest.raises(ValueError, match=r"attributions must have shape \(B, C, H, W\)"):
        reduce_channels(torch.rand(3, 4, 4))
    with pytest.raises(TypeError, match="attributions must be a floating tensor"):
        reduce_channels(torch.ones(1, 3, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="unknown sign 'abs'"):
        reduce_channels(torch.rand(1, 3, 4, 4), "abs")
    a = torch.tensor([[[[1.0, -3.0]], [[-2.0, 1.0]]]])  # (1, 2, 1, 2)
    torch.testing.assert_close(reduce_channels(a), torch.tensor([[[3.0, 4.0]]]))
    torch.testing.assert_close(reduce_channels(a, "signed"), torch.tensor([[[-1.0, -2.0]]]))
    torch.testing.assert_close(reduce_channels(-a, "positive"), torch.tensor([[[1.0, 2.0]]]))
