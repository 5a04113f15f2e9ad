"""``bla`` and ``antehoc``: the maps LAP's peers build into their own forward pass.

- ``bla`` (paper 002, sections 3 and 3.2): the explanation of a BLA (or BLA-T, BLA-PH, L2X-F)
  module over the positions of the last feature map: by default the discrete test-time
  explanation ``delta`` (0/1; L2X-F: its top-k set), which the paper calls the explanation
  ("delta = E(f) acts as an explanation for the prediction") and visualizes ("we visualize
  delta using a colormap, which is upscaled"); ``kind="soft"`` gives the soft ``q = softmax(
  theta * l)`` that approximates it in training (the map of the paper's LIME check, 4.3,
  which :mod:`torchlap.evaluate.bla_comparison` reads itself). One forward pass, no gradient;
  the map is at the feature-map resolution and the base class upsamples it to the input
  (bilinear, like every CAM method).
- ``antehoc`` (paper 004, section 2, Eq. 1): the interpretation map
  ``I_map = sum_n WM_n * SAM_n`` of an :class:`~torchlap.models.antehoc.AnteHocModel`, already
  at the input resolution; or the energy map built from it.

Both maps are class-agnostic (they do not depend on ``target``): the modules explain what the
network looked at, not why it chose one class. ``target`` is still checked against the logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torchlap.explainers.base import Explainer, register, upsample
from torchlap.explainers.maps import score_dtype
from torchlap.metrics import binarize_map
from torchlap.metrics._common import check_binarize_options
from torchlap.models.antehoc import AnteHocModel
from torchlap.models.bla import bla_modules
from torchlap.models.bla_pools import _one_module

__all__ = ["AnteHocExplainer", "BlaExplainer", "find_antehoc"]

BLA_KINDS = ("soft", "hard", "logits", "weights")
ANTEHOC_KINDS = ("map", "energy", "binarized")


@register("bla")
class BlaExplainer(Explainer):
    """The BLA module's explanation of the last pass (paper 002; one forward pass).

    Options:
        name: the BLA/L2X-F module's name when the model has several (default: its only one).
        kind: which :class:`~torchlap.models.bla.BlaMaps` field: ``"hard"`` (default: the
            discrete explanation ``delta`` as 0/1, the paper's explanation and visualization,
            sections 3 and 3.2; L2X-F: the ``k`` positions of largest logit), ``"soft"``
            (``q``, summing to 1 over positions: the map of the paper's LIME comparison, 4.3),
            ``"logits"`` (the bounded logits ``l``) or ``"weights"`` (the pooling weights of
            this pass; in eval mode the hard path's). A 0/1 map ties most pixels: the
            ranking metrics count tied pixels by their expectation (top-K, pointing game) or
            break ties at random (keep-k%, Drop%/Increase%), so ties never follow pixel order.
            From the evaluate harness: ``--method-options '{"bla": {"kind": "soft"}}'``.

    Raises ``ValueError`` for a model without a BLA/L2X-F module.
    """

    display_name = "BLA"
    kind = "own map"
    column_rank = 9
    not_applicable = "the model has no BLA/L2X-F module"

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        """A model with a BLA/L2X-F module."""
        return bool(bla_modules(model))

    def __init__(self, model: nn.Module, name: str | None = None, kind: str = "hard") -> None:
        super().__init__(model)
        if not bla_modules(model):
            raise ValueError(
                "the 'bla' explainer needs a model with a BLA/L2X-F module; put one in with "
                "torchlap.models.blaify(model) (or train with --model bla), or use a post-hoc "
                "method (e.g. method='gradcam')"
            )
        self.module_name, self.module = _one_module(model, name)  # name= chooses among several
        if kind not in BLA_KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {BLA_KINDS}")
        self.map_kind = kind  # the option (the class fact `kind` is "own map")

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        self.module.clear_maps()
        with torch.no_grad():
            logits = self.forward(images)
        self.resolve_target(target, logits)
        maps = self.module.maps
        if maps is None:
            raise ValueError(f"the BLA module {self.module_name!r} did not run in the forward pass")
        chosen = getattr(maps, self.map_kind)
        self.module.clear_maps()
        return chosen[:, 0].float()


def find_antehoc(model: nn.Module) -> AnteHocModel:
    """The :class:`AnteHocModel` ``model`` is or holds (e.g. inside a normalization wrapper)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    found = [m for m in model.modules() if isinstance(m, AnteHocModel)]
    if not found:
        raise ValueError(
            f"the 'antehoc' explainer needs an AnteHocModel (paper 004), got a "
            f"{type(model).__name__} holding none; wrap the network with "
            "torchlap.models.antehoc.AnteHocModel (or train with --model antehoc)"
        )
    if len(found) > 1:
        raise ValueError(f"the model holds {len(found)} AnteHocModels; explain one of them")
    return found[0]


@register("antehoc")
class AnteHocExplainer(Explainer):
    """The ante-hoc interpretation map (paper 004, Eq. 1), at the input resolution.

    The model is an :class:`AnteHocModel` or holds one (a trained run's
    ``NormalizedClassifier(AnteHocModel(net))``); one forward pass of the whole model, the map
    read from the ante-hoc module.

    Options:
        kind: ``"map"`` (default): ``I_map`` (B, H, W), the weighted sum of the soft attention
            maps; ``"energy"``: the energy map ``image * I_map`` summed over the image channels
            (the image is the explainer's input, e.g. in [0, 1] for a trained run, so a dark
            pixel gets little energy whatever the map says); ``"binarized"``: the same sum for
            the binarized energy map ``image * 1[I_norm >= threshold]`` (Table 2 of the paper;
            the mask is :func:`torchlap.metrics.binarize_map`, as in the Drop/Inc/Win metric
            and :meth:`AnteHocModel.interpretation_mask`).
        threshold: the binarization threshold on the per-image normalised map, a number in
            [0, 1] (0.8).
        normalization: how ``I_norm`` is scaled: ``"min_max"`` (default), ``"max"`` or
            ``"none"`` (see :func:`torchlap.metrics.binarize_map`).

    Raises ``ValueError`` for a model holding no AnteHocModel.
    """

    display_name = "Ante-hoc"
    kind = "own map"
    column_rank = 10
    not_applicable = "the model is not an ante-hoc model (AnteHocModel)"

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        """A model that is or holds an :class:`AnteHocModel`."""
        return any(isinstance(m, AnteHocModel) for m in model.modules())

    def __init__(
        self,
        model: nn.Module,
        kind: str = "map",
        threshold: float = 0.8,
        normalization: str = "min_max",
    ) -> None:
        super().__init__(model)
        self.antehoc = find_antehoc(model)
        if kind not in ANTEHOC_KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {ANTEHOC_KINDS}")
        self.threshold = check_binarize_options(threshold, normalization)
        self.normalization = normalization
        self.map_kind = kind  # the option (the class fact `kind` is "own map")

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        self.antehoc.close()
        with torch.no_grad():
            logits = self.forward(images)
        self.resolve_target(target, logits)
        maps = self.antehoc.maps
        if maps is None:
            raise ValueError("the AnteHocModel did not run in the model's forward pass")
        self.antehoc.close()
        dtype = score_dtype(images.dtype)  # float32 for half precision, float64 kept
        interpretation = maps.interpretation.detach()[:, 0].to(dtype)  # (B, h, w)
        # the ante-hoc model may see a resized input; the map is at its input's resolution
        interpretation = upsample(interpretation, images.shape[-2:])
        if self.map_kind == "map":
            return interpretation
        if self.map_kind == "binarized":
            region = binarize_map(interpretation, self.threshold, normalization=self.normalization)
            interpretation = region.to(dtype)
        return (images.to(dtype) * interpretation.unsqueeze(1)).sum(dim=1)
