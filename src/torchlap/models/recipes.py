"""Model families: one recipe each, the one place that knows what a family is.

A recipe (:class:`Recipe`) builds its family's network for a training run, gives the JSON
record written to ``config.json``'s ``"model"`` (from which :func:`rebuild_model` rebuilds the
same module tree), the training objective (:mod:`torchlap.models.objectives`), the input
normalization, the phases it trains, and names its own explainer (the method of its native
map, or ``None``). The registry :data:`RECIPES` holds one per family:

========== ============================================================ ==========
family     model                                                        explainer
========== ============================================================ ==========
vanilla    the plain network (``--model lap --lap none``)               (none)
lap        the network with LAP layers (paper 000)                      ``lap``
bla ...    ``bla``, ``bla-t``, ``bla-ph``, ``l2x-f`` (paper 002)          ``bla``
antehoc    the network with the ante-hoc weight network (paper 004)     ``antehoc``
bcos       a B-cos network of the ``bcos`` package                      ``bcos``
========== ============================================================ ==========

A family is a *backbone* (how the classifier is built, :mod:`torchlap.models.backbones`:
``smallcnn``, a torchvision/timm network through :func:`~torchlap.models.build_model`, or the
``bcos`` package, recorded under ``"builder"``) plus optionally a *peer* added to it (BLA's
module in place of the global pool, the ante-hoc wrapper, recorded under ``"blaify"`` /
``"antehoc"``). Adding a family is adding a :class:`Recipe` subclass and one :func:`register`
call; :meth:`Recipe.owns` says which ``config.json`` records are the family's.

The settings a recipe reads for training are those of :class:`torchlap.train.TrainConfig`
(``arch``, ``lap``, ``model``, ``pretrained``, ``image_size``, ``supervision``, the LAP and
loss options); any object with those attributes works (``models`` does not import ``train``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from torchlap._checks import check_keyword_dict
from torchlap.layers import lap_modules
from torchlap.losses import (
    ConceptSets,
    InjectionLoss,
    default_weights,
    enable_discriminative_scorers,
)
from torchlap.models.antehoc import AnteHocModel
from torchlap.models.backbones import (
    BCOS_BUILDER,
    PLAIN_BUILDERS,
    SMALL_ARCHS,
    ModelSpec,
    build_backbone,
    json_copy,
    lap_sites,
    rebuild_backbone,
)
from torchlap.models.bcos import DEFAULT_TRAIN_NORM, build_bcos
from torchlap.models.bla import BLA_VARIANTS, apply_blaify_config, blaify
from torchlap.models.build import modules_after
from torchlap.models.objectives import (
    AnteHocObjective,
    CrossEntropyObjective,
    InjectionObjective,
    Objective,
    OneHotBCEObjective,
)
from torchlap.models.records import model_record
from torchlap.models.wrapping import NormalizedClassifier

__all__ = [
    "RECIPES",
    "SMALL_ARCHS",
    "ModelSpec",
    "Recipe",
    "TrainingModel",
    "antehoc_eta",
    "build_classifier",
    "build_for_training",
    "check_freeze_features",
    "default_n_concepts",
    "features_frozen",
    "model_choices",
    "native_explainers",
    "paper_loss_weights",
    "rebuild_model",
    "recipe_for",
    "recipe_of_record",
    "register",
    "unregister",
]


def default_n_concepts(num_classes: int, concept_sets: dict[str, Any] | None = None) -> int:
    """The count of ``concept_sets`` (``ConceptSets.to_dict()``) when given, else one concept
    present in the positive class for two classes, one per class otherwise."""
    if concept_sets is not None:  # (its form is checked where it is read)
        return ConceptSets.from_dict(concept_sets).n_concepts
    return 1 if num_classes == 2 else num_classes


def paper_loss_weights(
    n_layers: int,
    supervision: str,
    concept_weight: float | None = None,
    concordance_weight: float | None = None,
) -> dict[str, float]:
    """Loss weights of paper 000, Appendix A, for ``InjectionLoss(layer_reduction="mean")``,
    the reduction training uses (it weighs the means over layers and pairs).

    The paper weighs cross-entropy 1, the concept-discrimination (or expert) loss 0.25 per LAP
    layer and, for weak supervision, the concordance 0.25 per pair of consecutive layers (none
    for expert supervision: :func:`torchlap.losses.default_weights`). With
    ``layer_reduction="mean"`` each term is averaged over layers (pairs), so the weight of a
    mean is the per-layer (per-pair) weight x layers (pairs): the same total as
    ``InjectionLoss``'s default ``layer_reduction="sum"`` with the per-layer weights, while the
    logged terms (and ``loss_weights`` overrides) stay per-layer means. The discriminative
    scorer's term only trains that module (its input is detached); it gets the discrimination
    weight. ``concept_weight`` /
    ``concordance_weight`` replace the per-layer / per-pair weights (the ImageNet preset's
    0.125, ``--concordance-weight``). ``supervision="none"`` trains with cross-entropy alone.
    """
    per_layer = default_weights(supervision)
    if concept_weight is not None:
        for name in ("discrimination", "discriminative", "expert"):
            per_layer[name] = float(concept_weight)
    if concordance_weight is not None:
        per_layer["concordance"] = float(concordance_weight)
    pairs = max(n_layers - 1, 0)
    return {
        name: value * (pairs if name == "concordance" else n_layers)
        for name, value in per_layer.items()
    }


def check_freeze_features(value: Any, family: str) -> str | bool:
    """``value`` if ``family`` takes it as ``freeze_features`` (TrainConfig: whether paper 002's
    F, the network before BLA, is held fixed; ``"auto"``: all; bools: ``bla``, ``bla-t``,
    ``l2x-f``, and True ``bla-ph``); else TypeError/ValueError."""
    if not isinstance(value, bool) and not (isinstance(value, str) and value == "auto"):
        raise TypeError(f"freeze_features must be 'auto', True or False, got {value!r}")
    if value != "auto" and (family not in BLA_VARIANTS or (family == "bla-ph" and not value)):
        raise ValueError(
            f"freeze_features={value} is not for --model {family}: True/False hold fixed or train "
            "the feature extractor of bla, bla-t, l2x-f (bla-ph always holds it fixed); use 'auto'"
        )
    return value


def features_frozen(value: str | bool, family: str, pretrained: bool) -> bool:
    """Whether F is held fixed: BLA-PH always, ``True``, or ``"auto"`` with pretrained weights."""
    return family == "bla-ph" or value is True or (value == "auto" and pretrained)


def antehoc_eta(net: nn.Module) -> int:
    """The number of soft attention maps of ``--model antehoc``: paper 004's 8, or every
    convolution of a network with fewer (SmallCNN has 3)."""
    n_convs = sum(1 for name, m in net.named_modules() if isinstance(m, nn.Conv2d) and name)
    if n_convs == 0:
        raise ValueError("--model antehoc needs a network with nn.Conv2d layers; found none")
    return min(8, n_convs)


# ------------------------------------------------------------------------------------------
# training extras of a family
@dataclass
class TrainingModel:
    """What a recipe gives ``fit``: the network, its record, objective and LAP facts."""

    net: nn.Module
    record: dict[str, Any]
    objective: Objective
    lap_names: list[str] = field(default_factory=list)
    concept_sets: ConceptSets | None = None
    discriminative: bool = False
    injection: InjectionLoss | None = None
    head_ratios: tuple[list[Any], list[Any], list[Any]] | None = None
    lap_options: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# recipes
class Recipe:
    """One model family. Subclasses override what differs from the vanilla network."""

    #: the family's name (a key of :data:`RECIPES`)
    name: str = "vanilla"
    #: the ``--model`` value that selects it (the vanilla network: ``lap`` with ``--lap none``)
    model: str = "lap"
    #: the explainer method of the family's own map, or ``None``
    explainer: str | None = None
    #: whether the network has LAP layers (and the injection loss)
    uses_lap: bool = False
    #: the record key of the peer this family adds to the backbone, if any
    peer_key: str | None = None

    def build(self, spec: ModelSpec) -> tuple[nn.Module, dict[str, Any]]:
        """The untrained network (without normalization) and its JSON record."""
        return build_backbone(spec)

    def rebuild(self, record: dict[str, Any]) -> nn.Module:
        """The untrained network ``record`` describes (inverse of :meth:`build`)."""
        return rebuild_backbone(record)

    def normalization(
        self, mean: Sequence[float], std: Sequence[float]
    ) -> tuple[list[float], list[float]]:
        """The input normalization the model applies (the data's mean and std)."""
        return [float(v) for v in mean], [float(v) for v in std]

    def phases(self, phases: list[Any], record: dict[str, Any]) -> list[Any]:
        """The phases the run trains (as configured)."""
        return list(phases)

    def phase_problem(self, phase: Any) -> str | None:
        """Why this family cannot train ``phase`` (a PhaseConfig), or ``None``."""
        return None

    def owns(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` (config.json's ``"model"``) is one this family wrote."""
        plain = record.get("builder") in PLAIN_BUILDERS
        peers = any(record.get(r.peer_key) is not None for r in RECIPES.values() if r.peer_key)
        return plain and not peers and bool(record.get("lapify")) == self.uses_lap

    def training_model(
        self, config: Any, num_classes: int, in_channels: int, pretrained_file: str | None = None
    ) -> TrainingModel:
        """Build the network for ``config`` (a TrainConfig) with its objective
        (``pretrained_file``: see :class:`ModelSpec`)."""
        spec = self.spec(config, num_classes, in_channels, 1, {}, pretrained_file)
        net, record = self.build(spec)
        return TrainingModel(net, record, self.objective())

    def objective(self) -> Objective:
        """The training objective (cross-entropy)."""
        return CrossEntropyObjective()

    @staticmethod
    def spec(
        config: Any,
        num_classes: int,
        in_channels: int,
        n_concepts: int,
        lap_options: dict,
        pretrained_file: str | None = None,
    ) -> ModelSpec:
        """The :class:`ModelSpec` of a TrainConfig-like ``config`` and the data's facts."""
        return ModelSpec(
            config.arch, num_classes, in_channels, config.lap, n_concepts, config.pretrained,
            config.image_size, dict(lap_options), pretrained_file,
        )  # fmt: skip


class LapRecipe(Recipe):
    """The network with LAP layers (paper 000), trained with the knowledge-injection loss."""

    name = "lap"
    explainer = "lap"
    uses_lap = True

    def training_model(
        self, config: Any, num_classes: int, in_channels: int, pretrained_file: str | None = None
    ) -> TrainingModel:
        """Network + :class:`InjectionObjective` with the paper's (or the given) weights."""
        n_concepts = config.n_concepts or default_n_concepts(num_classes, config.concept_sets)
        # the --lap preset's paper options (hidden channels, aggregation, ratios, ...)
        lap_options, preset_options = config.lap_options()
        head_ratios = config.head_ratios(n_concepts)
        spec = self.spec(config, num_classes, in_channels, n_concepts, lap_options, pretrained_file)
        net, record = self.build(spec)
        layers = lap_modules(net)
        if not layers:
            raise ValueError(f"--lap {config.lap!r} put no LAP layer into {config.arch!r}")
        concept_sets = _concept_sets(config, num_classes, n_concepts)
        supervision = config.effective_supervision
        weights = paper_loss_weights(
            len(layers),
            supervision,
            concept_weight=preset_options.get("concept_weight"),
            concordance_weight=config.concordance_weight,
        )
        weights.update(config.loss_weights or {})
        discriminative = bool(config.use_discriminative and supervision != "none")
        if discriminative:
            enable_discriminative_scorers(net)
        extra: dict[str, Any] = {"common_head_sets": config.common_head_sets}
        if config.concordance_threshold is not None:
            extra["concordance_threshold"] = config.concordance_threshold
        if config.concordance_mode is not None:
            extra["concordance_mode"] = config.concordance_mode
        min_ars, max_ars, iars = head_ratios
        injection = InjectionLoss(
            concept_sets,
            min_ar=min_ars,
            max_ar=max_ars,
            iar=iars,
            supervision=supervision,
            use_discriminative=discriminative,
            weights=weights,
            expert_positive_fraction=config.expert_positive_fraction,
            layer_reduction="mean",  # the weights of paper_loss_weights weigh the layer means
            **extra,
        )
        return TrainingModel(
            net, record, InjectionObjective(injection), list(layers), concept_sets,
            discriminative, injection, head_ratios, lap_options,
        )  # fmt: skip


def _concept_sets(config: Any, num_classes: int, n_concepts: int) -> ConceptSets:
    if config.concept_sets is None:
        return ConceptSets.default(num_classes, n_concepts)
    concept_sets = ConceptSets.from_dict(config.concept_sets)
    if concept_sets.num_classes != num_classes or concept_sets.n_concepts != n_concepts:
        raise ValueError(
            f"concept_sets are for {concept_sets.num_classes} classes x "
            f"{concept_sets.n_concepts} concepts; the data has {num_classes} classes and the "
            f"model {n_concepts} concepts"
        )
    return concept_sets


class BlaRecipe(Recipe):
    """A BLA-family model (paper 002): :func:`blaify` in place of the global pool."""

    explainer = "bla"
    peer_key = "blaify"

    def __init__(self, variant: str) -> None:
        if variant not in BLA_VARIANTS:
            raise ValueError(f"unknown BLA variant {variant!r}; expected one of {BLA_VARIANTS}")
        self.name = self.model = variant

    def build(
        self, spec: ModelSpec, freeze_features: str | bool = "auto"
    ) -> tuple[nn.Module, dict[str, Any]]:
        """The vanilla network with BLA (``init="glorot"``); its entry under ``"blaify"``, with
        the modules after BLA (``"head"``) and whether F is held fixed (``"features_frozen"``:
        ``freeze_features`` True, or ``"auto"`` with ``spec.pretrained`` set; BLA-PH always)."""
        net, record = build_backbone(dataclasses.replace(spec, lap="none"))
        # Glorot-uniform scorer, as the paper initialises new parameters (section 4.2; also
        # blaify's default; init="zeros" would start as the exact average pool)
        # L2X-F keeps the paper's share of positions (8 of 7x7) on this input size's map;
        # BLA-T/BLA-PH threshold at section 4.2's gamma = 0.98 / n (blaify's default: 1/n)
        extra: dict[str, Any] = {"k": "auto"} if self.name == "l2x-f" else {}
        if self.name in ("bla-t", "bla-ph"):
            extra["gamma_factor"] = 0.98
        blaify(net, variant=self.name, input_size=spec.image_size, init="glorot", **extra)
        entry = json_copy(model_record(net)["blaify"])
        frozen = features_frozen(freeze_features, self.name, spec.pretrained is not None)
        head = modules_after(net, entry["module_name"])
        record["blaify"] = {**entry, "head": head, "features_frozen": frozen}
        return net, record

    def training_model(
        self, config: Any, num_classes: int, in_channels: int, pretrained_file: str | None = None
    ) -> TrainingModel:
        """The network with ``config.freeze_features`` (none: ``"auto"``) and cross-entropy."""
        freeze = check_freeze_features(getattr(config, "freeze_features", "auto"), self.name)
        spec = self.spec(config, num_classes, in_channels, 1, {}, pretrained_file)
        net, record = self.build(spec, freeze)
        return TrainingModel(net, record, self.objective())

    def rebuild(self, record: dict[str, Any]) -> nn.Module:
        """The backbone with the recorded BLA module."""
        return apply_blaify_config(rebuild_backbone(record), record["blaify"])

    def owns(self, record: dict[str, Any]) -> bool:
        """A record with this variant's ``"blaify"`` entry."""
        return (record.get("blaify") or {}).get("variant") == self.name

    def phase_problem(self, phase: Any) -> str | None:
        """BLA-PH trains the BLA module alone: its phases must say ``all``."""
        if self.name == "bla-ph" and phase.train_targets() != ["all"]:
            return (
                "--model bla-ph trains only the BLA module (frozen heads, paper 002 section "
                "4.2): give phases with TRAIN 'all' (read as the BLA module), or use --model bla-t"
            )
        return None

    def phases(self, phases: list[Any], record: dict[str, Any]) -> list[Any]:
        """BLA-PH (section 4.2): every phase trains the BLA module alone (TrainConfig refuses
        phases training anything but 'all'). The others, F held fixed (``features_frozen``):
        ``all`` trains the BLA module and the head (4.2: "F continues to be held fixed, while
        L, Q are trained"); a phase naming modules outside them is refused."""
        entry = record["blaify"]
        if self.name == "bla-ph":
            return [dataclasses.replace(phase, train=entry["module_name"]) for phase in phases]
        if not entry.get("features_frozen"):
            return list(phases)
        allowed = [entry["module_name"], *entry["head"]]
        result = []
        for index, phase in enumerate(phases, 1):
            names = [t.removeprefix("net.") for t in phase.train_targets()]
            if "all" in names:
                phase = dataclasses.replace(phase, train=",".join(allowed))
            elif not all(any(n == a or n.startswith(f"{a}.") for a in allowed) for n in names):
                raise ValueError(
                    f"phase {index} trains {phase.train!r}, but the feature extractor is held "
                    f"fixed (freeze_features): train {','.join(allowed)} or 'all' (read as them), "
                    "or set freeze_features=False"
                )
            result.append(phase)
        return result


class AnteHocRecipe(Recipe):
    """The ante-hoc network of paper 004: the vanilla network in an :class:`AnteHocModel`."""

    name = model = "antehoc"
    explainer = "antehoc"
    peer_key = "antehoc"

    def build(self, spec: ModelSpec) -> tuple[nn.Module, dict[str, Any]]:
        """The wrapped network (:func:`antehoc_eta` layers); its layers under ``"antehoc"``."""
        net, record = build_backbone(dataclasses.replace(spec, lap="none"))
        net = AnteHocModel(net, eta=antehoc_eta(net))
        record["antehoc"] = json_copy(model_record(net)["antehoc"])
        return net, record

    def owns(self, record: dict[str, Any]) -> bool:
        """A record with an ``"antehoc"`` entry."""
        return record.get("antehoc") is not None

    def rebuild(self, record: dict[str, Any]) -> nn.Module:
        """The backbone in an :class:`AnteHocModel` over the recorded layers."""
        entry = record["antehoc"]
        return AnteHocModel(
            rebuild_backbone(record),
            layer_names=entry["layer_names"],
            autoencoder_channels=entry["autoencoder_channels"],
        )

    def objective(self) -> Objective:
        """Both passes of section 2.1 (:class:`AnteHocObjective`)."""
        return AnteHocObjective()


class BcosRecipe(Recipe):
    """A B-cos network of the ``bcos`` package (``arch`` one of its models)."""

    name = model = "bcos"
    explainer = "bcos"

    def build(
        self, spec: ModelSpec, norm: str = DEFAULT_TRAIN_NORM
    ) -> tuple[nn.Module, dict[str, Any]]:
        """The package's network behind its ``[x, 1 - x]`` encoding (trained from scratch);
        ``norm`` one of :data:`~torchlap.models.bcos.BCOS_NORMS` (the record keeps it)."""
        if spec.pretrained is not None:
            raise ValueError(
                "--model bcos trains from scratch here: torchlap does not load B-cos weights "
                "(--pretrained is not supported with it)"
            )
        net = build_bcos(spec.arch, spec.num_classes, spec.in_channels, norm)
        return net, {"builder": BCOS_BUILDER, **model_record(net)}

    def training_model(
        self, config: Any, num_classes: int, in_channels: int, pretrained_file: str | None = None
    ) -> TrainingModel:
        """The network with ``config.bcos_norm`` (``None``: :data:`DEFAULT_TRAIN_NORM`) and the
        package's binary cross-entropy."""
        spec = self.spec(config, num_classes, in_channels, 1, {}, pretrained_file)
        norm = getattr(config, "bcos_norm", None) or DEFAULT_TRAIN_NORM
        net, record = self.build(spec, norm)
        return TrainingModel(net, record, self.objective())

    def owns(self, record: dict[str, Any]) -> bool:
        """A record of the ``bcos`` builder."""
        return record.get("builder") == BCOS_BUILDER

    def normalization(
        self, mean: Sequence[float], std: Sequence[float]
    ) -> tuple[list[float], list[float]]:
        """None: B-cos encodes ``[x, 1 - x]`` of images in [0, 1]."""
        return [0.0] * len(mean), [1.0] * len(std)

    def objective(self) -> Objective:
        """The package's binary cross-entropy on one-hot targets."""
        return OneHotBCEObjective()


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES` under its name (a new family; names are unique)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"register expects a Recipe, got {type(recipe).__name__}")
    if recipe.name in RECIPES:
        raise ValueError(f"a model family named {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


for _recipe in (
    Recipe(),
    LapRecipe(),
    *(BlaRecipe(v) for v in BLA_VARIANTS),
    AnteHocRecipe(),
    BcosRecipe(),
):
    register(_recipe)


def unregister(name: str) -> Recipe:
    """Remove the family ``name`` from :data:`RECIPES` and return its recipe."""
    if name not in RECIPES:
        raise ValueError(f"no model family named {name!r}; registered: {sorted(RECIPES)}")
    return RECIPES.pop(name)


def model_choices() -> tuple[str, ...]:
    """The values ``--model`` accepts, in registry order."""
    return tuple(dict.fromkeys(recipe.model for recipe in RECIPES.values()))


def native_explainers() -> dict[str, str]:
    """``{family: explainer method}`` of the families that have their own map."""
    return {name: r.explainer for name, r in RECIPES.items() if r.explainer is not None}


def recipe_for(model: str, lap: str = "auto") -> Recipe:
    """The recipe ``--model model --lap lap`` selects (``lap`` ``none``: the vanilla network)."""
    candidates = [r for r in RECIPES.values() if r.model == model]
    if not candidates:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(model_choices())}")
    if len(candidates) > 1:  # "lap": the LAP network, or the vanilla one with --lap none
        wants_lap = str(lap).lower() != "none"
        candidates = [r for r in candidates if r.uses_lap == wants_lap] or candidates
    return candidates[0]


def recipe_of_record(record: dict[str, Any]) -> Recipe:
    """The recipe that wrote a ``"model"`` record: the last registered one that owns it."""
    if not isinstance(record, dict):
        raise TypeError(f"a model record must be a dict, got {type(record).__name__}")
    for recipe in reversed(list(RECIPES.values())):
        if recipe.owns(record):
            return recipe
    raise ValueError(f"config.json names an unknown model builder {record.get('builder')!r}")


# ------------------------------------------------------------------------------------------
# entry points
def build_for_training(
    config: Any, num_classes: int, in_channels: int, pretrained_file: str | None = None
) -> TrainingModel:
    """The network, record and objective ``config`` (a TrainConfig) asks for.

    ``pretrained_file``: the file to load for ``config.pretrained`` when the caller resolved it
    (a run folder's weights, :func:`torchlap.runs.pretrained_weights`); the record keeps
    ``config.pretrained`` as given.
    """
    recipe = recipe_for(config.model, config.lap)
    return recipe.training_model(config, num_classes, in_channels, pretrained_file)


def build_classifier(
    arch: str,
    num_classes: int,
    in_channels: int,
    lap: str,
    n_concepts: int,
    pretrained: str | None = None,
    model: str = "lap",
    image_size: int | None = None,
    lap_options: dict[str, Any] | None = None,
    pretrained_file: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier (without normalization) and the JSON record that rebuilds it.

    ``model`` is the ``--model`` value; other than ``"lap"``, ``lap`` must be ``"none"`` or
    ``"auto"`` (then ignored: the peers are built on the vanilla network). ``lap_options``:
    ``hidden_channels``, ``aggregation``, ``alpha``, ``head_hidden`` of every LAP layer;
    ``image_size``: BLA's channel probe's input side. ``pretrained_file``: see :class:`ModelSpec`.
    """
    recipe = recipe_for(model, lap)
    if not recipe.uses_lap and recipe.name != "vanilla":
        if str(lap).lower() not in ("auto", "none"):
            message = f"model {model!r} builds a network without LAP layers; lap must be 'none'"
            raise ValueError(f"{message}, got {lap!r}")
        lap = "none"
    lap_sites(lap)  # an unknown --lap fails for every family
    spec = ModelSpec(
        arch, num_classes, in_channels, lap, n_concepts, pretrained, image_size,
        check_keyword_dict(lap_options, "lap_options", "of every LAP layer"), pretrained_file,
    )  # fmt: skip
    return recipe.build(spec)


def rebuild_model(run_config: dict[str, Any]) -> NormalizedClassifier:
    """The untrained model a run's ``config.json`` describes (weights not loaded)."""
    record = dict(run_config["model"])
    net = recipe_of_record(record).rebuild(record)
    if run_config.get("discriminative_scorers"):
        enable_discriminative_scorers(net)
    return NormalizedClassifier(net, run_config["mean"], run_config["std"])
