"""Which weights a ``.safetensors`` file loads into a model (load_pretrained_file /
build_model(pretrained=PATH)), with state dicts made here in tmp_path (never the network):
RGB first-convolution weights adapted (a slow per-channel reference of the stated rule), a
classifier of another size (the LAST nn.Linear) left fresh, LAP layers' keys allowed to be
missing, a LAP run's discriminative scorers added and loaded, auxiliary classifiers dropped,
everything else that does not fit refused; and the helpers that resize the first
convolution and the classifier and find the modules after a pool."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from torchlap.layers import AdaptiveLocalAttentionPool2d, lap_modules
from torchlap.losses import enable_discriminative_scorers
from torchlap.models import build, lapify
from torchlap.models.build import (
    adapt_input_weight,
    build_model,
    load_pretrained_file,
    modules_after,
)
from torchlap.models.wrapping import SmallCNN


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _reference_adapt(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """The stated rule, one output channel at a time: one channel, the sum of the RGB filters;
    else input channel c is RGB filter c mod C scaled by C / in_channels."""
    out, channels = weight.shape[:2]
    result = torch.zeros(out, in_channels, *weight.shape[2:], dtype=weight.dtype)
    for o in range(out):
        for c in range(in_channels):
            if in_channels == 1:
                for k in range(channels):
                    result[o, 0] += weight[o, k]
            else:
                result[o, c] = weight[o, c % channels] * (channels / in_channels)
    return result


@pytest.mark.parametrize("in_channels", [1, 2, 4, 5, 6, 7])
def test_adapt_input_weight_matches_the_per_channel_rule(in_channels: int) -> None:
    torch.manual_seed(in_channels)
    weight = torch.randn(4, 3, 5, 2)  # (a kernel of another height than 3 and not square)
    adapted = adapt_input_weight(weight, in_channels)
    torch.testing.assert_close(adapted, _reference_adapt(weight, in_channels))
    assert adapt_input_weight(weight, 3) is weight  # RGB to RGB: the same tensor


def test_adapt_input_weight_refusals() -> None:
    weight = torch.randn(2, 3, 1, 1)
    with pytest.raises(TypeError, match=r"weight must be a floating tensor .*got list"):
        adapt_input_weight([[1.0]], 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got shape \(2, 3, 1\) and dtype torch\.float32"):
        adapt_input_weight(weight[..., 0], 1)
    with pytest.raises(TypeError, match=r"dtype torch\.int64"):
        adapt_input_weight(weight.long(), 1)
    with pytest.raises(ValueError, match="weight holds NaN or infinite values"):
        adapt_input_weight(weight.index_fill(0, torch.tensor([1]), float("inf")), 1)
    with pytest.raises(ValueError, match="in_channels must be an int >= 1, got 0"):
        adapt_input_weight(weight, 0)


@pytest.mark.parametrize("in_channels", [1, 4])
def test_rgb_weights_are_adapted_to_the_inputs_others_are_not(tmp_path, in_channels) -> None:
    source = SmallCNN(2, 3)
    path = _save(source.state_dict(), tmp_path / "rgb.safetensors")
    model = SmallCNN(2, in_channels)
    assert load_pretrained_file(model, path, in_channels) == path
    expected = _reference_adapt(source.layer1.conv.weight.detach(), in_channels)
    torch.testing.assert_close(model.layer1.conv.weight.detach(), expected)
    torch.testing.assert_close(model.layer1.conv.bias, source.layer1.conv.bias)
    torch.testing.assert_close(model.layer3.conv.weight, source.layer3.conv.weight)
    # weights of 2 channels are no RGB weights: not adapted, a shape mismatch
    two = _save(SmallCNN(2, 2).state_dict(), tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match=r"shape mismatches \['layer1\.conv\.weight \(8, 2"):
        load_pretrained_file(SmallCNN(2, 4), two, 4)
    # weights for the model's own channels load unchanged
    four = SmallCNN(2, 4)
    load_pretrained_file(SmallCNN(2, 4), _save(four.state_dict(), tmp_path / "4.safetensors"), 4)


def test_build_model_replaces_the_first_convolution_alike() -> None:
    # without weights the first convolution is fresh (nothing to adapt), with the same geometry
    conv = build_model("resnet18", 2, in_channels=5, lap="none").conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (5, 64, (7, 7))
    assert (conv.stride, conv.padding, conv.bias) == ((2, 2), (3, 3), None)


class _TwoHeads(nn.Module):
    """A conv, a hidden linear and the classifier (the LAST nn.Linear)."""

    def __init__(self, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.hidden = nn.Linear(4, 4)
        self.classifier = nn.Linear(4, num_classes, bias=bias)


def test_a_classifier_of_another_size_is_left_fresh_and_only_that(tmp_path, caplog) -> None:
    torch.manual_seed(0)
    source = _TwoHeads(5)
    path = _save(source.state_dict(), tmp_path / "five.safetensors")
    model = _TwoHeads(2)
    fresh = model.classifier.weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger="torchlap"):
        load_pretrained_file(model, path, 3)
    assert "classifier is a classifier for 5 classes, this model has 2: left fresh" in caplog.text
    torch.testing.assert_close(model.classifier.weight.detach(), fresh)
    torch.testing.assert_close(model.hidden.weight, source.hidden.weight)  # not the classifier
    torch.testing.assert_close(model.conv.weight, source.conv.weight)
    # the same size: the classifier loads too
    same = _TwoHeads(5)
    load_pretrained_file(same, path, 3)
    torch.testing.assert_close(same.classifier.weight, source.classifier.weight)
    torch.testing.assert_close(same.classifier.bias, source.classifier.bias)
    # a classifier with other features is another architecture: refused
    other = {**source.state_dict(), "classifier.weight": torch.zeros(5, 6)}
    with pytest.raises(ValueError, match=r"'classifier\.weight \(5, 6\) vs \(2, 4\)'"):
        load_pretrained_file(_TwoHeads(2), _save(other, tmp_path / "o.safetensors"), 3)
    # a file without the classifier leaves it fresh; without another tensor it is refused
    headless = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    load_pretrained_file(_TwoHeads(2), _save(headless, tmp_path / "h.safetensors"), 3)
    del headless["hidden.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['hidden\.bias'\]"):
        load_pretrained_file(_TwoHeads(2), _save(headless, tmp_path / "m.safetensors"), 3)


def test_auxiliary_classifier_keys_are_dropped_for_a_model_without_them(tmp_path) -> None:
    source = _TwoHeads(2)
    extra = {"AuxLogits.fc.weight": torch.ones(2, 2), "AuxLogits.fc.bias": torch.ones(2)}
    path = _save({**source.state_dict(), **extra}, tmp_path / "aux.safetensors")
    model = _TwoHeads(2)
    load_pretrained_file(model, path, 3)
    torch.testing.assert_close(model.hidden.weight, source.hidden.weight)
    other = _save({**source.state_dict(), "Aux.fc.weight": torch.ones(2)}, tmp_path / "x.st")
    with pytest.raises(ValueError, match=r"unexpected keys \['Aux\.fc\.weight'\]"):
        load_pretrained_file(_TwoHeads(2), other, 3)
    # a model with an auxiliary classifier keeps and loads its keys
    with_aux = _TwoHeads(2)
    with_aux.AuxLogits = nn.Sequential()
    with_aux.AuxLogits.add_module("fc", nn.Linear(2, 2))
    with_aux.classifier = with_aux.classifier  # (registered after AuxLogits: still the last)
    aux_state = {**_TwoHeads(2).state_dict(), **extra}
    load_pretrained_file(with_aux, _save(aux_state, tmp_path / "a2.safetensors"), 3)
    assert torch.equal(with_aux.AuxLogits.fc.bias, torch.ones(2))


def test_a_refusal_names_at_most_eight_keys_of_each_kind(tmp_path) -> None:
    state = {f"extra{i}": torch.zeros(1) for i in range(10)}
    path = _save({**_TwoHeads(2).state_dict(), **state}, tmp_path / "many.safetensors")
    with pytest.raises(ValueError, match="unexpected keys") as info:
        load_pretrained_file(_TwoHeads(2), path, 3)
    named = [f"extra{i}" for i in range(10) if f"'extra{i}'" in str(info.value)]
    assert named == [f"extra{i}" for i in range(8)]  # (the file's keys in name order)


def test_an_unreadable_file_and_other_dtypes_are_refused(tmp_path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"cannot read .*bad\.safetensors as a safetensors file"):
        load_pretrained_file(_TwoHeads(2), bad, 3)
    doubled = {k: v.double() for k, v in _TwoHeads(2).state_dict().items()}
    path = _save(doubled, tmp_path / "double.safetensors")
    with pytest.raises(ValueError, match=r"is torch\.float64 in the file but torch\.float32"):
        load_pretrained_file(_TwoHeads(2), path, 3)


def _lap_cnn() -> nn.Module:
    model = SmallCNN(2, 3)
    lapify(model, where="auto", input_size=32)
    return model


def test_lap_keys_may_be_missing_and_a_lap_runs_scorers_are_added_and_loaded(tmp_path) -> None:
    torch.manual_seed(0)
    plain = SmallCNN(2, 3)
    model = _lap_cnn()
    load_pretrained_file(model, _save(plain.state_dict(), tmp_path / "p.safetensors"), 3)
    torch.testing.assert_close(model.fc.weight, plain.fc.weight)
    # a weakly supervised LAP run's weights hold discriminative scorers
    trained = _lap_cnn()
    names = enable_discriminative_scorers(trained)
    path = _save(trained.state_dict(), tmp_path / "lap.safetensors")
    fresh = _lap_cnn()
    assert all(layer.discriminative_scorer is None for layer in lap_modules(fresh).values())
    load_pretrained_file(fresh, path, 3)
    layers = lap_modules(fresh)
    assert list(layers) == names and all(
        layer.discriminative_scorer is not None for layer in layers.values()
    )
    own, expected = fresh.state_dict(), trained.state_dict()
    assert list(own) == list(expected)
    assert all(torch.equal(own[k], expected[k]) for k in expected)
    # a file with scorers of only one layer: only that layer gets one
    first = names[0]
    partial = {
        k: v
        for k, v in trained.state_dict().items()
        if ".discriminative_scorer." not in k or k.startswith(f"{first}.")
    }
    some = _lap_cnn()
    load_pretrained_file(some, _save(partial, tmp_path / "one.safetensors"), 3)
    with_scorer = [n for n, m in lap_modules(some).items() if m.discriminative_scorer is not None]
    assert with_scorer == [first]
    # a model whose layers already have scorers loads them as they are
    enabled = _lap_cnn()
    enable_discriminative_scorers(enabled)
    load_pretrained_file(enabled, path, 3)
    assert all(torch.equal(enabled.state_dict()[k], expected[k]) for k in expected)


def test_the_first_convolution_and_the_classifier_must_exist() -> None:
    with pytest.raises(ValueError, match="Sequential has no Conv2d: cannot adapt its input"):
        build._set_input_channels(nn.Sequential(nn.Linear(2, 2)), 1, keep_weights=False)
    with pytest.raises(ValueError, match=r"Sequential has no nn\.Linear classifier to resize"):
        build._set_num_classes(nn.Sequential(nn.Conv2d(3, 2, 1)), 4)


def test_set_input_channels_keeps_a_matching_or_refuses_a_grouped_first_convolution() -> None:
    model = nn.Sequential(nn.Conv2d(3, 6, 3, groups=3))
    with pytest.raises(ValueError, match="the first convolution 0 is grouped"):
        build._set_input_channels(model, 1, keep_weights=True)
    same = nn.Sequential(nn.Conv2d(3, 6, 3, groups=3))
    conv = same[0]
    build._set_input_channels(same, 3, keep_weights=True)  # nothing to change
    assert same[0] is conv


class _Inceptionish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.transform_input = True
        self.conv = nn.Conv2d(3, 2, 3, stride=2, padding=1, dilation=1, bias=True)


@pytest.mark.parametrize("keep", [True, False])
def test_set_input_channels_replaces_the_convolution_alike(keep: bool) -> None:
    torch.manual_seed(0)
    model = _Inceptionish()
    old = model.conv
    build._set_input_channels(model, 2, keep_weights=keep)
    new = model.conv
    assert (new.in_channels, new.out_channels, new.kernel_size) == (2, 2, (3, 3))
    assert (new.stride, new.padding, new.groups) == ((2, 2), (1, 1), 1)
    assert new.bias is not None and model.transform_input is False
    if keep:
        torch.testing.assert_close(new.weight.detach(), _reference_adapt(old.weight.detach(), 2))
        torch.testing.assert_close(new.bias, old.bias)
    else:
        assert not torch.equal(new.bias, old.bias)
    three = _Inceptionish()
    build._set_input_channels(three, 3, keep_weights=keep)
    assert three.transform_input is True and three.conv is not None
    # a first convolution of other inputs made RGB keeps the RGB re-normalisation
    gray = _Inceptionish()
    gray.conv = nn.Conv2d(1, 2, 3)
    build._set_input_channels(gray, 3, keep_weights=keep)
    assert gray.conv.in_channels == 3 and gray.transform_input is True


@pytest.mark.parametrize("bias", [True, False])
def test_set_num_classes_resizes_the_last_linear_only(bias: bool) -> None:
    model = _TwoHeads(5, bias=bias)
    hidden, head = model.hidden, model.classifier
    build._set_num_classes(model, 5)
    assert model.classifier is head
    build._set_num_classes(model, 3)
    assert model.hidden is hidden and model.classifier.in_features == 4
    assert model.classifier.out_features == 3 and (model.classifier.bias is not None) == bias


class _Tree(nn.Module):
    """a, b (pool, act, fc), c (no parameters), d: b.pool's head is b.fc, then d."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Sequential()
        self.b.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.b.add_module("act", nn.ReLU())
        self.b.add_module("fc", nn.Linear(3, 3))
        self.c = nn.Flatten()
        self.d = nn.Linear(3, 2)


