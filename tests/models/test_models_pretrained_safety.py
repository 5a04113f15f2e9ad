"""--pretrained with a torchvision weights name: torch's hub cache file is unpickled with
weights_only=True (a pickle that would run code is refused), a cached file that is not the
published one is refused, an offline download says what to do instead, the model is the one
torchvision's builder makes for the weights, and every weights file has its dtypes and values
checked. No network here: torch.hub's download is monkeypatched."""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.hub
import torchvision
import torchvision.models._api as torchvision_api
from safetensors.torch import save_file

from torchlap.models import build_model

URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


class _CreatesFile:
    """Unpickling it creates a file: the harmless stand-in of the audit's os.system payload."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An empty torch hub cache under tmp_path and a fake download serving ``hub["serve"]``
    (an object to torch.save, or an exception to raise); ``hub["urls"]`` lists the calls."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    state: dict[str, Any] = {"serve": None, "urls": []}

    def download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True):
        state["urls"].append(url)
        if isinstance(state["serve"], BaseException):
            raise state["serve"]
        torch.save(state["serve"], dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    state["checkpoints"] = tmp_path / "torch" / "hub" / "checkpoints"
    return state


def test_a_downloaded_pickle_that_would_run_code_is_refused(hub, tmp_path) -> None:
    marker = tmp_path / "unpickled.txt"
    hub["serve"] = {"conv1.weight": _CreatesFile(marker)}
    with pytest.raises(ValueError, match=r"resnet18-f37072fd\.pth.*refused to unpickle"):
        build_model("resnet18", 2, lap="none", pretrained="IMAGENET1K_V1")
    assert not marker.exists()
    assert hub["urls"] == [URL]


def test_a_planted_file_in_the_hub_cache_is_refused_before_it_is_read(hub, tmp_path) -> None:
    marker = tmp_path / "unpickled.txt"
    hub["checkpoints"].mkdir(parents=True)
    torch.save({"x": _CreatesFile(marker)}, hub["checkpoints"] / "resnet18-f37072fd.pth")
    with pytest.raises(ValueError, match=r"not the published file.*f37072fd.*--pretrained PATH"):
        build_model("resnet18", 2, lap="none", pretrained="IMAGENET1K_V1")
    assert not marker.exists() and hub["urls"] == []


def test_offline_the_error_names_the_weights_the_url_and_a_local_file(hub) -> None:
    hub["serve"] = urllib.error.URLError("no network (monkeypatched)")
    with pytest.raises(OSError, match=r"IMAGENET1K_V1 from " + URL.replace(".", r"\.")) as error:
        build_model("resnet18", 2, lap="none", pretrained="DEFAULT")
    assert "local .safetensors file of resnet18 with --pretrained PATH" in str(error.value)


def _torchvision_build(
    monkeypatch: pytest.MonkeyPatch, arch: str, state: dict[str, torch.Tensor], **kwargs: Any
) -> torch.nn.Module:
    """What get_model(arch, weights=DEFAULT) builds when the weights are ``state`` (its own
    loading path, the file read replaced)."""
    with monkeypatch.context() as patch:
        patch.setattr(torchvision_api, "load_state_dict_from_url", lambda *a, **k: dict(state))
        return torchvision.models.get_model(arch, weights="DEFAULT", **kwargs)


_PUBLISHED: dict[str, Callable[[], torch.nn.Module]] = {
    # the published files: Inception/GoogLeNet with their auxiliary classifiers, DenseNet with
    # its old 'norm.1' key names
    "inception_v3": lambda: torchvision.models.inception_v3(aux_logits=True, init_weights=False),
    "googlenet": lambda: torchvision.models.googlenet(aux_logits=True, init_weights=False),
    "densenet121": torchvision.models.densenet121,
}


def _old_densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DenseNet's published layout: 'norm.1' ... names, no num_batches_tracked."""
    import re

    new = re.compile(r"^(.*denselayer\d+\.)(norm|relu|conv)([12])\.(.*)$")
    return {
        new.sub(r"\1\2.\3.\4", k): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }


