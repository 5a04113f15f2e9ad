"""SISE's options at their edges, refused when the explainer is built or by ``check_layers``
before any explanation (mutants of torchlap.explainers.sise that survived): a layer name the
model does not have, repeated layers (the message names each repeated one once), a
``deduplicate`` that is no bool, Eq. 7's ``mu`` at 1, the layers it reports as explained,
and ``check_layers`` checking the images and the layers' forward order."""

from __future__ import annotations

import pytest
import torch
from test_explainers_sise import cnn

from torchlap.explainers import Sise


def counted_model() -> tuple[torch.nn.Module, list[int]]:
    model, calls = cnn(False), []
    model.register_forward_pre_hook(lambda *args: calls.append(1))
    return model, calls


def test_an_unknown_layer_is_refused_when_built() -> None:
    model, calls = counted_model()
    with pytest.raises(ValueError, match="unknown layer '9x'"):
        Sise(model, layers=["1", "9x"])
    assert not calls


def test_repeated_layers_are_refused_naming_each_once() -> None:
    model, calls = counted_model()
    with pytest.raises(ValueError, match=r"layers lists \['1', '4'\] more than once"):
        Sise(model, layers=["1", "4", "1", "4", "7"])
    with pytest.raises(ValueError, match=r"layers lists \['4'\] more than once"):
        Sise(model, layers=["1", "4", "4"])
    assert not calls


@pytest.mark.parametrize("deduplicate", ["yes", 1, None])
def test_deduplicate_must_be_a_bool(deduplicate: object) -> None:
    with pytest.raises(TypeError, match="deduplicate must be a bool"):
        Sise(cnn(False), deduplicate=deduplicate)


def test_mu_at_1_is_refused_and_0_taken() -> None:
    with pytest.raises(ValueError, match=r"mu must be a number in \[0, 1\)"):
        Sise(cnn(False), mu=1.0)
    assert Sise(cnn(False), mu=0.0).mu == 0.0
    assert Sise(cnn(False), mu=0.5).mu == 0.5


def test_the_explained_layers_are_the_given_ones() -> None:
    assert Sise(cnn(False), layers=["1", "4"]).explained_layers() == ["1", "4"]
    assert Sise(cnn(False)).explained_layers() == []


def test_check_layers_refuses_layers_out_of_forward_order() -> None:
    sise = Sise(cnn(False), layers=["4", "1"])
    with pytest.raises(ValueError, match=r"not in forward order; .* pass \['1', '4'\]"):
        sise.check_layers(torch.rand(2, 3, 16, 16))
    Sise(cnn(False), layers=["1", "4"]).check_layers(torch.rand(2, 3, 16, 16))


@pytest.mark.parametrize(
    ("images", "said"),
    [
        (torch.rand(3, 16, 16), r"images must have shape \(B, C, H, W\), got \(3, 16, 16\)"),
        (torch.full((1, 3, 16, 16), float("nan")), "images \\[0\\] .* NaN or infinite"),
    ],
    ids=["3-D", "NaN"],
)
def test_check_layers_checks_the_images(images: torch.Tensor, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        Sise(cnn(False), layers=["1", "4"]).check_layers(images)


def test_a_model_without_a_convolutional_block_is_said() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2)).eval()
    with pytest.raises(ValueError, match="found no convolutional block"):
        Sise(model).check_layers(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="found no convolutional block"):
        Sise(model)(torch.rand(1, 3, 8, 8))
