"""ConceptSets: the sets C_s of paper 000, section III.B.1."""

import json

import pytest
import torch

from torchlap.losses import ConceptSets, suggest_ratios


def test_default_one_concept_per_class():
    sets = ConceptSets.default(3, 3)
    labels = torch.tensor([2, 0, 1, 2])
    expected = torch.tensor(
        [[False, False, True], [True, False, False], [False, True, False], [False, False, True]]
    )
    assert torch.equal(sets.presence(labels), expected)
    assert not sets.common.any()


def test_default_binary_single_concept_in_positives_only():
    sets = ConceptSets.default(2, 1)
    assert torch.equal(sets.presence(torch.tensor([0, 1, 1, 0])).flatten(),
                       torch.tensor([False, True, True, False]))  # fmt: skip


def test_default_common_head_is_present_everywhere():
    sets = ConceptSets.default(2, 3)
    present = sets.presence(torch.tensor([0, 1]))
    assert torch.equal(present, torch.tensor([[True, False, True], [False, True, True]]))
    assert torch.equal(sets.common, torch.tensor([False, False, True]))


def test_default_rejects_other_layouts():
    with pytest.raises(ValueError, match="from_mapping"):
        ConceptSets.default(3, 5)
    with pytest.raises(TypeError):
        ConceptSets.default(2.0, 2)
    with pytest.raises(ValueError):
        ConceptSets.default(0, 1)


def test_from_mapping_and_json_round_trip():
    sets = ConceptSets.from_mapping({0: [], 1: [0, 2], 2: [1, 1]}, n_concepts=3)
    assert sets.to_mapping() == {0: [], 1: [0, 2], 2: [1]}
    again = ConceptSets.from_dict(json.loads(json.dumps(sets.to_dict())))
    assert again == sets
    assert again.presence(torch.tensor([1])).tolist() == [[True, False, True]]


@pytest.mark.parametrize(
    ("mapping", "n_concepts", "error", "match"),
    [
        ({0: [0], 1: [3]}, 3, ValueError, "out of range"),
        ({0: [0], 2: [1]}, 2, ValueError, "every class"),
        ({0: [-1]}, 1, ValueError, "out of range"),
        ({0: "0"}, 1, TypeError, "list of concept indices"),
        ({0: [0.5]}, 1, TypeError, "ints"),
        ({"0": [0]}, 1, TypeError, "class indices"),
        ({}, 1, TypeError, "non-empty"),
    ],
)
def test_from_mapping_validates(mapping, n_concepts, error, match):
    with pytest.raises(error, match=match):
        ConceptSets.from_mapping(mapping, n_concepts)


def test_from_dict_validates():
    with pytest.raises(ValueError, match="n_concepts"):
        ConceptSets.from_dict({"mapping": {"0": [0]}})
    with pytest.raises(ValueError, match="n_classes"):
        ConceptSets.from_dict({"n_classes": 3, "n_concepts": 1, "mapping": {"0": [0], "1": []}})
    with pytest.raises(ValueError, match="integers"):
        ConceptSets.from_dict({"n_concepts": 1, "mapping": {"a": [0]}})


@pytest.mark.parametrize("key", ["1_0", " 1", "+1", "\uff11", 1.7, 1.0, True], ids=repr)
def test_from_dict_refuses_class_keys_int_would_bend(key):
    """int() read "1_0" as class 10, "\uff11" (fullwidth), " 1", 1.7 and True as class 1."""
    data = {"n_concepts": 2, "mapping": {"0": [0], key: [1]}}
    with pytest.raises(ValueError, match=r"class keys must be integers \(class indices\)"):
        ConceptSets.from_dict(data)


def test_from_dict_refuses_unknown_keys_and_a_non_int_n_classes():
    mapping = {"0": [0], "1": [1]}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['n_clases'\]"):
        ConceptSets.from_dict({"n_concepts": 2, "n_clases": 3, "mapping": mapping})
    for n_classes in (2.0, True, "2"):
        with pytest.raises(ValueError, match="'n_classes' must be an int equal"):
            ConceptSets.from_dict({"n_concepts": 2, "n_classes": n_classes, "mapping": mapping})
    sets = ConceptSets.from_dict({"n_concepts": 2, "n_classes": 2, "mapping": {0: [0], "1": [1]}})
    assert sets.to_mapping() == {0: [0], 1: [1]}


def test_presence_validates_labels():
    sets = ConceptSets.default(2, 2)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        sets.presence(torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="integer tensor"):
        sets.presence(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="integer tensor"):
        sets.presence(torch.tensor([[0, 1]]))
    with pytest.raises(TypeError):
        sets.presence([0, 1])


def test_suggest_ratios_follows_appendix_a():
    ratios = suggest_ratios([0.05, 0.1, 0.3])
    assert ratios == pytest.approx({"min_ar": 0.1, "max_ar": 0.3, "iar": 0.1})
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        suggest_ratios([0.0, 0.2])
    with pytest.raises(ValueError, match="empty"):
        suggest_ratios([])
