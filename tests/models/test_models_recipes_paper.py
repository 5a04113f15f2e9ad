"""The settings recipes take from the papers, with the expected values read from the papers'
text (not from the code): paper 000 Appendix A's loss weights (cross-entropy 1, the concept
loss 0.25 per LAP, the concordance 0.25 per LAP pair; no concordance for expert supervision;
Appendix C's factor 0.125 for ImageNet), the number of concept heads of section IV (RSNA: one
head for the binary task; ImageNet: one head per class), and paper 004's eta = 8 soft
attention maps (section 3: "We set eta = 8")."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.losses import ConceptSets
from torchlap.models.recipes import antehoc_eta, default_n_concepts, paper_loss_weights
from torchlap.models.wrapping import SmallCNN

# paper 000, Appendix A: "weights of 1, 0.25 per LAP, and 0.25 per LAP pair" (weak);
# "weights of 1 and 0.25 per LAP" (full supervision: cross-entropy on the LAPs)
PER_LAP, PER_PAIR, IMAGENET_FACTOR = 0.25, 0.25, 0.125


def _reference_total(
    layer_losses: list[float], pair_losses: list[float], per_lap: float, per_pair: float
) -> float:
    """The paper's sum: each LAP's term weighted per_lap, each consecutive pair's per_pair."""
    total = 0.0
    for value in layer_losses:
        total += per_lap * value
    for value in pair_losses:
        total += per_pair * value
    return total


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4, 5])
def test_weak_weights_of_the_layer_means_give_the_papers_per_lap_and_per_pair_sum(
    n_layers: int,
) -> None:
    torch.manual_seed(n_layers)
    layer_losses = torch.rand(n_layers).tolist()
    pair_losses = torch.rand(max(n_layers - 1, 0)).tolist()
    weights = paper_loss_weights(n_layers, "weak")
    assert set(weights) == {"discrimination", "discriminative", "expert", "concordance"}
    # what torchlap train computes: weight x mean over layers (pairs)
    mean_pairs = sum(pair_losses) / len(pair_losses) if pair_losses else 0.0
    trained = weights["discrimination"] * sum(layer_losses) / n_layers
    trained += weights["concordance"] * mean_pairs
    expected = _reference_total(layer_losses, pair_losses, PER_LAP, PER_PAIR)
    torch.testing.assert_close(torch.tensor(trained), torch.tensor(expected))
    assert weights["discrimination"] == pytest.approx(PER_LAP * n_layers)
    # the discriminative scorer's term gets the discrimination weight
    assert weights["discriminative"] == pytest.approx(PER_LAP * n_layers)
    assert weights["concordance"] == pytest.approx(PER_PAIR * (n_layers - 1))


@pytest.mark.parametrize("n_layers", [1, 3, 4])
def test_expert_weights_are_0_25_per_lap_and_no_concordance(n_layers: int) -> None:
    weights = paper_loss_weights(n_layers, "expert")
    assert weights["expert"] == pytest.approx(PER_LAP * n_layers)
    assert weights["concordance"] == 0.0


def test_one_lap_has_no_pair_and_no_lap_has_no_term() -> None:
    assert paper_loss_weights(1, "weak")["concordance"] == 0.0  # one LAP: no pair
    assert paper_loss_weights(0, "weak") == {
        "discrimination": 0.0,
        "discriminative": 0.0,
        "expert": 0.0,
        "concordance": 0.0,
    }


def test_the_imagenet_factor_and_a_concordance_weight_replace_the_per_lap_weights() -> None:
    # Appendix C: "weakly supervised loss ... with a factor of 0.125"; one LAP in layer4
    weights = paper_loss_weights(1, "weak", concept_weight=IMAGENET_FACTOR)
    assert weights["discrimination"] == IMAGENET_FACTOR
    assert weights["discriminative"] == IMAGENET_FACTOR
    assert weights["expert"] == IMAGENET_FACTOR
    three = paper_loss_weights(3, "weak", concept_weight=0.5, concordance_weight=0.1)
    assert three["discrimination"] == pytest.approx(0.5 * 3)
    assert three["concordance"] == pytest.approx(0.1 * 2)
    # a concordance weight gives expert supervision the pair term the paper leaves out
    assert paper_loss_weights(3, "expert", concordance_weight=0.25)["concordance"] == 0.5
    # concept_weight leaves the concordance, concordance_weight the concept terms
    assert paper_loss_weights(3, "weak", concept_weight=1.0)["concordance"] == 0.5
    assert paper_loss_weights(3, "weak", concordance_weight=1.0)["expert"] == 0.75


def test_weights_are_floats_even_from_int_overrides() -> None:
    weights = paper_loss_weights(2, "weak", concept_weight=1, concordance_weight=2)
    assert all(type(value) is float for value in weights.values())
    assert weights == {
        "discrimination": 2.0,
        "discriminative": 2.0,
        "expert": 2.0,
        "concordance": 2.0,
    }


def test_concept_heads_one_for_a_binary_task_else_one_per_class() -> None:
    # RSNA: "one concept head for detecting pneumonia"; ImageNet: "1000 heads, each ... in its
    # respective class samples"
    assert default_n_concepts(2) == 1
    for num_classes in (1, 3, 4, 10, 1000):
        assert default_n_concepts(num_classes) == num_classes
    # CelebA's three heads (two classes plus a common one) come from the concept sets
    sets = ConceptSets.default(2, 3).to_dict()
    assert default_n_concepts(2, sets) == 3
    assert default_n_concepts(5, ConceptSets.default(5, 5).to_dict()) == 5


class _Convs(nn.Module):
    """``n`` 1x1 convolutions in a row (and a linear head)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(nn.Conv2d(2, 2, 1) for _ in range(n)))
        self.fc = nn.Linear(2, 2)


@pytest.mark.parametrize(("n_convs", "eta"), [(1, 1), (3, 3), (7, 7), (8, 8), (9, 8), (20, 8)])
def test_antehoc_eta_is_the_papers_8_or_every_convolution_of_a_smaller_network(
    n_convs: int, eta: int
) -> None:
    # paper 004, section 3: "We set eta = 8 for the selection of SAM"
    assert antehoc_eta(_Convs(n_convs)) == eta


def test_antehoc_eta_of_smallcnn_and_the_refusal_of_a_network_without_convolutions() -> None:
    assert antehoc_eta(SmallCNN(2, 3)) == 3
    with pytest.raises(ValueError, match=r"needs a network with nn\.Conv2d layers; found none"):
        antehoc_eta(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    # the network itself is no layer of its own: a bare convolution has none inside it
    with pytest.raises(ValueError, match="found none"):
        antehoc_eta(nn.Conv2d(3, 3, 1))
