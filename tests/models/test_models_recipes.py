"""The model-family registry: every family builds, records, rebuilds and names its explainer;
the objective each family trains with; a family added by registration reaches TrainConfig."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from torchlap.layers import lap_modules
from torchlap.losses import InjectionLoss
from torchlap.models.antehoc import AnteHocModel
from torchlap.models.bcos import bcos_available
from torchlap.models.bla import bla_modules
from torchlap.models.objectives import (
    AnteHocObjective,
    CrossEntropyObjective,
    InjectionObjective,
    OneHotBCEObjective,
)
from torchlap.models.recipes import (
    RECIPES,
    Recipe,
    build_classifier,
    build_for_training,
    model_choices,
    native_explainers,
    rebuild_model,
    recipe_for,
    recipe_of_record,
    register,
    unregister,
)
from torchlap.models.wrapping import NormalizedClassifier, SmallCNN
from torchlap.runs import pretrained_weights
from torchlap.train import TrainConfig
from torchlap.train.config import MODELS

# family -> (--model, --lap, arch, the explainer of its own map, the objective it trains with)
FAMILIES = {
    "vanilla": ("lap", "none", "smallcnn", None, CrossEntropyObjective),
    "lap": ("lap", "auto", "smallcnn", "lap", InjectionObjective),
    "bla": ("bla", "none", "smallcnn", "bla", CrossEntropyObjective),
    "bla-t": ("bla-t", "none", "smallcnn", "bla", CrossEntropyObjective),
    "bla-ph": ("bla-ph", "none", "smallcnn", "bla", CrossEntropyObjective),
    "l2x-f": ("l2x-f", "none", "smallcnn", "bla", CrossEntropyObjective),
    "antehoc": ("antehoc", "none", "smallcnn", "antehoc", AnteHocObjective),
    "bcos": ("bcos", "none", "resnet18", "bcos", OneHotBCEObjective),
}
SIZE = 32


def _config(family: str, **changes: object) -> TrainConfig:
    model, lap, arch, _, _ = FAMILIES[family]
    return TrainConfig(data="lesions", out="unused", arch=arch, lap=lap, model=model, **changes)


def _skip_without_bcos(family: str) -> None:
    if family == "bcos" and not bcos_available():
        pytest.skip("the bcos extra is not installed")


def test_every_builtin_family_is_registered_once_with_its_cli_model() -> None:
    assert set(RECIPES) == set(FAMILIES)
    assert (
        model_choices() == MODELS == ("lap", "bla", "bla-t", "bla-ph", "l2x-f", "antehoc", "bcos")
    )
    for family, (model, lap, _, _, _) in FAMILIES.items():
        assert recipe_for(model, lap).name == family
        assert TrainConfig(data="d", out="o", model=model, lap=lap).family == family
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        recipe_for("nope")


def test_families_name_their_own_explainer_and_it_is_registered() -> None:
    from torchlap.explainers import available

    assert {n: r.explainer for n, r in RECIPES.items()} == {
        family: facts[3] for family, facts in FAMILIES.items()
    }
    assert native_explainers() == {f: e for f, (*_, e, _) in FAMILIES.items() if e is not None}
    assert set(native_explainers().values()) <= set(available())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_builds_records_and_rebuilds_the_same_model(family: str) -> None:
    _skip_without_bcos(family)
    torch.manual_seed(0)
    config = _config(family, image_size=SIZE)
    built = build_for_training(config, num_classes=2, in_channels=3)
    record = json.loads(json.dumps(built.record))  # JSON as config.json stores it
    assert recipe_of_record(record).name == family
    run_config = {
        "model": record,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "discriminative_scorers": built.discriminative,
    }
    torch.manual_seed(1)  # other initial weights: the state must come from load_state_dict
    rebuilt = rebuild_model(run_config)
    original = NormalizedClassifier(built.net, [0.5] * 3, [0.25] * 3)
    state = original.state_dict()
    assert list(rebuilt.state_dict()) == list(state)
    assert all(rebuilt.state_dict()[k].shape == v.shape for k, v in state.items())
    rebuilt.load_state_dict(state, strict=True)
    images = torch.rand(2, 3, SIZE, SIZE)
    original.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), original(images))
    assert isinstance(built.objective, FAMILIES[family][4])
    # the family's own modules are where its explainer looks for them
    if family == "lap":
        assert lap_modules(rebuilt) and built.lap_names == list(lap_modules(built.net))
    elif family in ("bla", "bla-t", "bla-ph", "l2x-f"):
        assert record["blaify"]["variant"] == family and bla_modules(rebuilt)
    elif family == "antehoc":
        assert isinstance(rebuilt.net, AnteHocModel)


def test_build_classifier_matches_the_recipe_and_refuses_lap_on_a_peer() -> None:
    torch.manual_seed(0)
    net, record = build_classifier("smallcnn", 2, 3, "none", 1, model="bla", image_size=SIZE)
    torch.manual_seed(0)
    built = build_for_training(_config("bla", image_size=SIZE), 2, 3)
    assert record == built.record
    for (k, a), (_, b) in zip(
        net.state_dict().items(), built.net.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="lap must be 'none'"):
        build_classifier("smallcnn", 2, 3, "layer1", 1, model="antehoc")


def test_normalization_and_phases_come_from_the_family() -> None:
    mean, std = [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]
    assert RECIPES["lap"].normalization(mean, std) == (mean, std)
    assert RECIPES["bcos"].normalization(mean, std) == ([0.0] * 3, [1.0] * 3)
    config = _config("bla-ph", image_size=SIZE)
    built = build_for_training(config, 2, 3)
    phases = RECIPES["bla-ph"].phases(config.resolved_phases(), built.record)
    assert [p.train for p in phases] == [built.record["blaify"]["module_name"]]
    bla_t = build_for_training(_config("bla-t", image_size=SIZE), 2, 3)  # from scratch: F trains
    assert RECIPES["bla-t"].phases(config.resolved_phases(), bla_t.record)[0].train == "all"


@pytest.mark.parametrize("family", ["bla-t", "bla-ph"])
def test_bla_t_recipes_train_with_the_threshold_of_section_4_2(family: str) -> None:
    # paper 002, 4.2: "thresholding with gamma = 0.98/49"; blaify's own default is 3.1's 1/n
    built = build_for_training(_config(family, image_size=SIZE), 2, 3)
    assert built.record["blaify"]["gamma_factor"] == 0.98
    (module,) = bla_modules(built.net).values()
    assert module.gamma_for(49) == 0.98 / 49
    assert module.init == "glorot"


# ------------------------------------------------------------------------------ objectives
def _batch(num_classes: int = 2, size: int = SIZE) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return {"image": torch.rand(4, 3, size, size), "label": torch.tensor([0, 1, 1, 0])}


def test_cross_entropy_and_bce_objectives_compute_their_loss() -> None:
    model = NormalizedClassifier(SmallCNN(2, 3), [0.5] * 3, [0.5] * 3)
    batch = _batch()
    loss, terms, logits = CrossEntropyObjective()(model, batch)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch["label"]))
    assert set(terms) == {"cross_entropy"} and not terms["cross_entropy"].requires_grad
    loss, terms, logits = OneHotBCEObjective()(model, batch)
    target = F.one_hot(batch["label"], 2).float()
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, target))
    assert OneHotBCEObjective.task_loss == "binary_cross_entropy"


def test_injection_objective_is_the_injection_loss_of_the_same_pass() -> None:
    built = build_for_training(_config("lap", image_size=SIZE), 2, 3)
    model = NormalizedClassifier(built.net, [0.5] * 3, [0.5] * 3)
    batch = _batch()
    loss, terms, logits = built.objective(model, batch)
    assert set(terms) == set(InjectionObjective.terms)
    assert torch.isfinite(loss) and loss.requires_grad
    torch.testing.assert_close(terms["cross_entropy"], F.cross_entropy(logits, batch["label"]))
    assert float(terms["injection"]) > 0  # the LAP terms enter the total
    torch.testing.assert_close(loss.detach(), terms["cross_entropy"] + terms["injection"])
    with pytest.raises(TypeError, match="InjectionLoss"):
        InjectionObjective(nn.Identity())  # type: ignore[arg-type]
    assert isinstance(built.injection, InjectionLoss)


def test_antehoc_objective_refuses_a_model_without_the_weight_network() -> None:
    with pytest.raises(ValueError, match="AnteHocModel"):
        AnteHocObjective().bind(SmallCNN(2, 3))


def test_classifier_module_logs_the_terms_of_the_objective_it_is_given() -> None:
    from torchlap.train import ClassifierModule, PhaseConfig

    built = build_for_training(_config("antehoc", image_size=SIZE), 2, 3)
    model = NormalizedClassifier(built.net, [0.5] * 3, [0.5] * 3)
    module = ClassifierModule(model, 2, built.objective, [PhaseConfig(1)], 0)
    assert set(module._losses("train")) == {"total", "cross_entropy", "interpret"}
    loss, terms, _ = module._loss_terms(_batch())
    torch.testing.assert_close(loss.detach(), terms["cross_entropy"] + terms["interpret"])
    plain = ClassifierModule(model, 2, None, [PhaseConfig(1)], 0)  # None: cross-entropy only
    assert isinstance(plain.objective, CrossEntropyObjective)
    lap = build_for_training(_config("lap", image_size=SIZE), 2, 3)
    lap_model = NormalizedClassifier(lap.net, [0.5] * 3, [0.5] * 3)
    given_loss = ClassifierModule(lap_model, 2, lap.injection, [PhaseConfig(1)], 0)
    assert isinstance(given_loss.objective, InjectionObjective)  # an InjectionLoss is wrapped
    assert given_loss.objective.injection is lap.injection
    with pytest.raises(TypeError, match="objective must be"):
        ClassifierModule(model, 2, "ce", [PhaseConfig(1)], 0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ a new family
class _WideHead(Recipe):
    """A toy family: the vanilla network, marked in its record, trained with one-hot BCE."""

    name = model = "toy-wide"

    def build(self, spec):  # type: ignore[no-untyped-def]
        net, record = super().build(spec)
        record["toy"] = True
        return net, record

    def owns(self, record):  # type: ignore[no-untyped-def]
        return bool(record.get("toy"))

    def objective(self):  # type: ignore[no-untyped-def]
        return OneHotBCEObjective()


def test_a_registered_family_reaches_train_config_and_can_be_removed() -> None:
    register(_WideHead())
    try:
        assert "toy-wide" in model_choices()
        config = TrainConfig(data="lesions", out="o", arch="smallcnn", lap="none", model="toy-wide")
        config.validate()
        assert config.family == "toy-wide" and not config.uses_lap
        built = build_for_training(config, 2, 3)
        assert built.record["toy"] and isinstance(built.objective, OneHotBCEObjective)
        assert recipe_of_record(built.record).name == "toy-wide"
        run_config = {"model": built.record, "mean": [0.5] * 3, "std": [0.5] * 3}
        assert list(rebuild_model(run_config).net.state_dict()) == list(built.net.state_dict())
        with pytest.raises(ValueError, match="already registered"):
            register(_WideHead())
    finally:
        unregister("toy-wide")
    assert "toy-wide" not in model_choices()
    with pytest.raises(ValueError, match="unknown model 'toy-wide'"):
        TrainConfig(data="lesions", out="o", model="toy-wide").validate()
    with pytest.raises(ValueError, match="unknown model builder 'nowhere'"):
        recipe_of_record({"builder": "nowhere"})
    with pytest.raises(TypeError, match="expects a Recipe"):
        register("toy")  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["smallcnn", "resnet18"])
def test_a_run_folder_as_pretrained_loads_its_weights_and_is_recorded_as_given(
    tmp_path, arch: str
) -> None:
    """The caller resolves a run folder to its weights file (runs.pretrained_weights: models
    does not know a run's files); the record keeps the folder, as config.json always has."""
    trained, _ = build_classifier(arch, 2, 3, "none", 1)
    run = tmp_path / "vanilla"
    run.mkdir()
    state = NormalizedClassifier(trained, [0.5] * 3, [0.25] * 3).state_dict()
    save_file(state, str(run / "model.safetensors"), metadata={"format": "torchlap-run"})
    net, record = build_classifier(
        arch, 2, 3, "none", 1, pretrained=str(run), pretrained_file=pretrained_weights(run)
    )
    assert record["pretrained"] == str(run)
    loaded, expected = net.state_dict(), trained.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    with pytest.raises(ValueError, match="is a folder"):  # models alone does not read folders
        build_classifier(arch, 2, 3, "none", 1, pretrained=str(run))


def test_an_edited_small_arch_names_the_accepted_ones() -> None:
    """Before: `config.json names an unknown small architecture {...the whole record...}`."""
    from torchlap.models.backbones import _SMALL_BUILDER, SMALL_ARCHS, rebuild_backbone

    record = {"builder": _SMALL_BUILDER, "arch": "resnet18", "num_classes": 2, "in_channels": 3}
    with pytest.raises(ValueError, match=r"arch 'resnet18' is none of that builder's") as info:
        rebuild_backbone(record)
    assert all(name in str(info.value) for name in SMALL_ARCHS)
