"""The refusals of LAP All and of the LAP map choice at their edges (mutants of
torchlap.explainers.lap that survived): the threshold range, maps of other batch sizes or
ranks, concept sets naming a head no LAP layer has, and maps that are not a layer's LapMaps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from torchlap.explainers.lap import check_fits_a_layer, lap_all, select_lap_map


def maps_of(*shapes: tuple[int, ...]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(*shape, generator=generator) for shape in shapes]


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_lap_all_takes_thresholds_from_0_to_1(threshold: float) -> None:
    lap_all(maps_of((2, 4, 4), (2, 2, 2)), threshold=threshold)


@pytest.mark.parametrize("threshold", [-0.01, 1.01, 1.4])
def test_lap_all_refuses_thresholds_outside_0_to_1(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        lap_all(maps_of((2, 4, 4), (2, 2, 2)), threshold=threshold)


@pytest.mark.parametrize(
    ("maps", "shown"),
    [
        (maps_of((2, 4, 4), (3, 2, 2)), "[(2, 4, 4), (3, 2, 2)]"),  # another batch size
        (maps_of((2, 4, 4), (2, 1, 2, 2)), "[(2, 4, 4), (2, 1, 2, 2)]"),  # a 4-D map
        (maps_of((2, 4, 4), (2, 2)), "[(2, 4, 4), (2, 2)]"),  # a 2-D map
        ([*maps_of((2, 4, 4)), "map"], "[(2, 4, 4), 'str']"),  # not a tensor
    ],
    ids=["batch", "4-D", "2-D", "str"],
)
def test_lap_all_refuses_maps_that_are_not_one_batch_of_2d_maps(maps, shown) -> None:
    with pytest.raises(
        ValueError, match="expects maps of shape \\(B, h, w\\) with the same B"
    ) as e:
        lap_all(maps)
    assert str(e.value).endswith(shown)


def laps(*heads: int) -> dict[str, SimpleNamespace]:
    return {f"lap{i}": SimpleNamespace(n_concepts=n) for i, n in enumerate(heads)}


def test_concept_sets_fit_when_some_layer_has_their_highest_head() -> None:
    check_fits_a_layer({0: [0], 1: [2]}, laps(3, 2))  # head 2 exists in lap0
    check_fits_a_layer({}, laps(1))  # no set names a head
    check_fits_a_layer({0: []}, laps(1))


def test_concept_sets_naming_a_head_no_layer_has_are_refused() -> None:
    # head 3 is one past lap0's last head (indices 0-2)
    with pytest.raises(ValueError, match="concept_sets name concept head 3") as e:
        check_fits_a_layer({0: [0], 1: [3]}, laps(3, 2))
    assert "(heads per layer: lap0: 3, lap1: 2)" in str(e.value)
    assert "head indices below 3" in str(e.value)


@pytest.mark.parametrize(
    "maps",
    [
        SimpleNamespace(concepts=torch.rand(1, 2, 4, 4), score=None),
        SimpleNamespace(concepts=None, score=torch.rand(1, 1, 4, 4)),
        SimpleNamespace(score=torch.rand(1, 1, 4, 4)),
    ],
    ids=["no score", "no concepts", "missing concepts"],
)
def test_select_lap_map_refuses_what_is_not_a_layers_lap_maps(maps) -> None:
    with pytest.raises(TypeError, match="maps must be one LAP layer's LapMaps"):
        select_lap_map(maps, torch.tensor([0]), 2)


def lap_maps(heads: int) -> SimpleNamespace:
    generator = torch.Generator().manual_seed(1)
    return SimpleNamespace(
        concepts=torch.rand(2, heads, 4, 4, generator=generator),
        score=torch.rand(2, 1, 4, 4, generator=generator),
    )


@pytest.mark.parametrize("head", [0, 1, 2])
def test_select_lap_map_takes_every_head_the_layer_has(head: int) -> None:
    maps = lap_maps(3)
    chosen = select_lap_map(maps, torch.tensor([0, 1]), 2, head=head)
    torch.testing.assert_close(chosen, maps.concepts[:, head])


@pytest.mark.parametrize("head", [-1, 3])
def test_select_lap_map_refuses_a_head_the_layer_lacks(head: int) -> None:
    with pytest.raises(ValueError, match=f"head {head} does not exist: this LAP layer has 3 heads"):
        select_lap_map(lap_maps(3), torch.tensor([0, 1]), 2, head=head)


@pytest.mark.parametrize("head", ["concepts", 1.0, True])
def test_select_lap_map_refuses_a_head_that_is_no_int_or_score(head: object) -> None:
    with pytest.raises(ValueError, match="head must be None, an int or 'score', got"):
        select_lap_map(lap_maps(3), torch.tensor([0, 1]), 2, head=head)


def one_map(batch: int) -> SimpleNamespace:
    return SimpleNamespace(concepts=torch.rand(batch, 2, 4, 4), score=torch.rand(batch, 1, 4, 4))


@pytest.mark.parametrize(
    ("batch", "target", "said"),
    [
        (1, torch.tensor([2]), "got classes from 2 to 2"),  # a batch of one is range-checked too
        (2, torch.tensor([0, -1]), "got classes from -1 to 0"),
        (2, torch.tensor([[0], [1]]), r"got shape \(2, 1\)"),
        (2, torch.tensor([0, 1], device="meta"), "target is on the meta device"),
    ],
    ids=["one image", "negative", "2-D", "meta"],
)
def test_select_lap_map_refuses_targets_that_are_not_class_indices(batch, target, said) -> None:
    with pytest.raises(ValueError, match=said):
        select_lap_map(one_map(batch), target, 2)


def test_a_layer_with_one_head_per_class_gives_each_image_its_target_head() -> None:
    maps = lap_maps(3)
    maps.concepts = torch.rand(3, 3, 4, 4)  # three images, one head per class
    maps.score = torch.rand(3, 1, 4, 4)
    target = torch.tensor([2, 0, 1])
    chosen = select_lap_map(maps, target, 3)
    for image, cls in enumerate(target.tolist()):
        torch.testing.assert_close(chosen[image], maps.concepts[image, cls])


@pytest.mark.parametrize("heads", ["01", 1, None], ids=["str", "int", "None"])
def test_concept_sets_whose_heads_are_no_list_are_refused(heads: object) -> None:
    with pytest.raises(ValueError, match=r"concept_sets\[0\] must be a list of concept indices"):
        select_lap_map(lap_maps(3), torch.tensor([0, 1]), 2, concept_sets={0: heads})
