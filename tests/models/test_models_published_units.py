"""published.py on small stand-ins (no network, no large model): what the builder is given for
a weights enum (weights_kwargs), how a published state dict is adapted before loading
(DenseNet's old key names, auxiliary classifiers), which cached file is trusted, how download
errors are reported, and the tensor checks every loaded state dict goes through."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.hub
import torchvision
from torch import nn

from torchlap.models.published import (
    check_running_variances,
    check_state_tensors,
    load_published,
    weights_kwargs,
)

W = torchvision.models


@pytest.mark.parametrize(
    ("arch", "weights", "expected"),
    [
        ("resnet18", W.ResNet18_Weights.IMAGENET1K_V1, {"num_classes": 1000}),
        ("vit_b_16", W.ViT_B_16_Weights.IMAGENET1K_V1, {"num_classes": 1000, "image_size": 224}),
        (
            "vit_b_16",
            W.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1,
            {"num_classes": 1000, "image_size": 384},
        ),
        (
            "maxvit_t",
            W.MaxVit_T_Weights.IMAGENET1K_V1,
            {"num_classes": 1000, "input_size": (224, 224)},
        ),
        (
            "inception_v3",
            W.Inception_V3_Weights.IMAGENET1K_V1,
            {"num_classes": 1000, "transform_input": True, "init_weights": False},
        ),
        (
            "googlenet",
            W.GoogLeNet_Weights.IMAGENET1K_V1,
            {"num_classes": 1000, "transform_input": True, "init_weights": False},
        ),
    ],
)
def test_weights_kwargs_are_what_torchvisions_builder_sets(arch, weights, expected) -> None:
    kwargs = weights_kwargs(arch, weights, {})
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()} == expected


def test_weights_kwargs_keep_the_users_compatible_choices_and_refuse_a_conflict() -> None:
    inception = W.Inception_V3_Weights.IMAGENET1K_V1
    kept = weights_kwargs("inception_v3", inception, {"transform_input": False, "dropout": 0.2})
    assert kept["transform_input"] is False and kept["dropout"] == 0.2
    assert weights_kwargs("resnet18", W.ResNet18_Weights.IMAGENET1K_V1, {"num_classes": 1000})
    with pytest.raises(ValueError, match=r"arch_kwargs init_weights=True does not fit the weights"):
        weights_kwargs("inception_v3", inception, {"init_weights": True})
    with pytest.raises(ValueError, match=r"image_size=128 .* need image_size=224: leave"):
        weights_kwargs("vit_b_16", W.ViT_B_16_Weights.IMAGENET1K_V1, {"image_size": 128})


class _Dense(nn.Module):
    """features.denselayer1.{norm1, conv1} as DenseNet names them now, and a classifier."""

    def __init__(self, aux: bool = False) -> None:
        super().__init__()
        self.features = nn.Module()
        self.features.denselayer1 = nn.Module()
        self.features.denselayer1.norm1 = nn.BatchNorm2d(2)
        self.features.denselayer1.conv1 = nn.Conv2d(2, 2, 1)
        self.classifier = nn.Linear(2, 2)
        if aux:
            self.aux1 = nn.Linear(2, 2)


def _weights(state: dict[str, torch.Tensor], url: str = "https://h/m/net-0123abcd.pth") -> Any:
    """A stand-in of a torchvision weights enum member serving ``state``."""

    def get_state_dict(**kwargs: Any) -> dict[str, torch.Tensor]:
        if isinstance(state, BaseException):
            raise state
        return dict(state)

    return SimpleNamespace(url=url, name="FAKE", get_state_dict=get_state_dict)


def _old_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """'norm1.weight' -> 'norm.1.weight' (DenseNet's published files, which have no
    num_batches_tracked), written out by hand."""
    renamed = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        for part in ("norm1", "conv1"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        renamed[key] = value
    return renamed


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_densenets_old_key_names_are_renamed_only_for_a_densenet(hub_dir) -> None:
    torch.manual_seed(0)
    source = _Dense()
    published = _old_names(source.state_dict())
    assert "features.denselayer1.norm.1.running_var" in published
    model = _Dense()
    load_published(model, "densenet121", _weights(published))
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(RuntimeError, match="Missing key"):
        load_published(_Dense(), "resnet18", _weights(published))


def test_auxiliary_classifiers_are_dropped_only_when_the_model_lacks_them(hub_dir) -> None:
    with_aux = _Dense(aux=True)
    state = with_aux.state_dict()
    plain = _Dense()
    load_published(plain, "googlenet", _weights(state))  # aux1.* dropped
    assert torch.equal(plain.classifier.weight, with_aux.classifier.weight)
    kept = _Dense(aux=True)
    load_published(kept, "googlenet", _weights(state))
    assert torch.equal(kept.aux1.weight, with_aux.aux1.weight)
    other = {**_Dense().state_dict(), "extra.weight": torch.zeros(1)}
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_published(_Dense(), "googlenet", _weights(other))


def test_published_tensors_are_checked(hub_dir) -> None:
    state = _Dense().state_dict()
    state["classifier.weight"] = state["classifier.weight"].double()
    with pytest.raises(ValueError, match=r"the densenet121 weights FAKE \(https://h/m/net-0123"):
        load_published(_Dense(), "densenet121", _weights(state))


def test_a_cached_file_with_the_published_digest_is_trusted(hub_dir) -> None:
    hub_dir.mkdir(parents=True)
    data = b"the published bytes"
    digest = hashlib.sha256(data).hexdigest()
    (hub_dir / f"net-{digest[:8]}.pth").write_bytes(data)
    state = _Dense().state_dict()
    model = _Dense()
    load_published(model, "resnet18", _weights(state, f"https://h/m/net-{digest[:8]}.pth"))
    assert torch.equal(model.classifier.weight, state["classifier.weight"])
    (hub_dir / "net-00000000.pth").write_bytes(data)
    with pytest.raises(ValueError, match=r"net-00000000\.pth .* is not the published file"):
        load_published(_Dense(), "resnet18", _weights(state, "https://h/m/net-00000000.pth"))
    (hub_dir / "nodigest.pth").write_bytes(data)  # no digits in the name: nothing to check
    load_published(_Dense(), "resnet18", _weights(state, "https://h/m/nodigest.pth"))


def test_download_errors_say_what_to_do(hub_dir) -> None:
    damaged = _weights(RuntimeError('invalid hash value (expected "0123", got "ffff")'))
    with pytest.raises(ValueError, match=r"the download of the resnet18 weights FAKE .* damaged"):
        load_published(_Dense(), "resnet18", damaged)
    other = _weights(RuntimeError("something else"))
    with pytest.raises(RuntimeError, match=r"^something else$"):
        load_published(_Dense(), "resnet18", other)
    offline = _weights(OSError("no route"))
    with pytest.raises(OSError, match=r"cannot download the resnet18 weights FAKE .*no route"):
        load_published(_Dense(), "resnet18", offline)


def test_torchvisions_download_is_hash_checked_and_shows_progress(hub_dir, monkeypatch) -> None:
    calls: list[tuple[str, Any, bool]] = []

    def download(url: str, dst: str, hash_prefix: Any = None, progress: bool = True) -> None:
        calls.append((url, hash_prefix, progress))
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    weights = W.ResNet18_Weights.IMAGENET1K_V1  # resnet18-f37072fd.pth
    with pytest.raises(OSError, match="cannot download"):
        load_published(_Dense(), "resnet18", weights)
    assert calls == [(weights.url, "f37072fd", True)]


def test_a_pickle_refusal_names_its_first_line(hub_dir) -> None:
    import pickle

    first = _weights(pickle.UnpicklingError("  Weights only load failed\nmore detail  "))
    with pytest.raises(ValueError, match=r"\(weights_only=True: Weights only load failed\);"):
        load_published(_Dense(), "resnet18", first)
    empty = _weights(pickle.UnpicklingError(""))
    with pytest.raises(ValueError, match=r"\(weights_only=True: UnpicklingError\);"):
        load_published(_Dense(), "resnet18", empty)


def test_check_state_tensors_refuses_dtypes_and_non_finite_values() -> None:
    own = {"w": torch.zeros(2), "n": torch.zeros(2, dtype=torch.long)}
    check_state_tensors({"w": torch.ones(2), "n": torch.ones(2, dtype=torch.long)}, own, "f")
    with pytest.raises(ValueError, match=r"^f: tensor 'n' is torch\.float32 in the file but"):
        check_state_tensors({"n": torch.ones(2)}, own, "f")
    # a key the model lacks: its dtype is not compared (the caller refuses or drops it)
    check_state_tensors({"other": torch.ones(2, dtype=torch.float64)}, own, "f")
    with pytest.raises(ValueError, match=r"tensor 'w' holds NaN or infinite values"):
        check_state_tensors({"w": torch.tensor([0.0, float("-inf")])}, own, "f")
    with pytest.raises(ValueError, match=r"tensor 'other' holds NaN"):
        check_state_tensors({"other": torch.tensor([float("nan")])}, own, "f")
    with pytest.raises(ValueError, match=r"tensor 'c' holds NaN"):
        check_state_tensors({"c": torch.tensor([complex(0, float("inf"))])}, {}, "f")
    check_state_tensors({"c": torch.tensor([1 + 2j])}, {}, "f")


def test_check_running_variances_refuses_negative_ones() -> None:
    state = {
        "bn1.running_var": torch.tensor([0.0, 1.0]),
        "bn2.running_var": torch.tensor([2.0, -0.5]),
        "bn3.running_var": torch.tensor([-1.0]),
        "bn4.running_var": torch.zeros(0),
        "bn2.weight": torch.tensor([-3.0]),  # not a variance
    }
    with pytest.raises(
        ValueError, match=r"^f: .*\['bn2\.running_var', 'bn3\.running_var'\].* -0\.5"
    ):
        check_running_variances(state, "f")
    check_running_variances({k: v.abs() for k, v in state.items()}, "f")
    check_running_variances({"bn4.running_var": torch.zeros(0)}, "f")
    check_running_variances({}, "f")
    many = {f"bn{i}.running_var": torch.tensor([-1.0 - i]) for i in range(7)}
    with pytest.raises(ValueError, match=r"tensor\(s\) \[('bn\d\.running_var'(, )?){5}\] must"):
        check_running_variances(many, "f")  # five named