def test_a_lap_layer_as_the_model_gets_its_stored_scorer() -> None:
    layer = AdaptiveLocalAttentionPool2d(4)
    trained = AdaptiveLocalAttentionPool2d(4)
    trained.enable_discriminative_scorer()
    state = dict(trained.state_dict())
    assert build._enable_stored_scorers(layer, state, Path("f")) == [""]
    assert layer.discriminative_scorer is not None
    assert build._enable_stored_scorers(AdaptiveLocalAttentionPool2d(4), {}, Path("f")) == []


def test_the_lap_tensors_left_fresh_are_logged(tmp_path, caplog) -> None:
    plain = _save(SmallCNN(2, 3).state_dict(), tmp_path / "p.safetensors")
    with caplog.at_level(logging.INFO, logger="torchlap"):
        load_pretrained_file(_lap_cnn(), plain, 3)
    assert "LAP/classifier tensors start fresh" in caplog.text
    trained = _lap_cnn()
    enable_discriminative_scorers(trained)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="torchlap"):
        load_pretrained_file(_lap_cnn(), _save(trained.state_dict(), tmp_path / "s.st"), 3)
    assert "loading the discriminative scorers of " in caplog.text
    assert "start fresh" not in caplog.text


def test_modules_after_are_the_later_children_with_parameters_on_each_level() -> None:
    tree = _Tree()
    assert modules_after(tree, "b.pool") == ["d", "b.fc"]
    assert modules_after(tree, "a") == ["b", "d"]
    assert modules_after(tree, "d") == []
    assert modules_after(tree, "b.fc") == ["d"]
