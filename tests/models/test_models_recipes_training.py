"""What a run's config turns into (recipes): the LAP family's loss (paper 000 Appendix A's
weights for the number of LAP layers built, the user's overrides, the discriminative scorers,
the concordance options), the concept sets' refusal, BLA's per-variant settings (paper 002),
the refusals of build_classifier / recipe_for / recipe_of_record / register / B-cos weights,
and rebuild_model's discriminative scorers. SmallCNN at 32 px: fast."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from torchlap.layers import lap_modules
from torchlap.losses import ConceptSets
from torchlap.models.backbones import ModelSpec
from torchlap.models.recipes import (
    RECIPES,
    BlaRecipe,
    Recipe,
    build_classifier,
    build_for_training,
    features_frozen,
    rebuild_model,
    recipe_for,
    recipe_of_record,
    register,
    unregister,
)
from torchlap.models.wrapping import NormalizedClassifier
from torchlap.train import TrainConfig
from torchlap.train.config import PhaseConfig

SIZE = 32


def _lap(**changes: Any) -> TrainConfig:
    return TrainConfig(data="d", out="o", arch="smallcnn", image_size=SIZE, **changes)


def test_the_lap_loss_weighs_the_built_layers_as_the_paper_says() -> None:
    built = build_for_training(_lap(), 2, 3)
    n = len(lap_modules(built.net))
    assert n >= 2 and built.lap_names == list(lap_modules(built.net))
    loss = built.injection
    assert loss is not None and loss.layer_reduction == "mean"
    # Appendix A: 0.25 per LAP (of the layer mean: x n), 0.25 per LAP pair (x n - 1)
    assert loss.weights["discrimination"] == pytest.approx(0.25 * n)
    assert loss.weights["discriminative"] == pytest.approx(0.25 * n)
    assert loss.weights["concordance"] == pytest.approx(0.25 * (n - 1))
    assert loss.supervision == "weak" and loss.use_discriminative and built.discriminative
    assert all(m.discriminative_scorer is not None for m in lap_modules(built.net).values())
    assert built.concept_sets == ConceptSets.default(2, 1)  # one head for two classes
    assert built.record["lapify"][0]["n_concepts"] == 1


def test_expert_supervision_has_no_concordance_and_overrides_win() -> None:
    built = build_for_training(_lap(supervision="expert"), 2, 3)
    n = len(built.lap_names)
    assert built.injection.supervision == "expert"
    assert built.injection.weights["expert"] == pytest.approx(0.25 * n)
    assert built.injection.weights["concordance"] == 0.0
    override = _lap(loss_weights={"discrimination": 2.0}, concordance_weight=0.5)
    weights = build_for_training(override, 2, 3).injection.weights
    assert weights["discrimination"] == 2.0  # as given (a weight of the layer mean)
    assert weights["concordance"] == pytest.approx(0.5 * (n - 1))


def test_no_supervision_or_no_discriminative_module_adds_no_scorer() -> None:
    for config in (_lap(supervision="none"), _lap(use_discriminative=False)):
        built = build_for_training(config, 2, 3)
        assert not built.discriminative and not built.injection.use_discriminative
        assert all(m.discriminative_scorer is None for m in lap_modules(built.net).values())


def test_the_lap_options_reach_the_loss() -> None:
    config = _lap(
        concordance_threshold=0.3,
        concordance_mode="high_low",
        expert_positive_fraction=0.4,
        common_head_sets="own",
        min_ar=0.2,
        max_ar=0.6,
        iar=0.05,
        n_concepts=3,
    )
    built = build_for_training(config, 3, 3)
    loss = built.injection
    assert (loss.concordance_threshold, loss.concordance_mode) == (0.3, "high_low")
    assert loss.expert_positive_fraction == 0.4 and loss.common_head_sets == "own"
    assert built.head_ratios == ([0.2] * 3, [0.6] * 3, [0.05] * 3)
    assert (loss.min_ar, loss.max_ar, loss.iar) == built.head_ratios
    assert built.record["lapify"][0]["n_concepts"] == 3
    assert built.concept_sets.n_concepts == 3 and built.concept_sets.num_classes == 3
    defaults = build_for_training(_lap(), 2, 3).injection  # InjectionLoss's own defaults
    assert (defaults.concordance_threshold, defaults.concordance_mode) == (0.1, "both")


def test_the_preset_options_reach_the_layers_and_the_record() -> None:
    built = build_for_training(_lap(hidden_channels=4, aggregation="mean"), 2, 3)
    assert built.lap_options == {"hidden_channels": 4, "aggregation": "mean"}
    for layer in lap_modules(built.net).values():
        assert layer.scorer.hidden_channels == 4 and layer.scorer.aggregation_name == "mean"


def test_concept_sets_for_other_classes_or_heads_are_refused() -> None:
    sets = ConceptSets.default(3, 3).to_dict()
    with pytest.raises(ValueError, match=r"concept_sets are for 3 classes x 3 concepts; the data "):
        build_for_training(_lap(concept_sets=sets), 2, 3)
    with pytest.raises(ValueError, match=r"the data has 3 classes and the model 2 concepts"):
        build_for_training(_lap(concept_sets=sets, n_concepts=2), 3, 3)
    built = build_for_training(_lap(concept_sets=sets), 3, 3)
    assert built.concept_sets == ConceptSets.from_dict(sets)


def test_the_lap_family_refuses_a_network_without_lap_layers() -> None:
    with pytest.raises(ValueError, match=r"--lap 'none' put no LAP layer into 'smallcnn'"):
        RECIPES["lap"].training_model(_lap(lap="none"), 2, 3)


def test_build_classifier_checks_lap_for_every_family() -> None:
    for model in ("bla", "antehoc"):
        for lap in ("auto", "none", "AUTO", "None"):
            net, record = build_classifier("smallcnn", 2, 3, lap, 1, model=model, image_size=SIZE)
            assert not lap_modules(net) and not record.get("lapify")
        with pytest.raises(ValueError, match=r"builds a network without LAP layers; .*'layer1'"):
            build_classifier("smallcnn", 2, 3, "layer1", 1, model=model)
    with pytest.raises(ValueError, match=r"unknown lap='everywhere'"):
        build_classifier("smallcnn", 2, 3, "everywhere", 1)  # the vanilla / LAP family
    net, _ = build_classifier("smallcnn", 2, 3, "none", 1)  # vanilla
    assert not lap_modules(net)
    net, _ = build_classifier("smallcnn", 2, 3, "layer2.pool,avgpool", 1, image_size=SIZE)
    assert list(lap_modules(net)) == ["layer2.pool", "avgpool"]
    with pytest.raises(TypeError, match="lap_options must be a dict"):
        build_classifier("smallcnn", 2, 3, "auto", 1, lap_options=["hidden_channels"])


def test_recipe_for_and_of_record() -> None:
    assert recipe_for("lap", "none").name == "vanilla"
    assert recipe_for("lap", "None").name == "vanilla"
    assert recipe_for("lap", "auto").name == "lap" and recipe_for("lap").name == "lap"
    assert recipe_for("lap", "layer1.pool").name == "lap"
    assert recipe_for("bla", "auto").name == "bla"  # one candidate: lap does not matter
    with pytest.raises(TypeError, match="a model record must be a dict, got list"):
        recipe_of_record([])  # type: ignore[arg-type]
    plain = {"builder": "torchlap.train.SmallCNN", "lapify": []}
    assert recipe_of_record(plain).name == "vanilla"
    assert recipe_of_record({**plain, "lapify": [{"sites": ["x"]}]}).name == "lap"
    assert recipe_of_record({**plain, "antehoc": {"layer_names": []}}).name == "antehoc"
    assert recipe_of_record({**plain, "blaify": {"variant": "bla-t"}}).name == "bla-t"
    assert recipe_of_record({**plain, "antehoc": None}).name == "vanilla"
    assert recipe_of_record({"builder": "torchlap.models.bcos"}).name == "bcos"
    with pytest.raises(ValueError, match=r"unknown model builder 'torchlap\.models\.bcos2'"):
        recipe_of_record({"builder": "torchlap.models.bcos2"})


def test_register_and_unregister_refusals() -> None:
    with pytest.raises(ValueError, match=r"no model family named 'nope'; registered: \["):
        unregister("nope")
    with pytest.raises(ValueError, match="a model family named 'lap' is already registered"):
        register(RECIPES["lap"])
    with pytest.raises(ValueError, match=r"unknown BLA variant 'bla-x'; expected one of"):
        BlaRecipe("bla-x")

    class _Mine(Recipe):
        name = model = "mine"

    recipe = register(_Mine())
    try:
        assert RECIPES["mine"] is recipe
    finally:
        assert unregister("mine") is recipe
    assert "mine" not in RECIPES


def test_features_frozen_rule() -> None:
    # paper 002, 4.2: F "pretrained on ImageNet and held fixed"; BLA-PH always post hoc
    assert features_frozen("auto", "bla-ph", False) is True
    assert features_frozen(False, "bla-ph", False) is True
    assert features_frozen(True, "bla", False) is True
    assert features_frozen("auto", "bla", True) is True
    assert features_frozen("auto", "bla", False) is False
    assert features_frozen(False, "bla", True) is False


@pytest.mark.parametrize(("size", "k"), [(32, 3), (64, 10)])
def test_l2x_f_keeps_the_papers_share_of_positions(size: int, k: int) -> None:
    # paper 002: L2X-F keeps 8 of the 7x7 = 49 positions; SmallCNN's map is size / 8 a side
    n = (size // 8) ** 2
    assert k == max(1, round(8 * n / 49))
    config = TrainConfig(data="d", out="o", arch="smallcnn", image_size=size, model="l2x-f")
    config.lap = "none"
    built = build_for_training(config, 2, 3)
    assert built.record["blaify"]["k"] == k


def test_bla_keeps_blaifys_threshold_and_frozen_features_are_recorded() -> None:
    config = TrainConfig(data="d", out="o", arch="smallcnn", image_size=SIZE, model="bla")
    config.lap = "none"
    built = build_for_training(config, 2, 3)
    assert built.record["blaify"]["gamma_factor"] != 0.98  # only BLA-T / BLA-PH threshold
    assert built.record["blaify"]["features_frozen"] is False
    assert built.record["blaify"]["head"] == ["fc"]
    _, record = RECIPES["bla"].build(RECIPES["bla"].spec(config, 2, 3, 1, {}), True)
    assert record["blaify"]["features_frozen"] is True


def test_bla_ph_phases_must_train_all() -> None:
    assert RECIPES["bla-ph"].phase_problem(PhaseConfig(1, train="all")) is None
    problem = RECIPES["bla-ph"].phase_problem(PhaseConfig(1, train="fc"))
    assert problem is not None and "trains only the BLA module" in problem
    for family in ("bla", "bla-t", "l2x-f", "lap", "antehoc"):
        assert RECIPES[family].phase_problem(PhaseConfig(1, train="fc")) is None


def test_bcos_takes_no_pretrained_weights() -> None:
    spec = ModelSpec("resnet18", 2, 3, pretrained="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="--model bcos trains from scratch here"):
        RECIPES["bcos"].build(spec)


def test_rebuild_model_adds_the_scorers_a_run_recorded() -> None:
    built = build_for_training(_lap(), 2, 3)
    assert built.discriminative
    run_config = {"model": built.record, "mean": [0.5] * 3, "std": [0.25] * 3}
    plain = rebuild_model(run_config)  # no key: no scorer
    assert all(m.discriminative_scorer is None for m in lap_modules(plain).values())
    scored = rebuild_model({**run_config, "discriminative_scorers": True})
    assert all(m.discriminative_scorer is not None for m in lap_modules(scored).values())
    state = NormalizedClassifier(built.net, [0.5] * 3, [0.25] * 3).state_dict()
    scored.load_state_dict(state, strict=True)
    assert torch.equal(scored.normalize.std.flatten(), torch.full((3,), 0.25))