@pytest.mark.parametrize("arch", sorted(_PUBLISHED))
def test_the_model_is_the_one_torchvision_builds_for_the_weights(hub, monkeypatch, arch) -> None:
    """(torchlap builds Inception/GoogLeNet without their auxiliary classifiers: before the fix
    get_model(weights=..., aux_logits=False) refused these weights.)"""
    torch.manual_seed(0)
    published = _PUBLISHED[arch]().state_dict()
    if arch == "densenet121":
        published = _old_densenet_keys(published)
    hub["serve"] = published
    model = build_model(arch, 1000, lap="none", pretrained="DEFAULT")
    reference = _torchvision_build(monkeypatch, arch, published).state_dict()
    reference = {k: v for k, v in reference.items() if not k.startswith(("AuxLogits.", "aux"))}
    assert list(model.state_dict()) == list(reference)
    for key, value in reference.items():
        assert torch.equal(model.state_dict()[key], value), key
    if arch != "densenet121":  # the RGB re-normalisation of the weights, no auxiliary heads
        assert model.transform_input is True and model.aux_logits is False


def test_weights_keep_their_layers_and_leave_a_new_classifier_fresh(hub) -> None:
    torch.manual_seed(0)
    published = torchvision.models.resnet18().state_dict()
    hub["serve"] = published
    model = build_model("resnet18", 3, in_channels=1, lap="none", pretrained="IMAGENET1K_V1")
    assert torch.equal(model.layer4[1].conv2.weight, published["layer4.1.conv2.weight"])
    assert torch.equal(model.conv1.weight, published["conv1.weight"].sum(1, keepdim=True))
    assert model.fc.out_features == 3
    with pytest.raises(ValueError, match=r"arch_kwargs num_classes=5 does not fit"):
        build_model("resnet18", 2, lap="none", pretrained="DEFAULT", arch_kwargs={"num_classes": 5})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.double(), r"'layer1\.0\.conv1\.weight' is torch\.float64 .* torch\.float32"),
        (lambda t: t.long(), r"'layer1\.0\.conv1\.weight' is torch\.int64 .* torch\.float32"),
        (lambda t: torch.full_like(t, float("nan")), r"'layer1\.0\.conv1\.weight' holds NaN"),
        (
            lambda t: t.index_fill(0, torch.tensor([0]), float("inf")),
            r"'layer1\.0\.conv1\.weight' holds NaN or inf",
        ),
    ],
)
def test_weights_of_another_dtype_or_not_finite_are_refused(hub, tmp_path, change, message):
    published = torchvision.models.resnet18().state_dict()
    published["layer1.0.conv1.weight"] = change(published["layer1.0.conv1.weight"])
    hub["serve"] = published  # torchvision's weights
    with pytest.raises(ValueError, match=message):
        build_model("resnet18", 2, lap="none", pretrained="IMAGENET1K_V1")
    path = tmp_path / "weights.safetensors"  # a --pretrained file
    save_file(published, str(path))
    with pytest.raises(ValueError, match=str(path) + ": tensor " + message):
        build_model("resnet18", 2, lap="none", pretrained=str(path))


def test_module_versions_of_the_published_file_are_kept(hub) -> None:
    """MNASNet reads its version from the state dict's ``_metadata``: a plain dict copy of the
    loaded file dropped it and every pretrained MNASNet failed to build."""
    torch.manual_seed(0)
    published = torchvision.models.mnasnet0_5().state_dict()
    assert published._metadata[""]["version"] == 2  # what the published file carries
    hub["serve"] = published
    model = build_model("mnasnet0_5", 1000, lap="none", pretrained="IMAGENET1K_V1")
    assert torch.equal(model.layers[0].weight, published["layers.0.weight"])
