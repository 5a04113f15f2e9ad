"""The map helpers every method's evaluation shares (torchlap.evaluate.common): the count of
flat maps against a reference by loops over each map's pixels (the documented rule: max - min
<= tolerance x max(1, max |map|)), the refusal of an empty image tensor, the batches maps are
explained in, and the explainer options a method receives."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

from torchlap.evaluate.common import FLAT_TOLERANCE, explain_all, flat_map_counts, method_options
from torchlap.evaluate.options import EvaluateOptions
from torchlap.explainers import Explainer, registered


def reference_n_flat(maps: Tensor, tolerance: float) -> int:
    """How many maps are flat, pixel by pixel: max - min <= tolerance * max(1, max |x|)."""
    count = 0
    for one in maps:
        values = [float(one[r, c]) for r in range(one.shape[0]) for c in range(one.shape[1])]
        spread = max(values) - min(values)
        scale = max(1.0, max(abs(v) for v in values))
        count += spread <= tolerance * scale
    return count


def maps_of(*rows_of_values: list[float]) -> Tensor:
    """One 2x3 map per sequence of six values (float32, as explainers give them)."""
    return torch.tensor(rows_of_values, dtype=torch.float32).view(-1, 2, 3)


def test_the_flat_maps_are_the_ones_whose_spread_is_within_the_tolerance() -> None:
    maps = maps_of(
        [0.3] * 6,  # constant: flat
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5 + 4e-7],  # within 1e-6 of a [0, 1] map: flat
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5 + 1.3e-6],  # beyond 1e-6 (absolute below 1): not flat
        [1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0 + 2.5e-4],  # relative: flat
        [-1000.0, -1000.0, -1000.0, -1000.0, -1000.0, -1000.0 + 2.5e-4],  # |x|: flat
        [1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0 + 5e-3],  # relative: not flat
        [-0.5, 0.5, -0.5, 0.5, -0.5, 0.5],  # spread 1, around 0: not flat
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # not flat
    )
    expected = reference_n_flat(maps, FLAT_TOLERANCE)
    assert expected == 4  # the case is the one meant: four flat maps
    assert flat_map_counts(maps) == {"n": 8, "n_flat": expected, "tolerance": 1e-6}


def test_a_spread_equal_to_the_tolerance_is_flat() -> None:
    # exactly representable: spread 0.5, scale max(1, 0.75) = 1, and 2.0 * 1.5 = 3.0
    maps = maps_of([0.25, 0.75, 0.25, 0.25, 0.25, 0.25], [1.5, 4.5, 1.5, 1.5, 1.5, 1.5])
    for tolerance in (0.5, 2.0 / 3.0 + 1e-9):
        expected = reference_n_flat(maps, tolerance)
        assert flat_map_counts(maps, tolerance)["n_flat"] == expected
    assert flat_map_counts(maps, 0.5)["n_flat"] == 1  # the first at its bound, the second not
    assert flat_map_counts(maps, 0.5 - 1e-6)["n_flat"] == 0


def test_the_count_is_per_map_whatever_its_shape() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 3, 7, generator=generator)
    maps[1] = 0.25
    maps[3, :, :] = 2.0
    maps[3, 0, 0] = 2.0 + 1e-2  # spread 1e-2 > 1e-6 * 2: not flat
    expected = reference_n_flat(maps, FLAT_TOLERANCE)
    assert expected == 1
    assert flat_map_counts(maps) == {"n": 5, "n_flat": 1, "tolerance": FLAT_TOLERANCE}


class Recording(Explainer):
    """The channel mean; records the size of every batch it explains."""

    batches: ClassVar[list[int]] = []

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        Recording.batches.append(images.shape[0])
        return images.mean(dim=1)


def model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


@pytest.mark.parametrize(("n", "batch_size", "batches"), [(7, 3, [3, 3, 1]), (4, 8, [4])])
def test_maps_are_explained_in_batches_in_image_order(n, batch_size, batches) -> None:
    images = torch.rand(n, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    Recording.batches = []
    with registered("recording", Recording):
        maps = explain_all(model(), images, torch.zeros(n, dtype=torch.long), "recording", {},
                           batch_size, torch.device("cpu"))  # fmt: skip
    assert Recording.batches == batches
    torch.testing.assert_close(maps, images.mean(dim=1))


def test_an_empty_image_tensor_is_refused_with_the_method_named() -> None:
    with (
        registered("recording", Recording),
        pytest.raises(ValueError, match=r"recording: no images to explain \(an empty image"),
    ):
        explain_all(model(), torch.zeros(0, 3, 5, 5), torch.zeros(0, dtype=torch.long),
                    "recording", {}, 4, torch.device("cpu"))  # fmt: skip


def test_a_finite_map_set_counts_no_non_finite_map() -> None:
    counts: list[int] = []
    images = torch.rand(3, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    with registered("recording", Recording):
        explain_all(model(), images, torch.zeros(3, dtype=torch.long), "recording", {}, 2,
                    torch.device("cpu"), nonfinite=counts)  # fmt: skip
    assert counts == [0]


class Seeded(Explainer):
    """An explainer that takes the run facts ``seed`` and ``concept_sets``."""

    run_facts = ("seed", "concept_sets")

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        return images.mean(dim=1)


def test_a_method_receives_the_known_run_facts_it_takes_unless_the_user_gives_them() -> None:
    with registered("seeded", Seeded):
        options = EvaluateOptions(seed=5)
        assert method_options("seeded", options, {"concept_sets": None}) == {"seed": 5}
        assert method_options("seeded", options, {"concept_sets": [[0]], "other": 1}) == {
            "seed": 5, "concept_sets": [[0]],
        }  # fmt: skip
        given = EvaluateOptions(seed=5, method_options={"seeded": {"seed": 9, "n": 2}})
        assert method_options("seeded", given, {"concept_sets": [[1]]}) == {
            "seed": 9, "n": 2, "concept_sets": [[1]],
        }  # fmt: skip
        # the run's facts are never the user's options: the options dict is not changed
        assert given.method_options == {"seeded": {"seed": 9, "n": 2}}


class OneBad(Explainer):
    """The channel mean, with one -inf pixel in the map of the image whose mean is largest."""

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        maps = images.mean(dim=1).clone()
        maps[images.flatten(1).mean(dim=1).argmax(), 2, 2] = float("-inf")
        return maps


def test_a_single_non_finite_map_is_made_flat_and_counted() -> None:
    counts: list[int] = []
    images = torch.rand(3, 3, 5, 5, generator=torch.Generator().manual_seed(3)) * 0.5
    images[1] += 0.5  # image 1's map is the one with -inf (one batch of all three)
    with registered("one_bad", OneBad):
        maps = explain_all(model(), images, torch.zeros(3, dtype=torch.long), "one_bad", {}, 3,
                           torch.device("cpu"), nonfinite=counts)  # fmt: skip
    assert counts == [1]
    assert torch.equal(maps[1], torch.zeros(5, 5))
    torch.testing.assert_close(maps[[0, 2]], images[[0, 2]].mean(dim=1))
