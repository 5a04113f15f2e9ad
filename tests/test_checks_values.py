"""torchlap._checks at the boundaries tests/test_checks.py leaves open: the 64-bit range of
``check_int``, the top of ``check_fraction``, plainly written numbers, repeated list entries,
keyword dicts, devices other than CUDA, tensors without values and the NaN batch limit."""

from __future__ import annotations

import pytest
import torch

from torchlap._checks import (
    check_device,
    check_distinct,
    check_fraction,
    check_has_values,
    check_int,
    check_keyword_dict,
    is_plain_number,
    non_finite_samples,
)


def test_ints_are_taken_up_to_the_64_bit_bounds_and_refused_past_them() -> None:
    """torch unpacks sizes and counts as signed 64-bit ints: [-(2**63), 2**63 - 1]."""
    for value in (2**63 - 1, -(2**63), -200):
        assert check_int(value, "count") == value
    for value in (2**63, -(2**63) - 1):
        with pytest.raises(
            ValueError, match=rf"count must be an int that fits in 64 bits, got {value}"
        ):
            check_int(value, "count")


def test_a_fraction_just_above_one_is_refused() -> None:
    assert check_fraction(0.5, "decay") == 0.5
    with pytest.raises(ValueError, match=r"decay must be a number in \(0, 1\], got 1.000001"):
        check_fraction(1.000001, "decay")


def test_plain_numbers_are_ascii_decimals_and_ints_have_no_point() -> None:
    for text in ("10", "-3", "+4", "1.5", ".5", "5.", "1e-3", "-2E+4"):
        assert is_plain_number(text), text  # a number, by default
    for text in ("1_0", "１", "nan", "inf", "", ".", "1e", "0x10", " 1"):
        assert not is_plain_number(text), text
    assert is_plain_number("42", integer=True) and is_plain_number("-7", integer=True)
    for text in ("1.5", "1e3", "5.", "1_0"):
        assert not is_plain_number(text, integer=True), text


def test_a_list_option_naming_an_entry_twice_is_refused() -> None:
    check_distinct([8, 16, 32], "--sizes")
    check_distinct([], "--sizes")
    with pytest.raises(ValueError, match=r"^--sizes lists 16 more than once; name each once$"):
        check_distinct([8, 16, 32, 16], "--sizes")
    with pytest.raises(ValueError, match=r"^--archs lists a, b more than once; name each once$"):
        check_distinct(["b", "a", "b", "a", "a"], "--archs")


def test_keyword_dicts_are_mappings_of_str_keys_or_none() -> None:
    assert check_keyword_dict(None, "head_kwargs", "the head's options") == {}
    given = {"hidden": 4}
    got = check_keyword_dict(given, "head_kwargs", "the head's options")
    assert got == given and got is not given
    for bad, shown in (
        ("ab", "str 'ab'"),
        ([("hidden", 4)], r"list \[\('hidden', 4\)\]"),
        (0, "int 0"),
    ):
        with pytest.raises(
            TypeError,
            match=rf"^head_kwargs must be a dict of keyword arguments \(the head's options\) or "
            rf"None, got {shown}$",
        ):
            check_keyword_dict(bad, "head_kwargs", "the head's options")
    with pytest.raises(
        TypeError,
        match=r"^head_kwargs must be a dict of keyword arguments \(the head's options\) whose "
        r"keys are str \(the keywords' names\), got the key 1 \(int\)$",
    ):
        check_keyword_dict({"hidden": 4, 1: 2}, "head_kwargs", "the head's options")


def test_the_cuda_refusal_names_the_devices_this_machine_has(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    with pytest.raises(
        ValueError, match=r"'cuda:5': this machine has 3 CUDA device\(s\), 'cuda:0' to 'cuda:2'$"
    ):
        check_device("cuda:5")


def test_a_device_of_another_backend_is_taken_only_where_it_is_available(monkeypatch) -> None:
    monkeypatch.setattr(torch.mps, "is_available", lambda: False, raising=False)
    with pytest.raises(
        ValueError, match=r"^device 'mps': no mps device is available here; use 'cpu'$"
    ):
        check_device("mps")
    monkeypatch.setattr(torch.mps, "is_available", lambda: True, raising=False)
    assert check_device("mps") == torch.device("mps")


def test_a_tensor_without_values_is_refused_naming_it() -> None:
    tensor = torch.zeros(2)
    assert check_has_values(tensor, "maps") is tensor
    with pytest.raises(ValueError, match=r"^maps is on the meta device, which holds shapes"):
        check_has_values(torch.zeros(2, device="meta"), "maps")


def test_non_finite_samples_names_ten_by_default() -> None:
    batch = torch.zeros(14, 3)
    batch[2:, 1] = float("nan")  # samples 2 to 13: twelve
    assert non_finite_samples(batch) == list(range(2, 12))
