"""Which maps and which model ``evaluate_method`` scores: under ``target="label"`` the label
class's maps are the explained ones (none explained again for Drop/Inc/Win); a model that is
not a normalising wrapper (only a ``net`` attribute, or only a ``normalize``) is scored as a
whole, on [0, 1] images, like any model."""

from __future__ import annotations

import pytest
import torch
from synthetic_eval import channel_model
from synthetic_eval import split as synthetic_split
from torch import nn

from torchlap.evaluate.core import EvalData, EvaluateOptions, evaluate_method
from torchlap.explainers import explain
from torchlap.metrics import drop_inc_win

SIZE = 8
DEVICE = torch.device("cpu")
OPTIONS = dict(ks=(50,), stability_images=1, stability_fractions=(0.1,), tie_draws=1)


class Shifted(nn.Module):
    """A model holding its classifier as ``net`` behind a transform of its own (no
    ``normalize``): its logits are not ``net``'s on the same images."""

    def __init__(self) -> None:
        super().__init__()
        self.net = channel_model()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.flip(1) * 3.0)


class Named(nn.Module):
    """A model with a method called ``normalize`` (not an input transform of a wrapped net)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = channel_model()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images - 10.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images.flip(1))


def split(n: int, seed: int) -> EvalData:
    """``n`` random 8-pixel images, each with the box of rows 1-4, columns 2-5."""
    return synthetic_split(n, seed, SIZE, [(1, 2, 4, 4)] * n)


def test_under_target_label_no_map_is_explained_again_for_drop_inc_win() -> None:
    model = channel_model()
    test, val = split(7, 0), split(3, 1)
    with torch.no_grad():
        wrong = int((model(test.images).argmax(1) != test.labels).sum())
    assert wrong > 0
    options = EvaluateOptions(methods=("gradcam",), target="label", **OPTIONS)
    out, _ = evaluate_method("gradcam", model, test, val, test.labels, val.labels, options, DEVICE)
    faithfulness = out["faithfulness"]
    assert faithfulness["drop_inc_win_label_maps"] == {"n_explained_again": 0}
    assert faithfulness["keep_top_k_label_maps"] == {"n_explained_again": 0}
    assert faithfulness["keep_top_k_prediction_maps"] == {"n_explained_again": wrong}


@pytest.mark.parametrize("wrapper", [Shifted, Named])
def test_a_model_that_is_not_a_normalizing_wrapper_is_scored_whole(wrapper: type) -> None:
    torch.manual_seed(0)
    model = wrapper().eval()
    test, val = split(6, 0), split(3, 1)
    options = EvaluateOptions(methods=("gradcam",), target="label", **OPTIONS)
    out, _ = evaluate_method("gradcam", model, test, val, test.labels, val.labels, options, DEVICE)
    maps = explain(model, test.images, "gradcam", test.labels)
    expected = drop_inc_win(model, test.images, maps, test.labels)  # the model, on [0, 1] images
    got = out["faithfulness"]["drop_inc_win"]
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value.to_dict()), name
    # the wrapped part alone scores otherwise (the test can tell them apart)
    inner = model.net if wrapper is Shifted else model.body
    other = drop_inc_win(inner, test.images, maps, test.labels)
    assert any(
        other[name].value != pytest.approx(value.value, nan_ok=True)
        for name, value in expected.items()
    )
