"""The settings of one evaluation (:class:`EvaluateOptions`), checked before any work."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torchlap._checks import check_bool, check_choice, check_device, check_seed, is_int, is_number
from torchlap.data import SPLITS
from torchlap.evaluate.bla_comparison import LIME_CHECK_FIELDS, check_lime_check_options
from torchlap.evaluate.checks import validate_check_options
from torchlap.explainers import available, check_options, comparison_methods
from torchlap.explainers.lap import LAP_ALL_VARIANTS
from torchlap.metrics.localization import THRESHOLD_CLASSIFIERS
from torchlap.metrics.noise_stability import check_noise_fractions
from torchlap.metrics.perturbation import BASELINES, TIE_RULES, check_ks
from torchlap.metrics.uncertainty import DEFAULT_LEVEL, DEFAULT_RESAMPLES, MAX_RESAMPLES

__all__ = [
    "DEFAULT_METHODS",
    "MAX_BATCH_SIZE",
    "MAX_TIE_DRAWS",
    "THRESHOLD_FIT_SETS",
    "EvaluateOptions",
    "refuse_repeats",
]

#: the default comparison set as registered when torchlap loaded (EvaluateOptions reads the
#: registry when it is created, so a method registered later joins its default)
DEFAULT_METHODS = comparison_methods()
#: the choices of ``threshold_fit`` (``ties``: TIE_RULES, ``lap_all_ranking``: LAP_ALL_VARIANTS)
THRESHOLD_FIT_SETS = ("all", "with_region")
#: the most ``tie_draws``: the mean of 10000 draws is within 1% of one draw's spread (its
#: standard error is 1/sqrt(draws) of it), and every draw re-runs the model on each tied image
#: (a larger count only costs time, and memory for its logits, before failing)
MAX_TIE_DRAWS = 10_000
#: the most ``batch_size``: beyond, a typo (a batch past 2**63 images failed inside the image
#: loop with an itertools message, after the run and its data were loaded)
MAX_BATCH_SIZE = 65_536


@dataclass
class EvaluateOptions:
    """Settings of one evaluation (all recorded in ``results.json``).

    ``split``: the split evaluated; thresholds and the learned LAP predictor are fitted on
    ``"val"``, so ``split="val"`` scores them on the images they were fitted on (a warning and
    ``results["notes"]["thresholds"]`` say so).
    ``max_images`` caps the evaluation images (the first ones of a built-in benchmark's split,
    a folder's class-stratified, seeded choice; each image keeps its index in the split as the
    id that seeds its draws: :class:`~torchlap.evaluate.EvalData`) and
    ``max_val_images`` the validation images used to fit thresholds and the learned LAP
    predictor. ``threshold_fit``: which validation images fit the global threshold of the
    other methods (paper 000: "over the validation samples"): ``"all"`` (default) or
    ``"with_region"`` (only those holding a region, torchlap's rule before metrics revision 3).
    ``ties``: how keep-k% and Drop%/Increase% break ties at the k-th score, ``"random"``
    (default: the mean over ``tie_draws`` seeded random tie-breaks for the samples whose
    selection depends on it; ``tie_draws`` an int from 1 to :data:`MAX_TIE_DRAWS`) or
    ``"index"`` (raster order, the earlier rule); see :func:`torchlap.metrics.keep_top_k`.
    ``seed``: an int from 0 to 2**32 - 1, the seed of every random draw (the metrics', the
    checks', and RISE's masks unless ``method_options`` gives ``rise`` a ``seed``: the
    explainers' :attr:`~torchlap.explainers.Explainer.run_facts`). ``lap_all_ranking``: the "LAP
    All" map of the metrics that rank pixels (IoU by top-scored selection, mIoU, Bbox, pointing
    game, keep-k%, Drop%/Increase%): ``"unclipped_sum"`` (default, the supplement's map for
    top-K selection) or ``"algorithm1"``; the metrics that read the map's values (IoU by
    thresholding at 0.5, EBPG, Drop/Inc/Win and stability) use Algorithm 1 (see
    :func:`torchlap.explainers.lap_all`). ``stability_images`` is the subset on which stability
    recomputes every map under noise (one more explanation pass per fraction of
    ``stability_fractions``). ``method_options`` go to the explainers' constructors, e.g.
    ``{"rise": {"n_masks": 1000}}`` (known methods and option names; a NaN or infinite number
    anywhere in them is refused). ``target`` is whose map is explained: ``"prediction"`` (the
    paper's choice for keep-k%) or ``"label"``.

    ``bootstrap_resamples`` (default 2000; 0: none) and ``bootstrap_level`` (default 0.95): the
    percentile bootstrap intervals over the evaluated images (seeded by ``seed``) of every
    localization metric's mean (``results["localization"][method][metric]["interval"]``) and of
    the paired difference between a self-explaining method and every other method on the same
    images (``results["paired"]``; :mod:`torchlap.metrics.uncertainty`). The papers report means
    without intervals.

    ``sanity`` (off by default): the model-parameter randomization test of Adebayo et al.
    2018 on the first ``sanity_images`` images, modes ``sanity_modes`` (``cascading``,
    ``independent``), units of ``sanity_granularity`` (``block``/``layer``); a method passes
    when its Spearman |map| correlation at full randomization is below ``sanity_threshold``
    (results key ``sanity``, see :mod:`torchlap.evaluate.sanity`). ``grid_pg``: the synthetic
    grid pointing game on ``grid_pg_grids`` grids of ``grid_pg_shape`` (``auto``: 2x2, or 1xK
    for K < 4 classes) whose cells the model classifies correctly with probability at least
    ``grid_pg_confidence`` (results keys ``grid_pointing_game``, ``grid_pointing_setup``).
    ``check_methods``: the methods both checks run for (``None``: every method evaluated; each
    name once; the demo leaves out the perturbation explainers, whose full price every
    randomized copy pays).

    ``lime_images``: for a model with a BLA module and ``bla`` among the methods, the BLA
    paper's faithfulness check (section 4.3) on that many test images: Spearman rank
    correlation of LIME's patch scores (``lime_samples`` samples; ``lime_patch``-pixel squares,
    ``None``: the cells of BLA's feature map as equal bands of the image, the paper's 7x7 grid of
    32 px at 224 on a ResNet) with BLA's soft explanation and with
    Grad-CAM (results key ``lime_spearman``); 0 turns it off. LIME and Grad-CAM explain the
    paper's uninterpretable baseline when one is given (``evaluate_run(lime_baseline=...)``,
    ``--lime-baseline``; ``compare`` takes a vanilla run of the same architecture and data
    among its runs), else the BLA model itself (results key ``lime_reference`` says which).
    ``lime_options``: the check's LIME and Grad-CAM options (``--lime-option KEY=VALUE``):
    ``baseline``, ``perturbations_per_eval``, ``score``, ``weighting`` and ``cam_relu`` of
    :func:`~torchlap.evaluate.bla_comparison.bla_lime_faithfulness` (an unknown key refused,
    naming the accepted ones); the check's cache and results record those off their defaults.
    The flag's keys ``n_samples`` and ``patch`` set ``lime_samples`` and ``lime_patch`` (the
    fields hold them; ``lime_options`` refuses them), which key the check's cache as every
    field does and which ``results["lime_spearman"]`` records (``n_samples``, ``patch``).
    """

    split: str = "test"
    methods: tuple[str, ...] = field(default_factory=comparison_methods)
    batch_size: int = 32
    max_images: int | None = None
    max_val_images: int | None = 200
    ks: tuple[float, ...] = (10, 30, 50, 70, 90)
    baseline: str = "zero"
    stability_images: int = 16
    stability_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    threshold_classifier: str = "ridge"
    threshold_fit: str = "all"
    ties: str = "random"
    tie_draws: int = 4
    lap_all_ranking: str = "unclipped_sum"
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: str = "prediction"
    examples: bool = True
    lime_images: int = 8
    lime_samples: int = 1000
    lime_patch: int | None = None
    lime_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    bootstrap_resamples: int = DEFAULT_RESAMPLES
    bootstrap_level: float = DEFAULT_LEVEL
    # sanity checks and grid pointing game (torchlap.evaluate.checks; off by default)
    sanity: bool = False
    sanity_images: int = 8
    sanity_modes: tuple[str, ...] = ("cascading", "independent")
    sanity_granularity: str = "block"
    sanity_threshold: float = 0.5
    grid_pg: bool = False
    grid_pg_shape: str = "auto"
    grid_pg_grids: int = 16
    grid_pg_confidence: float = 0.9
    check_methods: tuple[str, ...] | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field (and what it accepts)."""
        self._validate_methods()
        self._validate_counts()
        try:  # the metrics' own check, here before any work (it ran after the first method)
            check_seed(self.seed)
            check_bool(self.examples, "examples")
            self.lime_options = check_lime_check_options(self.lime_options)
        except TypeError as error:  # ValueError, as the CLI reports it
            raise ValueError(str(error)) from None
        if self.target not in ("prediction", "label"):
            raise ValueError(f"target must be 'prediction' or 'label', got {self.target!r}")
        for name, accepted in (
            ("threshold_fit", THRESHOLD_FIT_SETS),
            ("ties", TIE_RULES),
            ("lap_all_ranking", LAP_ALL_VARIANTS),
            ("baseline", BASELINES),
            ("threshold_classifier", THRESHOLD_CLASSIFIERS),
        ):
            check_choice(getattr(self, name), name, accepted)
        self._validate_levels()
        if not isinstance(self.split, str) or self.split not in SPLITS:  # the data's words
            raise ValueError(
                f"unknown split {self.split!r}; accepted splits are {', '.join(SPLITS)}"
            )
        validate_check_options(self)
        if self.check_methods is not None:
            refuse_repeats(self.check_methods, "check_methods")
        check_device(self.device)
        if not isinstance(self.method_options, dict):
            raise TypeError(f"method_options must be a dict, got {self.method_options!r}")
        for method, options in self.method_options.items():
            check_options(method, options)  # an unknown method or option is named, not ignored
            _refuse_nonfinite(options, method)

    def _validate_levels(self) -> None:
        """``ks`` and ``stability_fractions`` by the metrics' own rules (each level once, no
        bool or string), here before any work (the metrics ran them after the first method's
        maps); the stability fractions also below 1 (a fully noised image)."""
        try:
            check_ks(self.ks)
            fractions = check_noise_fractions(self.stability_fractions)
        except (TypeError, ValueError) as error:  # ValueError, as the CLI reports it
            text = re.sub(r"\b(?<!noise )fractions\b", "stability_fractions", str(error))
            raise ValueError(text) from None
        if any(f >= 1 for f in fractions):
            raise ValueError(
                f"stability_fractions must be in (0, 1), got {self.stability_fractions}"
            )

    def _validate_methods(self) -> None:
        if isinstance(self.methods, str):
            raise ValueError(
                f"methods must be a tuple of method names, e.g. ({self.methods!r},), got the "
                f"string {self.methods!r}"
            )
        if not self.methods:
            raise ValueError("methods is empty; name at least one of " + ", ".join(available()))
        unknown = [m for m in self.methods if m not in available()]
        if unknown:
            raise ValueError(
                f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available())}"
            )
        refuse_repeats(self.methods, "methods")

    def _validate_counts(self) -> None:
        minimums: dict[str, Any] = {
            "batch_size": 1, "stability_images": 1, "tie_draws": 1, "lime_images": 0,
            "lime_samples": 1,
        }  # fmt: skip
        for name, low in minimums.items():
            value = getattr(self, name)
            if not is_int(value) or value < low:  # ValueError, as the CLI reports it
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}{_flag(name)}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise ValueError(
                f"batch_size must be an int from 1 to {MAX_BATCH_SIZE}, got {self.batch_size!r}"
            )
        resamples = self.bootstrap_resamples
        if not is_int(resamples) or not 0 <= resamples <= MAX_RESAMPLES:
            raise ValueError(
                f"bootstrap_resamples must be an int from 0 (no intervals) to {MAX_RESAMPLES}, "
                f"got {resamples!r}"
            )
        level = self.bootstrap_level
        if not is_number(level) or not 0.0 < float(level) < 1.0:
            raise ValueError(
                f"bootstrap_level must be a coverage in (0, 1), e.g. 0.95, got {level!r}"
            )
        if self.tie_draws > MAX_TIE_DRAWS:
            raise ValueError(
                f"tie_draws must be an int from 1 to {MAX_TIE_DRAWS}, got {self.tie_draws!r} (the "
                f"mean of {MAX_TIE_DRAWS} draws is within 1% of one draw's spread; every draw "
                "re-runs the model on each tied image)"
            )
        for name in ("max_images", "max_val_images", "lime_patch"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}{_flag(name)}")


def _flag(name: str) -> str:
    """The ``--lime-option`` key that sets field ``name`` on the command line, as a note for
    its error message ("" for another field)."""
    keys = [key for key, field_name in LIME_CHECK_FIELDS.items() if field_name == name]
    return f" (--lime-option {keys[0]})" if keys else ""


def refuse_repeats(names: Iterable[str], field_name: str) -> None:
    """``ValueError`` when ``names`` (``methods``, ``check_methods``) holds a name twice."""
    names = list(names)
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(
            f"{field_name} are listed twice: {names} ({', '.join(repeated)} more than once); "
            "name each method once"
        )


def _refuse_nonfinite(value: Any, where: str) -> None:
    """``ValueError`` naming the first NaN or infinite number in ``value`` (a method's options:
    numbers, strings, lists and dicts of them); results.json, which holds them, takes finite
    numbers only, and no explainer option means anything with NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"method_options: {where} is {value!r}; the options take finite numbers only "
            "(NaN and infinity are refused)"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_nonfinite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _refuse_nonfinite(item, f"{where}[{index}]")
