"""``--pretrained RUN`` loads the weights its integrity check read, or nothing.

Before: ``runs.pretrained_weights`` hashed the run's ``model.safetensors``, then the model
builder read the file again with ``load_file``: a file swapped between the two was loaded
unchecked. Now the check hands on a :class:`torchlap.io.PinnedPath` (the path and the digest
checked), and the builder reads the file once and loads it only if those bytes have that digest.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import torchlap.runs.loading as loading
from conftest import TINY
from torchlap.cli import app
from torchlap.io import PinnedPath, read_file
from torchlap.models import build_model
from torchlap.models.recipes import build_classifier
from torchlap.runs import pretrained_weights

_DIGEST = "0123456789abcdef" * 4


def _changed_copy(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, every floating one changed (the same names, shapes, dtypes:
    only the digest can tell the swapped file from the checked one)."""
    return {k: v + 1 if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def test_pinned_path_is_the_path_and_keeps_its_digests(tmp_path: Path) -> None:
    file = tmp_path / "w.bin"
    file.write_bytes(b"checked")
    digest = hashlib.sha256(b"checked").hexdigest()
    pinned = PinnedPath(file, digest)
    assert pinned == str(file) and isinstance(pinned, str)
    assert pinned.sha256 == frozenset({digest})
    assert read_file(pinned) == b"checked"
    again = pickle.loads(pickle.dumps(pinned))
    assert again == pinned and again.sha256 == pinned.sha256
    assert read_file(PinnedPath(file, [_DIGEST, digest])) == b"checked"  # either digest


def test_a_pinned_file_whose_bytes_changed_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "w.bin"
    file.write_bytes(b"changed")
    with pytest.raises(ValueError, match=r"w\.bin changed after it was checked: its SHA-256 is"):
        read_file(PinnedPath(file, _DIGEST))
    assert read_file(file) == b"changed"  # an unpinned path is read as it is


@pytest.mark.parametrize(
    ("digests", "error", "message"),
    [
        ("abc", ValueError, "64 lowercase hex characters"),
        (_DIGEST.upper(), ValueError, "64 lowercase hex characters"),
        ([], ValueError, "got none"),
        ([_DIGEST, 7], ValueError, "got \\['7'\\]"),
        (7, TypeError, "a digest or an iterable of digests, got int"),
    ],
)
def test_pinned_path_refuses_what_is_not_a_digest(digests, error, message) -> None:
    with pytest.raises(error, match=message):
        PinnedPath("w.bin", digests)


def test_pinned_path_refuses_what_is_not_a_path() -> None:
    with pytest.raises(TypeError, match="path must be a path"):
        PinnedPath(3, _DIGEST)  # type: ignore[arg-type]


def test_build_model_loads_a_pinned_file_only_with_the_checked_bytes(tmp_path: Path) -> None:
    source = build_model("resnet18", num_classes=2, lap="none").eval()
    file = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), str(file))
    checked = hashlib.sha256(file.read_bytes()).hexdigest()
    loaded = build_model(
        "resnet18", num_classes=2, lap="none", pretrained=PinnedPath(file, checked)
    )
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="changed after it was checked"):
        build_model("resnet18", num_classes=2, lap="none", pretrained=PinnedPath(file, _DIGEST))


def test_a_run_swapped_after_its_check_is_not_loaded(run_copy: Path) -> None:
    weights = run_copy / "model.safetensors"
    pinned = pretrained_weights(run_copy)
    assert isinstance(pinned, PinnedPath) and pinned == str(weights)
    assert pinned.sha256 == {hashlib.sha256(weights.read_bytes()).hexdigest()}
    arch = TINY["arch"]
    lap, config = TINY["lap"], json.loads((run_copy / "config.json").read_text())
    sizes = len(config["classes"]), config["in_channels"]
    net, _ = build_classifier(
        arch, *sizes, lap, 1, pretrained=str(run_copy), pretrained_file=pinned
    )
    stored = {k.removeprefix("net."): v for k, v in load_file(str(weights)).items()}
    for key, value in net.state_dict().items():  # the checked file's tensors, all of them
        torch.testing.assert_close(value, stored[key], rtol=0, atol=0)
    save_file(_changed_copy(weights), str(weights))  # swapped after the check
    with pytest.raises(ValueError, match=r"model\.safetensors changed after it was checked"):
        build_classifier(arch, *sizes, lap, 1, pretrained=str(run_copy), pretrained_file=pinned)


def test_train_refuses_pretrained_weights_swapped_after_the_check(
    run_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = run_copy / "model.safetensors"
    swapped = _changed_copy(weights)
    check = loading.check_integrity

    def check_then_swap(*args, **kwargs):
        digest = check(*args, **kwargs)
        save_file(swapped, str(weights))  # another file where the checked one was
        return digest

    monkeypatch.setattr(loading, "check_integrity", check_then_swap)
    out = tmp_path / "new"
    args = [
        "train", "--data", TINY["data"], "--out", str(out), "--arch", TINY["arch"],
        "--epochs", "1", "--n-images", str(TINY["n_images"]), "--image-size",
        str(TINY["image_size"]), "--batch-size", str(TINY["batch_size"]), "--no-progress",
        "--accelerator", "cpu", "--devices", "1", "--pretrained", str(run_copy),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "model.safetensors changed after it was checked" in errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()
