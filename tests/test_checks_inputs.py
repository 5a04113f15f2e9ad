"""torchlap._checks' checks of a layer's or a model's input, on their own: a building block's
(B, C, H, W) input (``check_feature_input``), images against a model's parameters
(``check_model_inputs``) and torch's channel complaint turned into a message
(``channel_mismatch``). The meta device stands in for a second device on a CPU-only machine."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap._checks import channel_mismatch, check_feature_input, check_model_inputs


class Block(nn.Module):
    """A building block: its class name is what the messages name."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3))


def _check(x: object, min_size: int = 0) -> None:
    block = Block()
    check_feature_input(block, x, 3, block.weight, min_size=min_size)


def test_a_feature_input_of_the_right_shape_dtype_and_device_passes() -> None:
    _check(torch.zeros(2, 3, 5, 4))
    _check(torch.zeros(1, 3, 3, 3), min_size=3)  # exactly the smallest map
    block = Block()  # no smallest map by default: an empty one is left to torch
    check_feature_input(block, torch.zeros(1, 3, 0, 4), 3, block.weight)


def test_a_feature_input_that_is_not_a_tensor_is_a_type_error() -> None:
    with pytest.raises(
        TypeError,
        match=r"^Block expects a \(B, C, H, W\) torch.Tensor, got list; convert it with "
        r"torch.as_tensor$",
    ):
        _check([[[[0.0]]]])


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 3, 5, 4, 1), (3,)])
def test_a_feature_input_of_another_rank_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(
        ValueError, match=rf"^Block expects \(B, C, H, W\) input, got shape {re_tuple(shape)}$"
    ):
        _check(torch.zeros(shape))


def test_a_feature_input_with_other_channels_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Block was built for 3 input channels, got an input with 2 channels \(shape "
        r"\(1, 2, 3, 3\)\)$",
    ):
        _check(torch.zeros(1, 2, 3, 3))


@pytest.mark.parametrize("shape", [(1, 3, 2, 5), (1, 3, 5, 2), (1, 3, 2, 2)])
def test_a_feature_map_smaller_than_the_smallest_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^Block needs a feature map of at least 3x3 pixels, got shape {re_tuple(shape)}$",
    ):
        _check(torch.zeros(shape), min_size=3)


def test_a_feature_input_of_another_dtype_is_a_type_error_outside_autocast() -> None:
    with pytest.raises(
        TypeError,
        match=r"^Block has torch.float32 parameters but got a floating-point torch.float64 "
        r"input; convert the input \(x.to\(torch.float32\)\)",
    ):
        _check(torch.zeros(1, 3, 3, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"got a non-floating-point torch.int64 input"):
        _check(torch.zeros(1, 3, 3, 3, dtype=torch.long))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts floats, never ints
        _check(torch.zeros(1, 3, 3, 3, dtype=torch.float64))
        with pytest.raises(TypeError, match=r"got a non-floating-point torch.int64 input"):
            _check(torch.zeros(1, 3, 3, 3, dtype=torch.long))


def test_a_feature_input_on_another_device_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Block has its parameters on cpu but got an input on meta; move the input "
        r"\(x.to\('cpu'\)\) or the layer \(layer.to\(device\)\)$",
    ):
        _check(torch.zeros(1, 3, 3, 3, device="meta"))


def re_tuple(shape: tuple[int, ...]) -> str:
    """``shape`` as a tuple's repr, escaped for a regular expression."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


# --------------------------------------------------------------------- images and a model
def test_images_matching_the_models_parameters_pass() -> None:
    check_model_inputs(nn.Conv2d(3, 2, 1), torch.zeros(1, 3, 4, 4))
    check_model_inputs(nn.ReLU(), torch.zeros(1, 3, 4, 4, dtype=torch.long))  # nothing to match


def test_images_on_another_device_than_the_model_are_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"^images are on meta but the model's parameters are on cpu: move them with "
        r"images.to\('cpu'\)$",
    ):
        check_model_inputs(nn.Conv2d(3, 2, 1), torch.zeros(1, 3, 4, 4, device="meta"))


def test_a_model_on_the_meta_device_is_refused_before_the_images() -> None:
    with pytest.raises(ValueError, match=r"^the model's parameters are on the meta device"):
        check_model_inputs(nn.Conv2d(3, 2, 1, device="meta"), torch.zeros(1, 3, 4, 4))


def test_images_of_another_dtype_are_a_type_error_outside_autocast() -> None:
    model = nn.Conv2d(3, 2, 1)
    images = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(
        TypeError,
        match=r"^images are torch.float64 but the model's parameters are torch.float32: pass "
        r"images.to\(torch.float32\) \(or convert the model with model.to\(torch.float32\)\)$",
    ):
        check_model_inputs(model, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check_model_inputs(model, images)


def test_a_model_split_over_devices_or_dtypes_is_left_to_torch() -> None:
    split = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 2, 1, device="meta"))
    check_model_inputs(split, torch.zeros(1, 3, 4, 4))
    mixed = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 2, 1, dtype=torch.float64))
    check_model_inputs(mixed, torch.zeros(1, 3, 4, 4, dtype=torch.float16))


# ------------------------------------------------------------------------- channel mismatch
def _two_convs() -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1))


def test_torchs_channel_complaint_names_the_first_convolution() -> None:
    images = torch.zeros(2, 1, 5, 5)
    error = RuntimeError("expected input[2, 1, 5, 5] to have 3 channels, but got 1 channels")
    assert channel_mismatch(_two_convs(), images, error) == (
        "images have 1 channels (shape (2, 1, 5, 5)), but the model's first convolution '1' "
        "takes 3: pass 3-channel images, read as the model was trained (see "
        "torchlap.data.load_image's channels)"
    )


def test_other_errors_and_models_give_no_channel_message() -> None:
    images = torch.zeros(2, 1, 5, 5)
    complaint = RuntimeError("expected input to have 3 channels, but got 1 channels")
    assert channel_mismatch(_two_convs(), images, ValueError(str(complaint))) is None
    assert channel_mismatch(_two_convs(), images, RuntimeError("shapes differ")) is None
    assert channel_mismatch(nn.Linear(1, 1), images, complaint) is None  # no convolution
    fits = torch.zeros(2, 3, 5, 5)  # the first convolution takes these: about another one
    assert channel_mismatch(_two_convs(), fits, complaint) is None


def test_inputs_on_the_meta_device_of_another_dtype_are_a_type_error() -> None:
    """torch's autocast does not know the meta device (``torch.is_autocast_enabled("meta")``
    raises); before, a meta input of another dtype got torch's "unknown device type for
    autocast" RuntimeError instead of the dtype's refusal."""
    block = Block().to("meta")
    images = torch.zeros(1, 3, 3, 3, device="meta", dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^Block has torch.float32 parameters but got a floating"):
        check_feature_input(block, images, 3, block.weight)
    split = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 2, 1, device="meta"))
    with pytest.raises(TypeError, match=r"^images are torch.float64 but the model's parameters"):
        check_model_inputs(split, images)
