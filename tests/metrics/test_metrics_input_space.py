"""Paper 004's energy maps in the model's input space (``to_input``), stability's
salt-and-pepper values, binary metrics' argmax rule and Drop%/Increase%'s label checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.metrics import binary_classification_metrics, drop_inc_win, drop_increase, stability


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - 0.5) / 0.25


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 3)).eval()


def data(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(6, 3, 6, 6, generator=generator)
    maps = torch.rand(6, 6, 6, generator=generator)
    labels = torch.randint(0, 3, (6,), generator=generator)
    return images, maps, labels


def values(results):
    return {name: result.value for name, result in results.items()}


def test_drop_inc_win_forms_the_energy_map_in_the_model_input_space():
    net = small_net()
    images, maps, labels = data()
    got = drop_inc_win(net, images, maps, labels, to_input=normalise)
    # the same as handing the metric the model's input itself: to_input(images) ⊙ map
    expected = drop_inc_win(net, normalise(images), maps, labels)
    assert values(got) == pytest.approx(values(expected), nan_ok=True)
    # not the pixel-space product (image ⊙ map, normalised afterwards)
    pixel = drop_inc_win(lambda x: net(normalise(x)), images, maps, labels)
    assert values(got) != pytest.approx(values(pixel), nan_ok=True)


def test_to_input_is_checked_before_any_model_pass():
    calls = []

    def model(x):
        calls.append(1)
        return torch.zeros(x.shape[0], 3)

    images, maps, labels = data()
    with pytest.raises(TypeError, match=r"to_input must be None .* or a callable"):
        drop_inc_win(model, images, maps, labels, to_input="normalize")
    with pytest.raises(TypeError, match=r"to_input must be None .* or a callable"):
        stability(model, lambda x, y: x.mean(1), images, labels, to_input=3)
    assert not calls
    with pytest.raises(ValueError, match=r"to_input must return the model's input \(B, C, H, W\)"):
        drop_inc_win(model, images, maps, labels, to_input=lambda x: x.flatten(1))


def test_stability_scores_in_the_model_input_space_with_noise_on_unit_images():
    net = small_net(1)
    images, maps, labels = data(1)
    explained = []

    def explain_fn(inputs, targets):
        explained.append(inputs)
        return inputs.mean(dim=1)

    got = stability(
        net, explain_fn, images, labels, fractions=(0.5,), to_input=normalise, maps=maps
    )
    noisy = explained[-1]  # the explainer sees [0, 1] images with black and white noise
    changed = (noisy != images).any(dim=1, keepdim=True).expand_as(noisy)
    assert set(noisy[changed].unique().tolist()) == {0.0, 1.0}
    clean = drop_inc_win(net, images, maps, labels, variants=("energy",), to_input=normalise)
    dirty = drop_inc_win(
        net, noisy, noisy.mean(dim=1), labels, variants=("energy",), to_input=normalise
    )
    expected = abs(dirty["energy/drop_pct"].value - clean["energy/drop_pct"].value)
    assert got["noise_0.5/change_drop_pct"].value == pytest.approx(expected)


def test_stability_noise_is_black_and_white_with_to_input_whatever_one_pixel_says():
    """With to_input the images are [0, 1] by contract: one value a rounding above 1 must not
    turn every image's noise into its own per-channel range (the batch-wide range test)."""
    net = small_net(1)
    images, maps, labels = data(1)
    images = images * 0.4 + 0.2  # [0.2, 0.6]
    images[0, 0, 0, 0] = 1 + 1e-6
    explained = []

    def explain_fn(inputs, targets):
        explained.append(inputs)
        return inputs.mean(dim=1)

    stability(net, explain_fn, images, labels, fractions=(0.5,), to_input=normalise, maps=maps)
    noisy = explained[-1]
    changed = (noisy != images).any(dim=1, keepdim=True).expand_as(noisy)
    assert set(noisy[changed].unique().tolist()) == {0.0, 1.0}


def test_binary_metrics_predict_the_argmax_of_near_tied_logits():
    logits = torch.tensor([[0.0, 1e-8], [0.0, 1e-8], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 1, 0, 1])
    results = binary_classification_metrics(logits, labels)
    assert logits.argmax(1).tolist() == labels.tolist()
    assert results["accuracy"].value == 1.0  # float32 softmax > 0.5 gave 0.5
    assert results["sensitivity"].value == 1.0
    assert results["balanced_accuracy"].value == 1.0
    # another threshold still thresholds the positive-class probability
    strict = binary_classification_metrics(logits, labels, threshold=0.9)
    assert strict["accuracy"].value == pytest.approx(0.25)  # every sample predicted 0


def test_drop_increase_checks_labels_whenever_given():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    images, maps = torch.rand(3, 3, 4, 4), torch.rand(3, 4, 4)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\)"):
        drop_increase(net, images, maps, torch.tensor([5, 5, 5]))  # target="prediction"
    with pytest.raises(TypeError, match="labels must hold integer class indices"):
        drop_increase(net, images, maps, torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        drop_increase(net, images, maps, torch.tensor([0, 1]))
    assert set(drop_increase(net, images, maps)) == {"drop_pct", "increase_pct"}  # no labels
