"""``sanity_check``'s numbers against the model-parameter randomization test written out
(Adebayo et al. 2018, section 3): a three-unit model re-initialised by hand, cascading from the
classifier down and one unit at a time, each unit after ``torch.manual_seed(seed + its forward
position)``; per step the mean over the images of Spearman's rho of the absolute maps (slow
average ranks); the summary at full cascading randomization, or the mean over the independent
steps when only those ran."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from torchlap.evaluate.sanity import sanity_check

SEED = 0  # sanity_check's default seed


def _model() -> nn.Sequential:
    torch.manual_seed(7)  # not the seeds of the re-initialisations
    return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).eval()  # fmt: skip


def _explain(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """Input times gradient of the target logit, summed over the channels (signed)."""
    images = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(images).gather(1, targets[:, None]).sum(), images)
    return (grad * images).sum(1).detach()


def _rho(a: list[float], b: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        return [sum(w < v for w in values) + (sum(w == v for w in values) + 1) / 2 for v in values]

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def _mean_rho(reference: Tensor, maps: Tensor) -> float:
    values = [
        _rho(reference[i].abs().flatten().tolist(), maps[i].abs().flatten().tolist())
        for i in range(len(maps))
    ]
    return sum(values) / len(values)


def _reference(model: nn.Sequential, images: Tensor, targets: Tensor) -> dict[str, list]:
    units = [0, 2, 5]  # the layers with parameters, in forward order
    reference = _explain(model, images, targets)
    out: dict[str, list] = {"cascading": [], "independent": []}
    cascade = copy.deepcopy(model)
    for position in reversed(range(len(units))):
        torch.manual_seed(SEED + position)
        cascade[units[position]].reset_parameters()
        out["cascading"].append(_mean_rho(reference, _explain(cascade, images, targets)))
        alone = copy.deepcopy(model)
        torch.manual_seed(SEED + position)
        alone[units[position]].reset_parameters()
        out["independent"].append(_mean_rho(reference, _explain(alone, images, targets)))
    return out


@pytest.fixture(scope="module")
def case() -> tuple[nn.Sequential, Tensor, Tensor, dict[str, list]]:
    model = _model()
    images = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([2, 0])
    return model, images, targets, _reference(model, images, targets)


def test_each_step_and_the_cascading_summary_match_the_written_out_test(case) -> None:
    model, images, targets, expected = case
    result = sanity_check(model, images, targets, _explain, seed=SEED, threshold=0.9)
    assert result["units_forward_order"] == ["0", "2", "5"] and result["n_images"] == 2
    for mode in ("cascading", "independent"):
        assert result[mode]["steps"] == ["5", "2", "0"]
        torch.testing.assert_close(
            torch.tensor(result[mode]["spearman_abs"], dtype=torch.float64),
            torch.tensor(expected[mode], dtype=torch.float64), atol=1e-6, rtol=0,
        )  # fmt: skip
        assert len(result[mode]["ssim"]) == 3 and result[mode]["n_excluded"] == [0, 0, 0]
    summary = result["summary"]
    assert summary["at"] == "full cascading randomization"
    assert summary["spearman_abs"] == result["cascading"]["spearman_abs"][-1]
    assert summary["ssim"] == result["cascading"]["ssim"][-1]
    assert result["passed"] is (expected["cascading"][-1] < 0.9)


def test_the_independent_summary_is_the_mean_over_its_steps(case) -> None:
    model, images, targets, expected = case
    result = sanity_check(model, images, targets, _explain, modes=("independent",))
    assert "cascading" not in result
    summary = result["summary"]
    assert summary["at"] == "mean over the independent steps"
    assert summary["spearman_abs"] == pytest.approx(sum(expected["independent"]) / 3, abs=1e-6)
    assert summary["ssim"] == pytest.approx(sum(result["independent"]["ssim"]) / 3)
    assert result["passed"] is (summary["spearman_abs"] < 0.5)


def test_images_that_are_not_a_non_empty_batch_are_refused_before_any_map() -> None:
    calls: list[int] = []

    def spy(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        calls.append(1)
        return _explain(model, images, targets)

    model = _model()
    message = r"images must be a non-empty \(N, C, H, W\) tensor"
    for images in (torch.rand(0, 3, 5, 5), torch.rand(3, 5, 5), [[0.0]]):
        with pytest.raises(ValueError, match=message):
            sanity_check(model, images, torch.zeros(0, dtype=torch.long), spy)  # type: ignore[arg-type]
    images, targets = torch.rand(2, 3, 5, 5), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"targets must be a \(2,\) tensor of classes"):
        sanity_check(model, images, targets[:1], spy)
    with pytest.raises(ValueError, match=r"constant_maps must be one of \('score', 'exclude'\)"):
        sanity_check(model, images, targets, spy, constant_maps="drop")
    assert not calls
    one = sanity_check(model, torch.rand(1, 3, 5, 5), torch.tensor([1]), spy, modes=("cascading",))
    assert one["n_images"] == 1 and len(one["cascading"]["spearman_abs"]) == 3
