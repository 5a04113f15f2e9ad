"""``load_run`` reads ``model.safetensors`` once: the SHA-256 is checked on the bytes read and
the tensors are loaded from those same bytes.

Before: the file was hashed (``sha256_file``), then loaded again by path (``load_file``): two
reads, and a file swapped between them was loaded unchecked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import torchlap.runs.loading as loading
from torchlap.runs import RunError, load_run, pretrained_weights


def _other_weights(path: Path) -> dict[str, torch.Tensor]:
    """Valid weights of the same keys, shapes and dtypes as ``path``'s, each value changed (+1:
    a batch-norm variance stays positive) but the normalization's (which config.json records:
    the swapped file passes every check but the digest)."""
    return {
        key: value if "normalize." in key else value + 1
        for key, value in load_file(str(path)).items()
    }


def _opens_of(path: Path) -> list[str]:
    """The Python-level opens of ``path`` from now on (the ``open`` audit event)."""
    seen: list[str] = []
    target = str(path)

    def hook(event: str, args: tuple) -> None:
        if event == "open" and str(args[0]) == target:
            seen.append(event)

    sys.addaudithook(hook)  # (a hook cannot be removed: it only appends to this list)
    return seen


def test_a_file_swapped_after_the_check_is_not_what_is_loaded(run_copy: Path, monkeypatch):
    weights = run_copy / "model.safetensors"
    checked = load_file(str(weights))
    swapped = _other_weights(weights)
    check = loading.check_recorded_digest

    def check_then_swap(*args, **kwargs):
        check(*args, **kwargs)
        save_file(swapped, str(weights))  # another file where the checked one was

    monkeypatch.setattr(loading, "check_recorded_digest", check_then_swap)
    opens = _opens_of(weights)
    state = load_run(run_copy).model.state_dict()
    assert len(opens) == 1  # (read once; safetensors' own reading is not Python's, the swap
    # shows it: a second read would load the swapped tensors)
    for key, value in checked.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    # the swapped file itself is refused: its SHA-256 is not the recorded one
    monkeypatch.setattr(loading, "check_recorded_digest", check)
    with pytest.raises(RunError, match=r"model\.safetensors is damaged or was changed"):
        load_run(run_copy)


def _deny_reading(monkeypatch, denied_path: Path) -> None:
    """``denied_path`` cannot be read (as a file without read permission, which root, who runs
    these tests, could still read); every other file reads as before."""
    read = Path.read_bytes

    def denied(self: Path) -> bytes:
        if self == denied_path:
            raise PermissionError(13, "Permission denied", str(self))
        return read(self)

    monkeypatch.setattr(Path, "read_bytes", denied)


def test_unreadable_weights_are_refused_naming_the_file(run_copy: Path, monkeypatch) -> None:
    weights = run_copy / "model.safetensors"
    _deny_reading(monkeypatch, weights)
    with pytest.raises(PermissionError, match=r"model\.safetensors cannot be read \(Permission"):
        load_run(run_copy)


def test_a_run_folder_whose_config_cannot_be_read_is_not_taken_for_weights(
    run_copy: Path, monkeypatch
) -> None:
    """``--pretrained RUN``: a config.json torchlap may not read is said, not taken for "not a
    run" (which would load the weights without the run's integrity check)."""
    config = run_copy / "config.json"
    _deny_reading(monkeypatch, config)
    with pytest.raises(PermissionError, match=r"config\.json cannot be read \(Permission denied"):
        pretrained_weights(run_copy)
