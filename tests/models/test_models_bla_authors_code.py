"""L2X-F and BLA-T training pools as the BLA authors' code computes them (paper 002; the
authors' ``make_x_block``: ``softmax((G + l) * 0.1)``, max over k draws, sum pooling), checked
against explicit loops over samples, draws and positions."""

import math

import pytest
import torch

from torchlap.models import blaify
from torchlap.models.bla import L2XFeatureSelection, apply_blaify_config, bla_modules


def reference_l2x_train(x, weight, bias, gumbels, scale=0.1, pool="sum"):
    """For each sample s and draw j: c^j_i = exp((l_i + G^j_i) * scale) / sum_t exp(...);
    m_i = max_j c^j_i; v = sum_i m_i f_i (the authors' sum pooling) or / sum_i m_i."""
    batch, channels, height, width = x.shape
    n = height * width
    k = gumbels.shape[1]
    out = torch.zeros(batch, channels, dtype=x.dtype)
    for s in range(batch):
        logits = []
        for i in range(height):
            for j in range(width):
                logits.append(
                    float(bias)
                    + sum(float(weight[c]) * float(x[s, c, i, j]) for c in range(channels))
                )
        mask = [0.0] * n
        for d in range(k):
            exps = [math.exp((logits[t] + float(gumbels[s, d, t])) * scale) for t in range(n)]
            total = sum(exps)
            for t in range(n):
                mask[t] = max(mask[t], exps[t] / total)
        norm = sum(mask) if pool == "normalized" else 1.0
        for t in range(n):
            out[s] += mask[t] / norm * x[s, :, t // width, t % width]
    return out


@pytest.mark.parametrize("pool", ["sum", "normalized"])
def test_l2x_training_pool_matches_the_authors_code(pool) -> None:
    module = L2XFeatureSelection(3, k=4, init="glorot", dtype=torch.float64, pool=pool).train()
    with torch.no_grad():
        module.scorer.weight.normal_(std=3.0)
        module.scorer.bias.fill_(0.2)
    assert module.tau == 10.0  # the authors multiply (l + G) by 0.1
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    torch.manual_seed(7)
    out = module(x).flatten(1)
    torch.manual_seed(7)  # the same Gumbel(0, 1) draws, shape (B, k, n)
    gumbels = -torch.empty(2, 4, 12, dtype=torch.float64).exponential_().log()
    expected = reference_l2x_train(
        x, module.scorer.weight.detach().flatten(), module.scorer.bias.detach(), gumbels, pool=pool
    )
    torch.testing.assert_close(out, expected)
    if pool == "sum":  # not renormalised: the weights sum to more than 1 with k > 1 draws
        assert (module.maps.weights.flatten(1).sum(dim=1) > 1).all()


def test_blaify_records_the_pool_and_old_records_replay_the_normalized_rule() -> None:
    from torch import nn

    def tiny():
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
        )

    model, names = blaify(tiny(), "l2x-f", k=2, input_size=8)
    entry = model.torchlap_config["blaify"]
    assert entry["pool"] == "sum" and entry["tau"] == 10.0
    old = {key: value for key, value in entry.items() if key != "pool"}
    old["tau"] = 0.5
    replayed = apply_blaify_config(tiny(), old)
    (module,) = bla_modules(replayed).values()
    assert module.pool == "normalized" and module.tau == 0.5
    model_t, _ = blaify(tiny(), "bla-t", input_size=8)
    assert bla_modules(model_t)[names[0]].pool == "sum"
    with pytest.raises(ValueError, match="pool must be one of"):
        blaify(tiny(), "bla-t", input_size=8, pool="mean")
