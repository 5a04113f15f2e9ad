"""The ``lap`` explainer's options at their edges, checked when it is built (mutants of
torchlap.explainers.lap that survived): a layer that is no name or index (a float, a bool),
the deepest-first index ``-len`` and head 0 (both accepted), a threshold past 1 and an
``include_common`` that is no bool (refused before any forward), and the facts the evaluation
reads: LAP All's ranking variant for the ranking metrics, paper 000's threshold of 0.5."""

from __future__ import annotations

import pytest
import torch
from test_explainers_lap import lap_cnn

import torchlap
from torchlap.explainers import LapExplainer, get


def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def captured(model: torch.nn.Module, batch: torch.Tensor, layer: int) -> torch.Tensor:
    """The ``layer``-th LAP layer's concept maps (B, n, h, w) of a plain forward of ``batch``."""
    model(batch)
    return list(torchlap.attention_maps(model).values())[layer].concepts


@pytest.mark.parametrize("layer", [1.5, True, None], ids=["float", "bool", "None"])
def test_a_layer_that_is_no_name_or_index_is_refused(layer: object) -> None:
    with pytest.raises(TypeError, match="layer must be 'all', a LAP layer name or an index"):
        LapExplainer(lap_cnn(), layer=layer)


def test_the_index_minus_the_layer_count_is_the_first_layer() -> None:
    model = lap_cnn()  # three LAP layers, one head each
    got = LapExplainer(model, layer=-3).raw(images(), torch.tensor([0, 1]))
    torch.testing.assert_close(got, captured(model, images(), 0)[:, 0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="layer index -4 out of range: the model has 3"):
        LapExplainer(model, layer=-4)


def test_head_0_is_taken() -> None:
    model = lap_cnn(n_concepts=2, num_classes=3)
    got = LapExplainer(model, layer=1, head=0).raw(images(), torch.tensor([1, 2]))
    torch.testing.assert_close(got, captured(model, images(), 1)[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("threshold", [1.01, 1.4, -0.01])
def test_a_threshold_outside_0_to_1_is_refused_when_built(threshold: float) -> None:
    model = lap_cnn()
    calls = []
    model.register_forward_pre_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        LapExplainer(model, threshold=threshold)
    assert not calls
    LapExplainer(model, threshold=1.0)  # the edge itself is taken


@pytest.mark.parametrize("include_common", ["yes", 1, None])
def test_include_common_must_be_a_bool(include_common: object) -> None:
    with pytest.raises(TypeError, match="include_common must be True or False"):
        LapExplainer(lap_cnn(n_concepts=4), concept_sets={0: [0, 3]}, include_common=include_common)


@pytest.mark.parametrize("options", [{}, {"layer": "all", "decay": 0.7}])
def test_the_ranking_metrics_take_lap_all_in_the_ranking_variant(options: dict) -> None:
    got = LapExplainer.ranking_options(options, "unclipped_sum")
    assert got == {**options, "variant": "unclipped_sum"}


@pytest.mark.parametrize("layer", [0, -1, "3"])
def test_a_single_layers_map_has_no_ranking_variant(layer: object) -> None:
    assert LapExplainer.ranking_options({"layer": layer}, "unclipped_sum") is None


def test_lap_maps_are_thresholded_at_papers_one_half() -> None:
    """Paper 000: a LAP map holds probabilities, binarized at 0.5 (nothing fitted)."""
    assert get("lap").native_threshold == 0.5
