"""``results.json["protocol"]`` says, for the options of the evaluation, which rule each metric
followed: every entry that depends on ``ties`` or ``target`` names the rule of that option, not
the other one's (two evaluations are compared by reading it)."""

from __future__ import annotations

from torchlap.evaluate.core import EvaluateOptions, protocol


def test_the_tie_rule_names_the_random_draws_or_the_raster_order() -> None:
    drawn = protocol(EvaluateOptions(ties="random", tie_draws=3, seed=5))["tie_rule"]
    assert drawn["keep_top_k_and_drop_increase"].startswith("mean of 3 seeded uniformly random")
    assert "(seed 5," in drawn["keep_top_k_and_drop_increase"]
    assert (drawn["ties"], drawn["tie_draws"]) == ("random", 3)
    ordered = protocol(EvaluateOptions(ties="index", tie_draws=3))["tie_rule"]
    assert ordered["keep_top_k_and_drop_increase"] == "lowest flat index first (raster order)"
    assert (ordered["ties"], ordered["tie_draws"]) == ("index", 1)  # one order, no draws


def test_the_maps_of_each_class_follow_the_target() -> None:
    by_prediction = protocol(EvaluateOptions(target="prediction"))
    by_label = protocol(EvaluateOptions(target="label"))
    # under target="prediction" the maps are the predicted class's: the label's are explained
    # again for the misclassified images; under target="label" the other way round
    assert by_prediction["keep_top_k_vs_label_maps"] == (
        "maps of the label class (misclassified images explained again for their label)"
    )
    assert by_label["keep_top_k_vs_label_maps"] == "maps of the label class (target: label)"
    assert by_prediction["keep_top_k_vs_prediction_maps"] == (
        "maps of the predicted class (target: prediction)"
    )
    assert by_label["keep_top_k_vs_prediction_maps"] == (
        "maps of the predicted class (misclassified images explained again for their prediction)"
    )
    assert by_prediction["drop_increase_class"] == "the explained class (target: prediction)"
    assert by_label["drop_increase_class"] == "the explained class (target: label)"
    plain = "maps of the label class, the class they score (paper 004)"
    assert by_label["drop_inc_win_and_stability_maps"] == plain
    again = by_prediction["drop_inc_win_and_stability_maps"]
    assert again.startswith(plain + " (misclassified images explained again for their label;")
    assert again.endswith("noisy images explained for their label)")
