"""Speed levers of the perturbation explainers and the peer benchmark's pieces.

bfloat16 masked forwards against the float32 slow reference (within a stated tolerance), the
peers' Score-CAMs on the same tiny model, RISE vs SISE's pass counts, and the map correlation.
"""

import pytest
import torch
from bench_fakes import small_cnn
from explainer_references import reference_scorecam

from torchlap.bench.explain_peers import (
    format_peer_rows,
    map_correlation,
    run_rise_vs_sise,
    run_scorecam_against,
)
from torchlap.explainers import Rise, ScoreCam, Sise


def test_bfloat16_scorecam_stays_within_its_stated_tolerance_of_the_float32_reference():
    """The README's tolerance: bfloat16 maps correlate >= 0.99 with the float32 maps and each
    channel weight (a probability) is within 2e-2 of it."""
    model = small_cnn()
    images = torch.randn(3, 3, 16, 16)
    target = torch.tensor([0, 4, 2])
    fast = ScoreCam(model, layer="4", precision="bfloat16").raw(images, target)
    slow = torch.stack(
        [reference_scorecam(model, model[4], images[i], int(target[i])) for i in range(3)]
    )
    assert map_correlation(fast, slow) >= 0.99
    # maps are sums of 12 channel maps weighted by probabilities in (0, 1)
    scale = slow.abs().amax()
    torch.testing.assert_close(fast, slow, rtol=0, atol=2e-2 * 12 * float(scale))


def test_bfloat16_rise_and_sise_stay_close_to_float32():
    model = small_cnn()
    images = torch.randn(2, 3, 16, 16)
    target = torch.tensor([1, 3])
    for make in (
        lambda p: Rise(model, n_masks=64, precision=p),
        lambda p: Sise(model, precision=p),
    ):
        exact, fast = make("float32")(images, target), make("bfloat16")(images, target)
        assert map_correlation(fast, exact) >= 0.99


def test_precision_is_validated():
    with pytest.raises(ValueError, match="unknown precision"):
        ScoreCam(small_cnn(), precision="int8")
    with pytest.raises(ValueError, match="unknown precision"):
        Rise(small_cnn(), precision="half")
    with pytest.raises(ValueError, match="unknown precision"):
        Sise(small_cnn(), precision=16)


def test_map_correlation_by_hand():
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])
    b = torch.tensor([[[2.0, 4.0], [6.0, 8.0]], [[0.0, 1.0], [0.0, 1.0]]])
    # image 0: perfectly correlated; image 1: a constant map counts as 0
    assert map_correlation(a, b) == pytest.approx(0.5)
    assert map_correlation(-a[:1], b[:1]) == pytest.approx(-1.0)


@pytest.mark.slow  # importing the two peer libraries alone takes seconds
def test_scorecam_against_both_peers_on_the_same_model():
    pytest.importorskip("pytorch_grad_cam")
    pytest.importorskip("torchcam")
    model = small_cnn()
    images = torch.randn(2, 3, 16, 16)
    rows = run_scorecam_against(model, images, mask_batch_size=8)
    names = [r.name for r in rows]
    assert names == [
        "torchlap scorecam (float32)",
        "torchlap scorecam (bfloat16)",
        "grad-cam ScoreCAM",
        "torchcam ScoreCAM",
    ]
    assert rows[0].correlation == pytest.approx(1.0)
    # the three definitions differ in details only (see the module docstring)
    assert all(r.correlation > 0.9 for r in rows), [(r.name, r.correlation) for r in rows]
    assert not any(h for m in model.modules() for h in m._forward_hooks.values())
    assert not any(h for m in model.modules() for h in m._forward_pre_hooks.values())
    assert "images/s" in format_peer_rows(rows)


def test_rise_vs_sise_reports_their_forward_counts():
    model = small_cnn()
    images = torch.randn(1, 3, 16, 16)
    rows = run_rise_vs_sise(model, images, rise_masks=40, mask_batch_size=16)
    sise, rise = rows
    assert rise.forwards_per_image == 40  # one per mask (the target is given)
    # SISE: one forward, plus one per distinct kept mask of its two block layers (8 + 12 maps)
    assert 1 <= sise.forwards_per_image <= 1 + 8 + 12 + 1
