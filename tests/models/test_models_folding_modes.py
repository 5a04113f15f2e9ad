"""Batch-norm folding leaves the model as it found it: no probe forward of a model in train mode
(its batch norms would update their running statistics), and the LAP layers' last maps are the
caller's, not the probe's."""

import torch
from test_models_folding import randomized_bn
from torch import nn

import torchlap
from torchlap.layers import LapBase
from torchlap.models.folding import folded_batch_norms


def conv_bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    return randomized_bn(
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 5, 3, stride=2),
            nn.BatchNorm2d(5),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(5, 4),
        )
    )


def test_a_model_in_train_mode_is_not_probed_and_keeps_its_running_statistics():
    model = conv_bn_net().train()
    calls = []
    model.register_forward_pre_hook(lambda *args: calls.append(1))
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    with torch.no_grad(), folded_batch_norms(model, torch.randn(2, 3, 9, 9)) as folded:
        assert folded == 0 and isinstance(model[1], nn.BatchNorm2d)
    assert calls == []  # no probe forward at all
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), name  # running mean/var, batch count
    assert model.training


def test_one_training_submodule_is_enough_to_skip_the_probe():
    model = conv_bn_net()  # eval
    model[4].train()  # one batch norm left in train mode
    mean = model[4].running_mean.clone()
    calls = []
    model.register_forward_pre_hook(lambda *args: calls.append(1))
    with torch.no_grad(), folded_batch_norms(model, torch.randn(1, 3, 9, 9)) as folded:
        assert folded == 0
    assert calls == [] and torch.equal(model[4].running_mean, mean)


def lap_net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    torchlap.lapify(model, where=["3"], input_size=(3, 16, 16))
    return randomized_bn(model)


def test_the_probe_leaves_the_callers_lap_maps():
    model = lap_net()
    layers = [m for m in model.modules() if isinstance(m, LapBase)]
    assert layers
    with torch.no_grad():
        model(torch.rand(4, 3, 16, 16))
    before = [(layer.maps, layer._forward_index) for layer in layers]
    with torch.no_grad(), folded_batch_norms(model, torch.rand(1, 3, 16, 16)) as folded:
        assert folded == 2
        assert [(layer.maps, layer._forward_index) for layer in layers] == before
    after = [(layer.maps, layer._forward_index) for layer in layers]
    assert all(a[0] is b[0] and a[1] == b[1] for a, b in zip(after, before, strict=True))
    maps = torchlap.attention_maps(model)
    assert all(m.score.shape[0] == 4 for m in maps.values())  # the caller's batch of 4
