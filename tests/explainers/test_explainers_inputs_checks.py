"""The checks of :mod:`torchlap.explainers.inputs`, called directly (no model run): what each
accepts at its boundary, what it refuses and what the message names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from torchlap.explainers.inputs import (
    autograd_copies,
    check_images,
    check_layer_name,
    check_layer_option,
    check_target,
    class_scores,
    logits_error,
    needs_autograd_copies,
    non_finite_outputs,
)


# ------------------------------------------------------------------------------ images
def test_check_images_accepts_one_pixel_and_returns_a_detached_tensor() -> None:
    images = torch.rand(1, 1, 1, 1, requires_grad=True)
    checked = check_images(images)
    assert not checked.requires_grad and torch.equal(checked, images.detach())


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([[0.0]], TypeError, "must be a torch.Tensor"),
        (torch.rand(1, 1, 4), ValueError, r"shape \(B, C, H, W\), got \(1, 1, 4\)"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.long), TypeError, "floating-point"),
        (torch.rand(0, 1, 2, 2), ValueError, "empty batch"),
        (torch.rand(1, 1, 0, 2), ValueError, "H, W >= 1"),
        (torch.rand(1, 1, 2, 0), ValueError, "H, W >= 1"),
        (torch.empty(1, 1, 2, 2, device="meta"), ValueError, "meta device"),
    ],
)
def test_check_images_refuses(images: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_images(images)


def test_check_images_names_the_images_with_non_finite_pixels() -> None:
    images = torch.rand(4, 1, 2, 2)
    images[1, 0, 0, 0] = float("nan")
    images[3, 0, 1, 1] = float("-inf")
    with pytest.raises(ValueError, match=r"images \[1, 3\] \(batch indices\)"):
        check_images(images)


# ------------------------------------------------------------------------------ target
def test_check_target_none_int_numpy_and_tensors() -> None:
    images = torch.rand(3, 1, 2, 2)
    assert check_target(None, images) is None
    for value in (0, 2, np.int64(2)):
        got = check_target(value, images)
        assert got.dtype == torch.long and got.tolist() == [int(value)] * 3
    got = check_target(torch.tensor(1, dtype=torch.int32), images)  # 0-d: repeated
    assert got.dtype == torch.long and got.tolist() == [1, 1, 1]
    got = check_target(torch.tensor([0, 0, 5], dtype=torch.uint8), images)
    assert got.dtype == torch.long and got.tolist() == [0, 0, 5]


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (True, TypeError, "got a bool"),
        (-1, ValueError, r"class index >= 0, got -1"),
        (2**63, ValueError, "class index of the model"),
        (np.array([0, 1, 2]), TypeError, "numpy array"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer classes"),
        (torch.tensor([True, False, True]), TypeError, "integer classes"),
        (torch.empty(3, dtype=torch.long, device="meta"), ValueError, "meta device"),
        (torch.tensor([0, 1]), ValueError, r"shape \(3,\) \(one class per image\), got \(2,\)"),
        (torch.zeros(3, 1, dtype=torch.long), ValueError, r"got \(3, 1\)"),
        (torch.tensor([0, -1, 2]), ValueError, "classes must be >= 0"),
        (1.0, TypeError, "got float"),
    ],
)
def test_check_target_refuses(target: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_target(target, torch.rand(3, 1, 2, 2))


def test_check_target_accepts_the_largest_long_class() -> None:
    got = check_target(2**63 - 1, torch.rand(1, 1, 1, 1))
    assert got.tolist() == [2**63 - 1]


# ------------------------------------------------------------------------------ outputs
def test_logits_error_names_the_likely_cause() -> None:
    assert "got list" in str(logits_error([1.0], 2))
    error = str(logits_error(torch.rand(2), 2))
    assert "got (2,) for a batch of 2 image(s)" in error and "unsqueeze(1)" in error
    error = str(logits_error(torch.rand(5), 1))  # a batch of one image, classes squeezed out
    assert "got (5,) for a batch of 1 image: the model drops the batch" in error
    error = str(logits_error(torch.rand(5), 3))  # 1-D, neither cause
    assert "got (5,); wrap" in error
    error = str(logits_error(torch.rand(2, 3, 4), 2))
    assert "got (2, 3, 4); wrap" in error


def test_non_finite_outputs_names_the_images() -> None:
    finite = torch.tensor([True, False, True, False])
    message = str(non_finite_outputs("rise", finite))
    assert message.startswith("rise: the model returns NaN or infinite logits for images [1, 3]")
    rows_of = torch.tensor([0, 0, 2, 2])  # masked copies: rows 1 and 3 are of images 0 and 2
    message = str(non_finite_outputs("rise", finite, rows_of, masked=True))
    assert "class scores on masked copies of images [0, 2] (batch indices)" in message
    many = torch.zeros(20, dtype=torch.bool)
    message = str(non_finite_outputs("m", many))
    assert f"{list(range(16))} ..." in message
    message = str(non_finite_outputs("m", torch.zeros(16, dtype=torch.bool)))
    assert f"{list(range(16))} (batch" in message
    message = str(non_finite_outputs("m", torch.zeros(17, dtype=torch.bool)))
    assert f"{list(range(16))} ... (batch" in message  # the first 16, then "..."


# ------------------------------------------------------------------------------ layers
class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 1)
        self.features = nn.Sequential(
            nn.Conv2d(2, 2, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(2, 2, 3))
        )
        self.head = nn.Linear(2, 2)


def test_check_layer_name_accepts_a_submodule_and_suggests_close_names() -> None:
    net = _Net()
    modules = dict(net.named_modules())
    check_layer_name("features.2.0", modules)
    with pytest.raises(ValueError, match=r"did you mean one of \['features.2.0'"):
        check_layer_name("features.2.1", modules)
    with pytest.raises(ValueError, match=r"unknown layer ''"):
        check_layer_name("", modules)  # the model itself is not a layer
    with pytest.raises(ValueError, match="unknown layer 2"):
        check_layer_name(2, modules)
    # the suggestion: the last convolution and the blocks holding it
    with pytest.raises(
        ValueError, match=r"e.g. 'features', 'features.2', 'features.2.0': the model's last"
    ):
        check_layer_name("nope", modules)
    wrapped = dict(nn.Sequential(net).named_modules())  # a run's model: 'net.<layer>'
    with pytest.raises(ValueError, match=r"did you mean one of \['0.features.2'\]"):
        check_layer_name("features.2", wrapped)
    # blocks holding every convolution are not suggested
    only = dict(nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 1))).named_modules())
    with pytest.raises(ValueError, match=r"\(e.g. '0.0': the model's last"):
        check_layer_name("x", only)


def test_layer_examples_without_a_convolution_and_without_submodules() -> None:
    linears = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 1), nn.Linear(1, 1))
    with pytest.raises(ValueError, match=r"\(e.g. '2'\)"):  # the last submodule
        check_layer_name("x", dict(linears.named_modules()))
    with pytest.raises(ValueError, match="this model has no submodule"):
        check_layer_name("x", dict(nn.Identity().named_modules()))


def test_check_layer_option() -> None:
    net = _Net()
    assert check_layer_option(net, None) is None
    assert check_layer_option(net, "head") == "head"
    assert check_layer_option(net, net.head) is net.head
    with pytest.raises(ValueError, match="unknown layer 'tail'"):
        check_layer_option(net, "tail")
    with pytest.raises(ValueError, match="Linear is not a submodule"):
        check_layer_option(net, nn.Linear(2, 2))
    with pytest.raises(TypeError, match="layer must be None, a module name or a module, got 3"):
        check_layer_option(net, 3)


# ------------------------------------------------------------------------------ scores
def _softmax_reference(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """exp(z_t) / sum_k exp(z_k) per row (the sigmoid of the one logit for K = 1)."""
    out = torch.empty(logits.shape[0], dtype=torch.float64)
    for i in range(logits.shape[0]):
        row = [float(v) for v in logits[i]]
        if len(row) == 1:
            out[i] = 1.0 / (1.0 + np.exp(-row[0]))
        else:
            out[i] = np.exp(row[int(target[i])]) / sum(np.exp(v) for v in row)
    return out


def test_class_scores_against_the_definition() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 3, 1, 3, 2])
    torch.testing.assert_close(class_scores(logits, target), _softmax_reference(logits, target))
    torch.testing.assert_close(
        class_scores(logits, target.int(), "logit"), logits[torch.arange(5), target]
    )
    single = torch.randn(3, 1, dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(class_scores(single, zero), _softmax_reference(single, zero))
    assert class_scores(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)).shape == (0,)


@pytest.mark.parametrize(
    ("logits", "target", "kind", "error", "match"),
    [
        (torch.zeros(2), torch.tensor([0, 0]), "softmax", ValueError, r"\(N, K\) with K >= 1"),
        (torch.zeros(2, 0), torch.tensor([0, 0]), "softmax", ValueError, "K >= 1"),
        ([[0.0]], torch.tensor([0]), "softmax", ValueError, "got list"),
        (torch.zeros(2, 2, dtype=torch.long), torch.tensor([0, 0]), "softmax", TypeError,
         "floating"),
        (torch.zeros(2, 2), torch.tensor([0.0, 1.0]), "softmax", TypeError, "got torch.float32"),
        (torch.zeros(2, 2), [0, 1], "softmax", TypeError, "got list"),
        (torch.zeros(2, 2), torch.tensor([0, 1, 1]), "softmax", ValueError, r"got shape \(3,\)"),
        (torch.zeros(2, 2), torch.tensor([[0, 1]]), "softmax", ValueError, r"got shape \(1, 2\)"),
        (torch.empty(2, 2, device="meta"), torch.tensor([0, 1], device="meta"), "softmax",
         ValueError, "logits is on the meta device"),
        (torch.empty(2, 2, device="meta"), torch.tensor([0, 1]), "softmax", ValueError,
         "logits is on the meta device"),
        (torch.zeros(2, 2), torch.tensor([0, 1], device="meta"), "softmax", ValueError,
         "target is on the meta device"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), "probability", ValueError, "unknown score"),
        (torch.tensor([[0.0, float("nan")], [0.0, 0.0]]), torch.tensor([0, 1]), "softmax",
         ValueError, "NaN or infinite"),
        (torch.zeros(2, 2), torch.tensor([0, 2]), "softmax", ValueError,
         r"in \[0, 2\) for these logits, got \[0, 2\]"),
        (torch.zeros(2, 2), torch.tensor([-1, 1]), "softmax", ValueError, r"in \[0, 2\)"),
    ],
)  # fmt: skip
def test_class_scores_refuses(
    logits: object, target: object, kind: str, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        class_scores(logits, target, kind)  # type: ignore[arg-type]


def test_an_out_of_range_target_is_listed_up_to_16_classes() -> None:
    with pytest.raises(
        ValueError, match=r"got \[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2\]$"
    ):
        class_scores(torch.zeros(16, 2), torch.tensor([0] * 15 + [2]))
    with pytest.raises(ValueError, match=r"got tensor\(\[0, 0,"):  # 17: the tensor's summary
        class_scores(torch.zeros(17, 2), torch.tensor([0] * 16 + [2]))


def test_class_scores_accepts_the_last_class() -> None:
    got = class_scores(torch.zeros(2, 3), torch.tensor([2, 2]))
    torch.testing.assert_close(got, torch.full((2,), 1 / 3))


# ------------------------------------------------------------------------------ inference
def test_autograd_copies_outside_inference_mode() -> None:
    images, target = torch.rand(1, 1, 2, 2), torch.tensor([0])
    assert not needs_autograd_copies(images, target)
    with torch.inference_mode():
        assert needs_autograd_copies(images, target)
        frozen = torch.rand(1, 1, 2, 2)
    assert needs_autograd_copies(frozen, None) and needs_autograd_copies(images, frozen)
    with torch.inference_mode(False):
        copied, same = autograd_copies(frozen, target)
    assert isinstance(copied, torch.Tensor) and not copied.is_inference()
    assert torch.equal(copied, frozen) and same is target


def test_at_most_five_layer_names_are_suggested() -> None:
    blocks = nn.Sequential(*(nn.Sequential() for _ in range(7)))
    for block in blocks:
        block.add_module("conv", nn.Conv2d(1, 1, 1))
    modules = dict(blocks.named_modules())
    with pytest.raises(ValueError, match=r"did you mean one of \[[^]]*\]") as info:
        check_layer_name("conv", modules)  # 7 names end in '.conv': the first 5 are offered
    expected = [f"{i}.conv" for i in range(5)]
    assert f"did you mean one of {expected}?" in str(info.value)
    layers = nn.Module()
    for i in range(7):
        layers.add_module(f"layer{i}", nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"did you mean one of \[[^]]*\]") as info:
        check_layer_name("layer", dict(layers.named_modules()))  # 7 close names: 5 offered
    assert str(info.value).split("did you mean one of ")[1].count("'layer") == 5
