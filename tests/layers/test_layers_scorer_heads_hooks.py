"""The scorer's own modules keep their hooks and reparametrised weights on PyTorch's path.

``ConceptScorer.forward`` computes a plain 1x1 convolution directly (one batched matmul), which
bypasses the module's call. Before: it did so for every ``nn.Conv2d`` of ``groups=1``, so hooks
on ``scorer.heads[0]``, ``heads[2]`` or the ``heads`` Sequential never ran (and a forward hook
that changed the logits was ignored), a ``Conv2d`` subclass's ``forward`` was skipped, and after
``torch.nn.utils.prune`` every forward raised ``KeyError: 'weight'``. Now only an unhooked plain
1x1 convolution whose weight is a parameter is computed directly; anything else is called.
Values are checked against paper 000's Eq. 1-4 with the scorer's modules as they stand
(``reference``: the modules in turn, the sigmoid, the max, then a loop over windows).
"""

from __future__ import annotations

import pytest
import torch
from test_layers_fused_path_choice import HOOKS, _layer, _run
from torch import nn
from torch.nn.utils import parametrize, prune

from torchlap.layers.lap import ConceptScorer, LocalAttentionPool2d

WHERE = {
    "first conv": lambda scorer: scorer.heads[0],
    "last conv": lambda scorer: scorer.heads[2],
    "heads": lambda scorer: scorer.heads,
}


@pytest.mark.parametrize("kind", ["window", "global"])
@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("hook", list(HOOKS))
def test_a_hook_on_the_heads_runs(kind: str, where: str, hook: str) -> None:
    layer, calls = _layer(kind), []
    HOOKS[hook](WHERE[where](layer.scorer), lambda: calls.append(1))
    _run(layer, calls)


@pytest.mark.parametrize("where", ["first conv", "heads"])
def test_a_hook_on_the_heads_runs_when_the_scorer_is_called_alone(where: str) -> None:
    scorer, calls = ConceptScorer(4, 3, 2), []
    WHERE[where](scorer).register_forward_hook(lambda *args: calls.append(1))
    scorer(torch.randn(1, 4, 3, 3))
    assert calls == [1]


def test_a_forward_hook_that_changes_the_logits_takes_effect() -> None:
    """Logits set to 0: every concept probability is 0.5, every score equal, and Eq. 1-4 pool
    each window to its plain mean (``avg_pool2d``)."""
    layer = LocalAttentionPool2d(4, 2, n_concepts=3, hidden_channels=3, dtype=torch.float64)
    with torch.no_grad():
        for parameter in layer.scorer.parameters():
            parameter.normal_()
    layer.scorer.heads[2].register_forward_hook(lambda module, args, output: output * 0)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x), nn.functional.avg_pool2d(x, 2))


@pytest.mark.parametrize("kind", ["window", "global"])
def test_a_pruned_head_is_pooled_with_its_pruned_weight(kind: str) -> None:
    layer = _layer(kind)
    x = torch.randn(2, 4, 7, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.no_grad():
        unpruned = layer(x)  # (_run's input)
    prune.l1_unstructured(layer.scorer.heads[0], "weight", amount=0.5)
    assert (layer.scorer.heads[0].weight == 0).sum() == layer.scorer.heads[0].weight.numel() // 2
    pruned = _run(layer)  # the reference reads the module's (pruned) weight
    assert not torch.allclose(pruned, unpruned)


class _Negated(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return -weight


@pytest.mark.parametrize("kind", ["window", "global"])
def test_a_parametrised_head_is_pooled_with_its_parametrised_weight(kind: str) -> None:
    layer = _layer(kind)
    parametrize.register_parametrization(layer.scorer.heads[0], "weight", _Negated())
    _run(layer)  # the reference reads heads[0].weight: the negated weight


class _Doubled(nn.Conv2d):
    """A 1x1 convolution of the user's whose output is twice the plain one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def test_a_convolution_subclass_in_the_heads_runs_its_own_forward() -> None:
    layer, plain = _layer(), _layer()
    doubled = _Doubled(4, 3, 1, dtype=torch.float64)
    with torch.no_grad():
        doubled.weight.copy_(layer.scorer.heads[0].weight)
        doubled.bias.copy_(layer.scorer.heads[0].bias)
        plain.scorer.heads[0].weight.mul_(2)  # the same layer computed by a plain convolution
        plain.scorer.heads[0].bias.mul_(2)
    layer.scorer.heads[0] = doubled
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x), plain(x))
