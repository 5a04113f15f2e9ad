"""Model-parameter randomization test (Adebayo et al. 2018): units, order, copies, similarity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from torchlap.evaluate.sanity import (
    randomization_units,
    randomized_models,
    sanity_check,
    spearman_abs,
    ssim_abs,
)
from torchlap.explainers import explain
from torchlap.models import lapify
from torchlap.train.wrapping import NormalizedClassifier, SmallCNN


def lap_model() -> nn.Module:
    torch.manual_seed(7)  # not the sanity seed: re-initialising layer1 must change it
    net = SmallCNN(3, width=4)
    lapify(net)
    return NormalizedClassifier(net, [0.5] * 3, [0.25] * 3).eval()


def snapshot(model: nn.Module) -> dict:
    return {
        "attributes": {n: sorted(vars(m)) for n, m in model.named_modules()},
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in model.modules()
        ),
    }


def gradcam(model, images, targets):
    return explain(model, images, "gradcam", targets)


def test_original_model_untouched_bitwise():
    model = lap_model()
    model.train()  # a flag that must survive too
    before = snapshot(model)
    images = torch.rand(2, 3, 16, 16)
    result = sanity_check(model, images, torch.tensor([0, 2]), gradcam)
    after = snapshot(model)
    assert before["training"] == after["training"]
    assert before["attributes"] == after["attributes"]
    assert before["hooks"] == after["hooks"] == 0
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert result["cascading"]["steps"][0] == "net.fc"


def test_units_of_a_lap_model_in_forward_order():
    units = randomization_units(lap_model(), torch.rand(1, 3, 16, 16))
    names = [u.name for u in units]
    # SmallCNN stages are blocks; each LAP layer is a unit of its own, after its stage
    assert names == ["net.layer1", "net.layer2", "net.layer3", "net.layer3.pool", "net.avgpool",
                     "net.fc"]  # fmt: skip
    stage3 = units[2].modules
    assert "net.layer3.conv" in stage3 and not any(".pool" in n for n in stage3)
    assert "net.layer3.pool.scorer.heads.0" in units[3].modules


def changed_units(model, copy_, units):
    trained = dict(model.named_parameters())
    changed = set()
    for unit in units:
        for name, param in copy_.named_parameters():
            owner = name.rsplit(".", 1)[0]
            if owner in unit.modules and not torch.equal(param, trained[name]):
                changed.add(unit.name)
    return changed


def test_cascade_order_is_from_the_classifier_down_and_independent_is_one_unit():
    model = lap_model()
    units = randomization_units(model, torch.rand(1, 3, 16, 16))
    names = [u.name for u in units]
    seen = []
    for step, (name, copy_) in enumerate(randomized_models(model, units, "cascading", seed=3)):
        seen.append(name)
        # after step k exactly the k+1 last units (in forward order) are random
        assert changed_units(model, copy_, units) == set(names[len(names) - step - 1 :])
    assert seen == names[::-1]
    for name, copy_ in randomized_models(model, units, "independent", seed=3):
        assert changed_units(model, copy_, units) == {name}


def test_same_unit_gets_same_weights_in_both_modes_and_caller_rng_untouched():
    model = lap_model()
    units = randomization_units(model, torch.rand(1, 3, 16, 16))
    state = torch.get_rng_state()
    cascade = {n: copy_.net.fc.weight.clone() for n, copy_ in randomized_models(model, units)}
    independent = dict(
        (n, c.net.fc.weight.clone()) for n, c in randomized_models(model, units, "independent")
    )
    assert torch.equal(cascade["net.fc"], independent["net.fc"])
    assert torch.equal(torch.get_rng_state(), state)


def slow_spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho from its definition: Pearson correlation of average ranks."""

    def ranks(values):
        out = []
        for v in values:
            less = sum(1 for w in values if w < v)
            equal = sum(1 for w in values if w == v)
            out.append(less + (equal + 1) / 2)
        return out

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb)


def test_spearman_abs_matches_a_slow_reference_with_ties_and_signs():
    generator = torch.Generator().manual_seed(1)
    a = torch.randint(-3, 4, (4, 5, 6), generator=generator).float()  # many ties, signed
    b = torch.randn(4, 5, 6, generator=generator)
    pairs = [(a[i].abs().flatten().tolist(), b[i].abs().flatten().tolist()) for i in range(4)]
    expected = torch.tensor([slow_spearman(x, y) for x, y in pairs])
    torch.testing.assert_close(spearman_abs(a, b), expected)
    scipy = pytest.importorskip("scipy.stats")
    for i in range(4):
        rho = scipy.spearmanr(a[i].abs().flatten(), b[i].abs().flatten())[0]
        assert spearman_abs(a[i : i + 1], b[i : i + 1]).item() == pytest.approx(rho, abs=1e-6)


