"""``InjectionLoss``: the knowledge-injection objective of paper 000, section III.B.

Total training loss = cross-entropy + weighted sum of, per LAP layer, the concept-discrimination
loss (Eq. 5) or the expert supervision, the discriminative scorer's loss, and the concordance
loss (Eq. 6) between consecutive LAP layers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap._checks import check_bool, check_choice, check_fraction, check_number
from torchlap.layers import LapMaps, lap_modules
from torchlap.losses._validation import (
    PROBABILITIES,
    REGION_VALUES,
    RatioArg,
    check_eps,
    check_threshold,
    check_values,
    per_head_ratios,
    values_checked,
)
from torchlap.losses.concepts import ConceptSets
from torchlap.losses.functional import (
    CONCORDANCE_MODES,
    CONCORDANCE_POOLS,
    EXPERT_NEGATIVE_PIXELS,
    EXPERT_POSITIVE_FRACTION,
    LOG_EPS,
    MASK_RESIZE_MODES,
    annotated_samples,
    concept_discrimination_loss,
    concordance_loss,
    discriminative_scorer_loss,
    expert_supervision_loss,
)

__all__ = [
    "COMMON_HEAD_SETS",
    "DEFAULT_WEIGHTS",
    "LAYER_REDUCTIONS",
    "SUPERVISION_MODES",
    "InjectionLoss",
    "default_weights",
    "enable_discriminative_scorers",
]

logger = logging.getLogger(__name__)

SUPERVISION_MODES = ("weak", "expert", "none")

#: how :class:`InjectionLoss` combines a term over LAP layers (and the concordance over pairs):
#: ``"sum"`` (the paper's "0.25 per LAP", "0.25 per LAP pair") or ``"mean"``
LAYER_REDUCTIONS = ("sum", "mean")

#: what chooses the pixel sets of Eq. 5 for a *common* head (its concept in every class):
#: ``"discriminative"`` (the paper's rule for every head: the discriminative scoring module) or
#: ``"own"`` (the head's own probabilities). The module's loss for a common head has one target,
#: 1 at every pixel of every sample, so its map ranks the pixels by no concept.
COMMON_HEAD_SETS = ("discriminative", "own")

# Paper 000, Appendix A (RSNA): 0.25 per LAP for the concept loss, 0.25 per LAP pair for the
# concordance, 0.25 per LAP for the expert cross-entropy: weights of each layer's (pair's) term,
# which InjectionLoss sums over layers by default. The paper gives no weight for the
# discriminative scorer; its gradient reaches only that module (its input is detached), so the
# weight only scales that module's step; it gets the concept loss's 0.25. These are the weak
# supervision's weights; see default_weights for the others.
DEFAULT_WEIGHTS: dict[str, float] = {
    "discrimination": 0.25,
    "discriminative": 0.25,
    "expert": 0.25,
    "concordance": 0.25,
}


def default_weights(supervision: str) -> dict[str, float]:
    """The paper's loss weights (Appendix A) for one supervision mode, per LAP layer (pair).

    ``"weak"``: :data:`DEFAULT_WEIGHTS`. ``"expert"``: the same without concordance ("for full
    supervision, we used cross-entropy loss on the classification head alongside cross-entropy
    loss on LAPs [...] with weights of 1 and 0.25 per LAP": no concordance term is named; give
    ``weights={"concordance": 0.25}`` to add it). ``"none"``: cross-entropy only (the paper's
    "No L" ablation), concordance 0 as well.
    """
    check_choice(supervision, "supervision", SUPERVISION_MODES)
    weights = dict(DEFAULT_WEIGHTS)
    if supervision != "weak":
        weights["concordance"] = 0.0
    return weights


def enable_discriminative_scorers(model: nn.Module) -> list[str]:
    """Add the discriminative scoring module to every LAP layer of ``model`` (section III.B.1).

    Returns the names of the layers. Call it before building the optimizer, so that the new
    modules' parameters are optimized. Idempotent.
    """
    layers = lap_modules(model)
    if not layers:
        raise ValueError("the model has no LAP layer; put some in with torchlap.lapify(model)")
    for layer in layers.values():
        layer.enable_discriminative_scorer()
    return list(layers)


def _check_options(
    supervision: str,
    concordance_mode: str,
    concordance_pool: str,
    mask_resize: str,
    concordance_threshold: float,
    expert_positive_fraction: float,
    expert_negative_pixels: str,
    expert_positive_ranking: str,
    use_discriminative: bool,
    layer_reduction: str,
    common_head_sets: str,
) -> None:
    """The options of :class:`InjectionLoss` (raise naming the bad one and what is accepted)."""
    check_bool(use_discriminative, "use_discriminative")
    check_choice(layer_reduction, "layer_reduction", LAYER_REDUCTIONS)
    check_choice(common_head_sets, "common_head_sets", COMMON_HEAD_SETS)
    check_choice(supervision, "supervision", SUPERVISION_MODES)
    check_choice(concordance_mode, "concordance_mode", CONCORDANCE_MODES)
    check_choice(concordance_pool, "concordance_pool", CONCORDANCE_POOLS)
    check_choice(mask_resize, "mask_resize", MASK_RESIZE_MODES)
    check_threshold(concordance_threshold, "concordance_threshold")
    check_fraction(expert_positive_fraction, "expert_positive_fraction")
    check_choice(expert_negative_pixels, "expert_negative_pixels", EXPERT_NEGATIVE_PIXELS)
    check_choice(expert_positive_ranking, "expert_positive_ranking", ("concepts", "discriminative"))
    if expert_positive_ranking == "discriminative" and not use_discriminative:
        raise ValueError(
            "expert_positive_ranking='discriminative' ranks on the discriminative scoring "
            "module: it needs use_discriminative=True"
        )


def _merged_weights(supervision: str, weights: Mapping[str, float] | None) -> dict[str, float]:
    """The default weights of ``supervision`` (and cross-entropy 1) updated by ``weights``."""
    merged = {**default_weights(supervision), "cross_entropy": 1.0}
    if weights is not None:
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights must be a dict {{term: float}}, got {weights!r}")
        unknown = sorted(set(weights) - set(merged))
        if unknown:
            raise ValueError(f"unknown loss weights {unknown}; known terms: {sorted(merged)}")
        for name, value in weights.items():
            merged[name] = check_number(value, f"weights[{name!r}]", minimum=0.0)
    return merged


class InjectionLoss(nn.Module):
    """Knowledge-injection loss of paper 000, section III.B, over all LAP layers of a model.

    Args:
        concept_sets: which concept heads are present in which class (:class:`ConceptSets`).
        min_ar, max_ar, iar: Eq. 5's ratios, a float in (0, 1], ``None`` (term off) or one per
            head. Defaults 0.1 / 0.5 / 0.1 are the paper's RSNA values (Appendix A): MinAR and
            MaxAR are the median and the maximum fraction of the image the distinguishing part
            covers in positive samples, IAR is low but large enough that its term does not fade.
            Use :func:`torchlap.losses.suggest_ratios` on your boxes. The paper's CelebA model
            used ``min_ar=[0.02, 0.02, None], max_ar=[0.2, 0.2, 0.1], iar=[0.01, 0.01, None]``
            (common head: MaxAR only).
        supervision: ``"weak"`` (Eq. 5), ``"expert"`` (Appendix A, see
            :func:`expert_supervision_loss`: the regions choose the positive pixel sets,
            the top-IAR pixels of the samples without the concept are pushed down; Eq. 5 for
            positives without a region and for common heads, under ``"discrimination"``; both
            groups of positives of a head are averaged over its ``N_c``, all its positives) or
            ``"none"`` (no concept loss: discrimination, discriminative and expert terms are 0).
            Concordance is always computed (and returned, for logging) when there are two LAP
            layers or more, and enters ``"injection"`` with its weight, whose default depends
            on the mode (:func:`default_weights`: 0.25 for weak, 0 for expert and none).
        use_discriminative: ``True`` or ``False`` (a bool, nothing coerced): choose Eq. 5's
            pixel sets with the discriminative scoring module (on by default, as in the paper);
            the layers must have it (see :func:`enable_discriminative_scorers`). Off: the sets
            are chosen on the heads' own probabilities.
        concordance_threshold, concordance_mode, concordance_pool: ``t``, ``"both"`` or
            ``"high_low"``, and the resize of :func:`concordance_loss`. The paper gives no value
            of ``t``; 0.1 ignores disagreements too small to matter without diluting the mean.
        weights: overrides of :func:`default_weights` (and ``"cross_entropy"``, default 1), each
            a finite number >= 0.
        layer_reduction: ``"sum"`` (default: the paper's "0.25 per LAP" and "0.25 per LAP
            pair", each layer's term and each pair's concordance weighted and added) or
            ``"mean"`` (the terms averaged over layers and pairs before weighting, as torchlap
            did before; ``torchlap train`` uses it with
            :func:`torchlap.models.recipes.paper_loss_weights`, which scales the weights by the
            number of layers and pairs: the same total).
        expert_positive_fraction, mask_resize: ``positive_fraction`` (a number in (0, 1],
            default 0.5, the paper's half) and ``resize`` of :func:`expert_supervision_loss`.
        expert_negative_pixels: its ``negative_pixels``: ``"iar"`` (paper) or ``"all"``.
        expert_positive_ranking: its ``positive_ranking``: ``"concepts"`` (paper: the inside
            pixels of higher importance probability) or ``"discriminative"`` (ranked by the
            discriminative scorer, as Eq. 5's sets are; needs ``use_discriminative``).
        eps: the clamp of the logarithms, a number in (0, 0.5) (checked here, not at the first
            forward).
        common_head_sets: what chooses Eq. 5's pixel sets for a head whose concept is in
            every class (the paper's CelebA common head), with ``use_discriminative``:
            ``"discriminative"`` (default, the paper's rule for every head) or ``"own"`` (the
            head's own probabilities: the discriminative module's loss pushes such a head up
            at every pixel of every sample, so its map ranks the pixels by no concept).

    ``forward`` returns a dict of scalars: ``"discrimination"``, ``"discriminative"``,
    ``"expert"`` (each the sum, or with ``layer_reduction="mean"`` the mean, over LAP layers),
    ``"concordance"`` (the sum, or mean, over consecutive pairs), ``"injection"`` (their
    weighted sum), and, when ``logits`` are given, ``"cross_entropy"`` and ``"total"`` = weight
    * cross-entropy + injection. The maps must hold probabilities in [0, 1] (NaN refused),
    checked with one device sync per call.
    """

    def __init__(
        self,
        concept_sets: ConceptSets,
        min_ar: RatioArg = 0.1,
        max_ar: RatioArg = 0.5,
        iar: RatioArg = 0.1,
        supervision: str = "weak",
        use_discriminative: bool = True,
        concordance_threshold: float = 0.1,
        concordance_mode: str = "both",
        weights: Mapping[str, float] | None = None,
        *,
        concordance_pool: str = "max",
        expert_positive_fraction: float = EXPERT_POSITIVE_FRACTION,
        mask_resize: str = "any",
        expert_negative_pixels: str = "iar",
        expert_positive_ranking: str = "concepts",
        eps: float = LOG_EPS,
        layer_reduction: str = "sum",
        common_head_sets: str = "discriminative",
    ) -> None:
        super().__init__()
        if not isinstance(concept_sets, ConceptSets):
            raise TypeError(
                "concept_sets must be a ConceptSets (e.g. ConceptSets.default(num_classes, "
                f"n_concepts)), got {type(concept_sets).__name__}"
            )
        _check_options(
            supervision, concordance_mode, concordance_pool, mask_resize, concordance_threshold,
            expert_positive_fraction, expert_negative_pixels, expert_positive_ranking,
            use_discriminative, layer_reduction, common_head_sets,
        )  # fmt: skip
        per_head_ratios(min_ar, max_ar, iar, concept_sets.n_concepts)  # validate now
        merged = _merged_weights(supervision, weights)
        self.concept_sets = concept_sets
        # per-head lists copied: a caller's list changed later would skip the check
        self.min_ar, self.max_ar, self.iar = (
            list(v) if isinstance(v, list) else v for v in (min_ar, max_ar, iar)
        )
        self.supervision = supervision
        self.use_discriminative = bool(use_discriminative)
        self.concordance_threshold = float(concordance_threshold)
        self.concordance_mode = concordance_mode
        self.concordance_pool = concordance_pool
        self.expert_positive_fraction = float(expert_positive_fraction)
        self.mask_resize = mask_resize
        self.expert_negative_pixels = expert_negative_pixels
        self.expert_positive_ranking = expert_positive_ranking
        self.eps = check_eps(eps)
        self.layer_reduction = layer_reduction
        self.common_head_sets = common_head_sets
        self.weights = merged

    def _check_maps(self, maps: Mapping[str, LapMaps]) -> list[tuple[str, LapMaps]]:
        if not isinstance(maps, Mapping) or not maps:
            raise ValueError(
                "maps must be a non-empty dict {layer name: LapMaps}, as returned by "
                "torchlap.attention_maps(model, detach=False) after a forward pass"
            )
        items = list(maps.items())
        for name, lap in items:
            if not isinstance(lap, LapMaps):
                raise TypeError(f"maps[{name!r}] must be a LapMaps, got {type(lap).__name__}")
            if not isinstance(lap.concepts, Tensor) or lap.concepts.dim() != 4:
                raise ValueError(
                    f"maps[{name!r}].concepts must be a tensor (B, h, H, W), got "
                    f"{getattr(lap.concepts, 'shape', type(lap.concepts).__name__)}"
                )
            disc = lap.discriminative
            if disc is not None and getattr(disc, "shape", None) != lap.concepts.shape:
                raise ValueError(
                    f"maps[{name!r}].discriminative must have the shape of its concepts "
                    f"{tuple(lap.concepts.shape)}, got {getattr(disc, 'shape', type(disc))}"
                )
            heads = lap.concepts.shape[1]
            if heads != self.concept_sets.n_concepts:
                raise ValueError(
                    f"LAP layer {name!r} has {heads} concept heads but the concept sets have "
                    f"{self.concept_sets.n_concepts}"
                )
            if (
                self.use_discriminative
                and self.supervision != "none"
                and lap.discriminative is None
            ):
                raise ValueError(
                    f"LAP layer {name!r} has no discriminative scoring module output, but "
                    "use_discriminative=True. Call layer.enable_discriminative_scorer() on each "
                    "LAP layer (or torchlap.losses.enable_discriminative_scorers(model)) before "
                    "building the optimizer and running the forward pass, or pass "
                    "use_discriminative=False."
                )
        return items

    def forward(
        self,
        maps: Mapping[str, LapMaps],
        labels: Tensor,
        region_masks: Tensor | None = None,
        has_region: Tensor | None = None,
        logits: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Each loss term (sum, or mean, over LAP layers / layer pairs: ``layer_reduction``)
        and their weighted sum.

        Args:
            maps: ``torchlap.attention_maps(model, detach=False)`` of this forward pass; the
                concept (and discriminative) maps must hold probabilities in [0, 1].
            labels: (B,) class indices.
            region_masks: (B, H0, W0) expert regions in [0, 1] (``supervision="expert"``).
            has_region: bool (B,), which samples have regions (default: all, when masks given).
            logits: optional (B, num_classes) class logits; adds ``"cross_entropy"`` and
                ``"total"``.
        """
        items = self._check_maps(maps)
        self.concept_sets.check_labels(labels)
        table, common = self._tables(labels.device)
        present = table[labels.long()]
        first = items[0][1].concepts
        batch = first.shape[0]
        if present.shape[0] != batch:
            raise ValueError(f"labels has {present.shape[0]} entries, the maps have batch {batch}")
        if logits is not None:
            self._check_logits(logits, batch)
        present = present.to(first.device)
        self._check_values(items, region_masks)  # every map at once: one sync

        expert_samples = self._expert_samples(
            region_masks, has_region, batch, first.device, present
        )
        # heads whose concept is in every class get no class region as target: weak loss for
        # them, and for the present concepts of samples without a region (expert mode)
        common = common.to(first.device)
        weak_pairs = None
        if self.supervision == "expert":
            weak_pairs = common[None, :] | (present & ~expert_samples[:, None])

        zero = first.sum() * 0.0
        with values_checked():
            terms = self._layer_terms(
                items, present, region_masks, expert_samples, weak_pairs, common
            )
            concordance = zero
            if len(items) > 1:  # computed (and logged) even at weight 0
                concordance = concordance_loss(
                    [lap.concepts for _, lap in items],
                    self.concordance_threshold,
                    self.concordance_mode,
                    pool=self.concordance_pool,
                    eps=self.eps,
                )  # the mean over the pairs
        if self.layer_reduction == "sum":
            out = {name: (torch.stack(v).sum() if v else zero) for name, v in terms.items()}
            out["concordance"] = concordance * (len(items) - 1)
        else:
            out = {name: (torch.stack(v).mean() if v else zero) for name, v in terms.items()}
            out["concordance"] = concordance
        out["injection"] = sum(
            (self.weights[name] * out[name] for name in DEFAULT_WEIGHTS), start=zero
        )
        if logits is not None:
            out["cross_entropy"] = self._cross_entropy(logits, labels)
            out["total"] = self.weights["cross_entropy"] * out["cross_entropy"] + out["injection"]
        return out

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """The concept table and its common heads on ``device``, copied from the host once per
        device and table, not on every step (such a copy waits for a GPU)."""
        table = self.concept_sets.table
        cache = self.__dict__.setdefault("_device_tables", {})
        held = cache.get(device)
        if held is None or held[0] is not table or held[1] != table._version:
            held = cache[device] = (
                table,
                table._version,
                table.to(device),
                table.all(0).to(device),
            )
        return held[2], held[3]

    def _check_values(self, items: list[tuple[str, LapMaps]], region_masks: Tensor | None) -> None:
        """Every map the losses will read in [0, 1], NaN refused (one device sync)."""
        ranged = [(f"maps[{name!r}].concepts", lap.concepts, PROBABILITIES) for name, lap in items]
        if self.use_discriminative and self.supervision != "none":
            ranged += [
                (f"maps[{name!r}].discriminative", lap.discriminative, PROBABILITIES)
                for name, lap in items
            ]
        if self.supervision == "expert" and isinstance(region_masks, Tensor):
            ranged.append(("region_masks", region_masks, REGION_VALUES))
        check_values(ranged)

    def _annotated(self, region_masks: Tensor, has_region: Tensor, present: Tensor) -> Tensor:
        """``has_region`` without the samples whose mask is empty (``annotated_samples``):
        their present concepts get Eq. 5 instead of "this concept nowhere"; said once."""
        with values_checked():  # the masks' values: checked with the maps' (_check_values)
            annotated = annotated_samples(region_masks, has_region)
        if not self.__dict__.get("_warned_empty_regions"):
            # a concept of the sample's own (heads common to every class need no region)
            common = self._tables(present.device)[1]
            unboxed = has_region & ~annotated & (present & ~common[None, :]).any(1)
            if bool(unboxed.any()):  # one sync per step, in expert mode only until said once
                self.__dict__["_warned_empty_regions"] = True
                logger.warning(
                    "expert supervision: %d sample(s) of this batch contain a concept but are "
                    "flagged has_region with an empty mask (e.g. a positive image without a "
                    "box); they are supervised as samples without a region (Eq. 5). Said once.",
                    int(unboxed.sum()),
                )
        return annotated

    def _expert_samples(
        self,
        region_masks: Tensor | None,
        has_region: Tensor | None,
        batch: int,
        device: torch.device,
        present: Tensor,
    ) -> Tensor:
        """Bool (B,): the samples whose regions supervise them (none unless expert mode)."""
        expert_samples = torch.zeros(batch, dtype=torch.bool, device=device)
        if self.supervision == "expert":
            if region_masks is None:
                raise ValueError(
                    "supervision='expert' needs region_masks (B, H0, W0); give has_region=False "
                    "for the images without regions"
                )
            if has_region is None:
                has_region = torch.ones(batch, dtype=torch.bool, device=device)
            if not isinstance(has_region, Tensor) or has_region.dtype != torch.bool:
                raise TypeError(f"has_region must be a bool tensor (B,), got {has_region!r:.80}")
            if tuple(has_region.shape) != (batch,):
                raise ValueError(f"has_region must have shape ({batch},), got {has_region.shape}")
            expert_samples = has_region.to(device)
            # a mask of another shape: expert_supervision_loss refuses it, saying what it takes
            if isinstance(region_masks, Tensor) and region_masks.shape[:1] == (batch,):
                expert_samples = self._annotated(region_masks, expert_samples, present)
        elif region_masks is not None:
            logger.debug("region_masks given but supervision=%r: ignored", self.supervision)
        return expert_samples

    def _layer_terms(
        self,
        items: list[tuple[str, LapMaps]],
        present: Tensor,
        region_masks: Tensor | None,
        expert_samples: Tensor,
        weak_pairs: Tensor | None,
        common: Tensor,
    ) -> dict[str, list[Tensor]]:
        """Each supervised layer's discrimination, discriminative and expert terms."""
        terms = {"discrimination": [], "discriminative": [], "expert": []}
        supervised_layers = items if self.supervision != "none" else []
        for _, lap in supervised_layers:
            probs = lap.concepts
            selector = None
            if self.use_discriminative:
                selector = lap.discriminative.detach()
                terms["discriminative"].append(
                    discriminative_scorer_loss(lap.discriminative, present, eps=self.eps)
                )
                if self.common_head_sets == "own":  # common heads: sets on their own maps
                    selector = torch.where(common[:, None, None], probs.detach(), selector)
            terms["discrimination"].append(
                concept_discrimination_loss(
                    probs,
                    present,
                    self.min_ar,
                    self.max_ar,
                    self.iar,
                    selector,
                    include=weak_pairs,
                    # expert mode: the unboxed positives' Eq. 5 over N_c, all positives of the
                    # head (the boxed ones are averaged over the same N_c in the expert term)
                    counted=None if weak_pairs is None else weak_pairs | present,
                    eps=self.eps,
                )
            )
            if self.supervision == "expert":
                terms["expert"].append(
                    expert_supervision_loss(
                        probs,
                        region_masks,
                        present,
                        expert_samples,
                        iar=self.iar,
                        heads=~common,
                        positive_fraction=self.expert_positive_fraction,
                        negative_pixels=self.expert_negative_pixels,
                        selector=selector,
                        positive_ranking=(
                            "selector"
                            if self.expert_positive_ranking == "discriminative"
                            else "concepts"
                        ),
                        resize=self.mask_resize,
                        eps=self.eps,
                    )
                )
        return terms

    def _check_logits(self, logits: object, batch: int) -> None:
        """``logits`` a floating tensor (B, num_classes), or (B,) / (B, 1) for a binary task,
        checked before any loss is computed."""
        num_classes = self.concept_sets.num_classes
        accepted = f"(B, {num_classes})" + (" (or (B,) / (B, 1))" if num_classes == 2 else "")
        if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
            raise TypeError(
                f"logits must be a floating tensor {accepted} of class logits, got "
                f"{getattr(logits, 'dtype', type(logits).__name__)}"
            )
        shape = tuple(logits.shape)
        binary = num_classes == 2 and shape in ((batch,), (batch, 1))
        if shape != (batch, num_classes) and not binary:
            raise ValueError(
                f"logits must be {accepted}, one row per label ({batch} labels), got {shape}"
            )

    def _cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.dim() == 2 and logits.shape[1] == self.concept_sets.num_classes:
            return F.cross_entropy(logits, labels.to(logits.device))
        return F.binary_cross_entropy_with_logits(  # (B,) or (B, 1) of a binary task
            logits.reshape(-1), labels.to(logits.device, logits.dtype)
        )

    def extra_repr(self) -> str:
        return (
            f"supervision={self.supervision!r}, min_ar={self.min_ar}, max_ar={self.max_ar}, "
            f"iar={self.iar}, use_discriminative={self.use_discriminative}, "
            f"concordance=({self.concordance_threshold}, {self.concordance_mode!r}), "
            f"expert=({self.expert_positive_fraction}, {self.expert_negative_pixels!r}, "
            f"{self.expert_positive_ranking!r}), weights={self.weights}, "
            f"layer_reduction={self.layer_reduction!r}, "
            f"common_head_sets={self.common_head_sets!r}"
        )
