"""LapExportModule leaves the wrapped model as it found it: its last LAP maps (what
``attention_maps(model)`` returns after the caller's own forward), its train/eval flags and its
hooks, also when the forward raises and through ``torch.export``.

Before: every forward of the export module cleared the model's maps (``clear_attention_maps``
before and after), so a user who wrapped the model they had just run found its maps gone.
"""

from __future__ import annotations

import pytest
import torch

from torchlap.export import LapExportModule
from torchlap.layers import attention_maps
from torchlap.runs import load_run


def _state(model: torch.nn.Module) -> dict:
    maps = attention_maps(model, detach=False)
    return {
        "layers": list(maps),
        "objects": [id(m.concepts) for m in maps.values()],  # the very tensors kept
        "values": [m.concepts.detach().clone() for m in maps.values()],
        "training": [m.training for m in model.modules()],
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
    }


def _same(before: dict, after: dict) -> None:
    for key in ("layers", "objects", "training", "hooks"):
        assert after[key] == before[key], key
    for got, want in zip(after["values"], before["values"], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.fixture
def model(run_dir) -> torch.nn.Module:
    """The run's model after the caller's own forward pass (its maps are the caller's)."""
    model = load_run(run_dir).model.eval()
    with torch.no_grad():
        model(torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(3)))
    assert attention_maps(model)
    return model


def test_a_forward_leaves_the_models_maps(model) -> None:
    before = _state(model)
    module = LapExportModule(model)
    with torch.no_grad():
        outputs = module(torch.rand(2, 1, 32, 32))
    assert outputs[0].shape[0] == 2
    _same(before, _state(model))


def test_a_forward_that_raises_leaves_the_models_maps(model) -> None:
    """The model fails after its LAP layers ran (a hook on its last layer raises)."""
    before = _state(model)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]

    def fail(*args: object) -> None:
        raise RuntimeError("failed in the last layer")

    handle = last.register_forward_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="failed in the last layer"), torch.no_grad():
            LapExportModule(model)(torch.rand(2, 1, 32, 32))
    finally:
        handle.remove()
    _same(before, _state(model))


def test_torch_export_of_the_module_leaves_the_models_maps(model) -> None:
    """(torch.export restored the attributes itself before: this one guards that the maps put
    back are the caller's tensors, not the traced pass's.)"""
    before = _state(model)
    module = LapExportModule(model)
    with torch.no_grad():
        torch.export.export(module, (torch.rand(2, 1, 32, 32),), strict=False)
    _same(before, _state(model))
