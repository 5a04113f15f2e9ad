"""Knowledge-injection losses of LAP (paper 000, section III.B).

- :func:`concept_discrimination_loss` (Eq. 5) with the discriminative scoring module's
  :func:`discriminative_scorer_loss`;
- :func:`expert_supervision_loss` (BB-LAP, Appendix A: Eq. 5 with the experts' boxes or masks
  choosing the positive pixel sets);
- :func:`concordance_loss` (Eq. 6) between consecutive LAP layers;
- :class:`InjectionLoss`, all of them over a model's LAP layers, with :class:`ConceptSets`
  saying which concepts each class contains.
"""

from torchlap.losses.concepts import ConceptSets
from torchlap.losses.functional import (
    EXPERT_POSITIVE_FRACTION,
    LOG_EPS,
    annotated_samples,
    concept_discrimination_loss,
    concordance_loss,
    discriminative_scorer_loss,
    expert_supervision_loss,
    ratio_count,
    resize_region_masks,
    suggest_ratios,
)
from torchlap.losses.injection import (
    DEFAULT_WEIGHTS,
    InjectionLoss,
    default_weights,
    enable_discriminative_scorers,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "EXPERT_POSITIVE_FRACTION",
    "LOG_EPS",
    "ConceptSets",
    "InjectionLoss",
    "annotated_samples",
    "concept_discrimination_loss",
    "concordance_loss",
    "default_weights",
    "discriminative_scorer_loss",
    "enable_discriminative_scorers",
    "expert_supervision_loss",
    "ratio_count",
    "resize_region_masks",
    "suggest_ratios",
]
