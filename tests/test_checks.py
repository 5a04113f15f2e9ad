"""torchlap._checks: TypeError for a wrong type, ValueError for a wrong value, messages that say
what is accepted and what was given."""

from __future__ import annotations

import math

import pytest
import torch

from torchlap._checks import (
    check_bool,
    check_channels,
    check_choice,
    check_device,
    check_fraction,
    check_int,
    check_number,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_size_pair,
    is_integer_tensor,
)


@pytest.mark.parametrize("value", [True, 1.0, "3", None, [1]])
def test_int_checks_refuse_other_types_with_type_error(value):
    with pytest.raises(TypeError, match=r"n must be an int >= 1, got "):
        check_positive_int(value, "n")


@pytest.mark.parametrize("value", [0, -3])
def test_int_checks_refuse_out_of_range_with_value_error(value):
    with pytest.raises(ValueError, match=rf"n must be an int >= 1, got {value}"):
        check_positive_int(value, "n")


def test_int_ranges_are_described():
    assert check_int(5, "k", minimum=2, maximum=5) == 5
    with pytest.raises(ValueError, match="k must be an int from 2 to 5, got 6"):
        check_int(6, "k", minimum=2, maximum=5)
    with pytest.raises(ValueError, match="k must be an int <= 5, got 6"):
        check_int(6, "k", maximum=5)
    assert check_int(-7, "offset") == -7
    with pytest.raises(TypeError, match="offset must be an int, got 'x'"):
        check_int("x", "offset")


def test_seeds_are_ints_a_generator_numpy_and_sklearn_all_take():
    """Before: -1 was taken (torch wraps it to 2**64 - 1) and 2**70 failed only when used."""
    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, 2**70):
        with pytest.raises(ValueError, match=rf"an int from 0 to 4294967295, got {bad}"):
            check_seed(bad)
    with pytest.raises(TypeError, match="seed must be an int from 0 to 4294967295, got 'x'"):
        check_seed("x")


def test_numbers():
    assert check_positive_float(2, "lr") == 2.0
    assert isinstance(check_positive_float(2, "lr"), float)
    for bad in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got "):
            check_positive_float(bad, "lr")
    with pytest.raises(TypeError, match=r"lr must be a finite number > 0, got True"):
        check_positive_float(True, "lr")
    assert check_fraction(1, "ratio") == 1.0
    with pytest.raises(ValueError, match=r"ratio must be a number in \(0, 1\], got 0"):
        check_fraction(0, "ratio")
    assert check_number(0, "alpha", minimum=0) == 0.0
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0 and <= 2, got 3"):
        check_number(3, "alpha", minimum=0, maximum=2)
    with pytest.raises(ValueError, match="alpha must be between zero and two, got 3"):
        check_number(3, "alpha", maximum=2, accepted="between zero and two")


def test_choice():
    assert check_choice("max", "aggregation", ("max", "mean")) == "max"
    with pytest.raises(ValueError, match=r"aggregation must be one of 'max', 'mean', got 'sum'"):
        check_choice("sum", "aggregation", ("max", "mean"))
    with pytest.raises(ValueError, match="must be one of"):
        check_choice(["max"], "aggregation", {"max", "mean"})  # unhashable: not a choice


def test_device(monkeypatch):
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device 'magic' is not a device; expected 'cpu'"):
        check_device("magic")
    with pytest.raises(ValueError, match=r"--device 3.5 is not a device"):
        check_device(3.5, "--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"'cuda': no CUDA device is available here"):
        check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"'cuda:2': this machine has 2 CUDA device\(s\)"):
        check_device("cuda:2")
    with pytest.raises(ValueError, match=r"no meta device is available here"):
        check_device("meta")


def test_non_finite_samples_names_the_batch_indices() -> None:
    import torch

    from torchlap._checks import non_finite_samples

    batch = torch.zeros(12, 2, 3, 3)
    assert non_finite_samples(batch) == []
    batch[1, 0, 0, 0] = float("nan")
    batch[4, 1, 2, 2] = float("inf")
    batch[5:, 0, 1, 1] = -float("inf")
    assert non_finite_samples(batch) == [1, 4, 5, 6, 7, 8, 9, 10, 11]
    assert non_finite_samples(batch, limit=2) == [1, 4]


def test_bool_check_takes_numpy_bools_and_nothing_else() -> None:
    import numpy as np

    # numpy 2 names its bool type "bool" (1.x: "bool_"): np.True_ used to be refused
    assert check_bool(np.True_, "flag") is True and check_bool(np.bool_(False), "flag") is False
    assert check_bool(True, "flag") is True
    for value in ("no", 1, 0.0, None, np.int64(1)):
        with pytest.raises(TypeError, match=r"flag must be True or False, got"):
            check_bool(value, "flag")


def test_channel_counts_are_one_or_three_and_never_a_bool() -> None:
    assert check_channels(1) == 1 and check_channels(3, "n_channels") == 3
    for bad in (0, 2, 4, -1):
        with pytest.raises(
            ValueError, match=rf"channels must be 1 \(grayscale\) or 3 \(RGB\), got {bad}"
        ):
            check_channels(bad)
    for bad in (True, 3.0, "3", None):  # True == 1 and 3.0 == 3 pass a plain `in (1, 3)`
        with pytest.raises(TypeError, match=r"n_channels must be 1 \(grayscale\) or 3"):
            check_channels(bad, "n_channels")


def test_size_pairs_are_two_positive_ints() -> None:
    assert check_size_pair((4, 5)) == (4, 5)
    assert check_size_pair(torch.Size([4, 5])) == (4, 5) and check_size_pair([1, 1]) == (1, 1)
    message = r"size must be \(H, W\), two positive ints, got"
    for bad in ((0, 4), (-1, 4), (4, 0), (4,), (4, 4, 4), ()):  # the right type, wrong values
        with pytest.raises(ValueError, match=message):
            check_size_pair(bad)
    for bad in ((2.5, 4), (True, 4), (4, "4"), ("4",), "44", b"44", 4, None):  # not int pairs
        with pytest.raises(TypeError, match=message):
            check_size_pair(bad)


def test_is_integer_tensor_takes_integer_dtypes_only() -> None:
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        assert is_integer_tensor(torch.zeros(2, dtype=dtype))
    for dtype in (torch.bool, torch.float16, torch.bfloat16, torch.float32, torch.complex64):
        assert not is_integer_tensor(torch.zeros(2, dtype=dtype))
    assert not is_integer_tensor([1, 2]) and not is_integer_tensor(3)