def test_constant_maps_are_scored_or_excluded():
    a = torch.zeros(3, 4, 4)
    b = torch.rand(3, 4, 4)
    b[2] = 0
    torch.testing.assert_close(spearman_abs(a, b), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.isnan(spearman_abs(a, b, constant_maps="exclude")).all()
    with pytest.raises(ValueError, match="constant_maps"):
        spearman_abs(a, b, constant_maps="drop")
    with pytest.raises(ValueError, match="same shape"):
        spearman_abs(a, b[:, :2])


def test_ssim_of_identical_maps_is_one_and_of_unrelated_maps_low():
    a = torch.rand(2, 16, 16)
    torch.testing.assert_close(ssim_abs(a, a), torch.ones(2))
    torch.testing.assert_close(ssim_abs(a, -2 * a), torch.ones(2))  # abs, min-max normalised
    assert (ssim_abs(a, torch.rand(2, 16, 16)) < 0.5).all()
    skimage = pytest.importorskip("skimage.metrics")
    x, y = a[0], torch.rand(16, 16)
    x, y = (x - x.min()) / (x.max() - x.min()), (y - y.min()) / (y.max() - y.min())
    ref = skimage.structural_similarity(
        x.numpy(), y.numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip
    ours = ssim_abs(x[None], y[None]).item()
    assert ours == pytest.approx(ref, abs=0.05)  # border handling differs (reflect vs crop)


def test_a_weight_independent_map_fails_and_gradcam_passes():
    model = lap_model()
    images = torch.rand(3, 3, 16, 16)
    targets = torch.tensor([0, 1, 2])

    def edge_detector(m, x, t):  # ignores the model
        return x.diff(dim=-1, append=x[..., -1:]).abs().sum(1)

    ignored = sanity_check(model, images, targets, edge_detector, threshold=0.5)
    assert ignored["summary"]["spearman_abs"] == pytest.approx(1.0)
    assert ignored["passed"] is False
    assert all(v == pytest.approx(1.0) for v in ignored["independent"]["spearman_abs"])
    faithful = sanity_check(model, images, targets, gradcam, modes=("cascading",))
    assert faithful["summary"]["spearman_abs"] < 0.5 and faithful["passed"] is True
    assert "independent" not in faithful


def test_bad_options_are_refused_before_work():
    model = lap_model()
    images = torch.rand(2, 3, 16, 16)
    calls = []

    def spy(m, x, t):
        calls.append(1)
        return x.mean(1)

    for kwargs, match in [
        ({"modes": ("downward",)}, "modes"),
        ({"granularity": "neuron"}, "granularity"),
        ({"reseed": "never"}, "reseed"),
        ({"threshold": "high"}, "threshold"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            sanity_check(model, images, torch.tensor([0, 1]), spy, **kwargs)
    with pytest.raises(ValueError, match="targets"):
        sanity_check(model, images, torch.tensor([0]), spy)
    assert not calls


def test_spearman_per_layer_matches_quantus_mprt():
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 3),
    ).eval()  # fmt: skip
    x = torch.rand(5, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1])

    def saliency(m, images, targets):
        images = images.clone().requires_grad_(True)
        score = m(images).gather(1, targets.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score, images)
        return grad[:, 0]

    def quantus_explain(model, inputs, targets, **kwargs):
        inputs = torch.as_tensor(inputs)
        return saliency(model, inputs, torch.as_tensor(targets)).unsqueeze(1).detach().numpy()

    metric = quantus.MPRT(layer_order="top_down", seed=42, disable_warnings=True)
    scores = metric(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None,
        explain_func=quantus_explain, device="cpu",
    )  # fmt: skip
    # Quantus re-seeds with seed + 1 = 43 before every layer, walking modules with
    # reset_parameters from the last to the first
    ours = sanity_check(
        model, x, y, saliency, modes=("cascading",), granularity="layer", seed=43, reseed="fixed"
    )
    assert ours["cascading"]["steps"] == ["5", "2", "0"]
    layer_names = [k for k in scores if k != "original"]
    assert layer_names == ["5", "2", "0"]
    for step, name in enumerate(layer_names):
        assert ours["cascading"]["spearman_abs"][step] == pytest.approx(
            float(np.mean(scores[name])), abs=1e-5
        )
    # the cascade really changes the maps, so the comparison is not trivially 1 == 1
    assert ours["cascading"]["spearman_abs"][-1] < 0.9


def _peer_models() -> dict[str, nn.Module]:
    """A LAP model and the peers that keep the maps of their last pass (BLA, L2X-F, ante-hoc)."""
    from torchlap.models import blaify
    from torchlap.models.antehoc import AnteHocModel

    torch.manual_seed(0)
    models = {"lap": lap_model()}
    for variant, extra in (("bla", {}), ("l2x-f", {"k": 2})):
        net, _ = blaify(SmallCNN(3, width=4), variant, input_size=32, **extra)
        models[variant] = net.eval()
    models["antehoc"] = AnteHocModel(SmallCNN(3, width=4), eta=2).eval()
    return models


@pytest.mark.parametrize("name", ["lap", "bla", "l2x-f", "antehoc"])
def test_randomized_copies_of_a_model_that_kept_graph_maps(name):
    # the sanity checks copy a model right after explaining it: a gradient method leaves maps
    # holding autograd graph nodes in the self-explaining modules, which deepcopy refuses
    model = _peer_models()[name]
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(images).sum().backward()  # a pass with gradients: the kept maps hold the graph
    held = [m for m in model.modules() if getattr(m, "maps", None) is not None]
    assert held, "the model should keep maps of its last pass"
    units = randomization_units(model, images.detach())
    copies = list(randomized_models(model, units, mode="cascading", seed=0))
    assert len(copies) == len(units)
    copy_ = copies[-1][1]
    assert all(getattr(m, "maps", None) is None for m in copy_.modules())  # fresh, no maps
    assert all(getattr(m, "maps", None) is not None for m in held)  # the original keeps them


def test_a_block_that_calls_its_lap_first_follows_that_lap():
    # LapResidualBlock.forward runs self.lap(x) before its convolutions: the block is ordered
    # by its first own module called (conv1), after its LAP, so the cascade randomizes the
    # convolutions above the LAP scorer before it (it went the other way)
    torch.manual_seed(0)
    model, _ = lapify(torchvision.models.resnet18(num_classes=2), where="resnet18")
    names = [u.name for u in randomization_units(model.eval(), torch.rand(1, 3, 64, 64))]
    for stage in ("layer2", "layer3", "layer4"):
        order = [names.index(n) for n in (f"{stage}.0.lap", f"{stage}.0", f"{stage}.1")]
        assert order == sorted(order), (stage, names)
    assert names[0] == "conv1" and names[-1] == "fc"
