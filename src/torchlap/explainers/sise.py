"""``sise``: Semantic Input Sampling for Explanation (Sattarzadeh et al., AAAI 2021; paper 003).

Four phases:

1. block-wise layer selection: the last layer of each convolutional block, i.e. each layer whose
   output feeds a spatial down-sampling, with a convolution since the previous one (B layers for
   B blocks, Eq. 12; see :class:`~torchlap.explainers.base.FeatureProbe`);
2. feature-map selection: ``alpha_k = sum_lambda dPsi/dA_k(lambda)`` (Eq. 6), keep the maps
   with ``alpha_k > mu * beta`` where ``beta = max_k alpha_k`` (Eq. 7-8); ``mu = 0`` keeps the
   positive-gradient maps. With ``mu`` in [0, 1) the rule keeps positive-gradient maps only:
   when every ``alpha_k`` is negative, ``mu * beta >= beta`` and no map passes;
3. attribution-based input sampling: each kept map becomes a mask ``m = Omega(A_k)``
   (bilinear upsampling to the input size, then min-max normalisation to [0, 1]; constant maps
   give no mask), and the layer's visualisation map is
   ``V(lambda) = mean_m Psi(I * m) * m(lambda) / sum m`` (Eq. 10-12);
4. fusion (:func:`sise_fusion`): cascaded from the first block to the last, each step adds the
   next visualisation map and keeps only the pixels above that map's Otsu threshold. The paper
   does not say whether the maps are rescaled before the addition: by default they are added
   as Eq. 12 gives them (each integrates to its layer's mean masked score);
   ``fusion_normalization="min_max"`` rescales each to [0, 1] first.

``Psi`` is the target class's softmax probability (the sigmoid for a single-output model), used
both for the gradients of phase 2 and the scores of phase 3. Masked forwards are batched. A layer
with no kept map has an all-zero visualisation map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap._checks import check_choice, check_has_values, check_number
from torchlap._checks import check_positive_int as _check_positive_int
from torchlap.explainers.base import (
    Explainer,
    minmax_normalize,
    register,
)
from torchlap.explainers.inputs import _class_scores as class_scores  # target checked once
from torchlap.explainers.inputs import check_layer_option
from torchlap.explainers.maps import check_float_maps, score_dtype
from torchlap.explainers.perturbation import (
    check_precision,
    masked_batch,
    masked_forward_context,
    unique_masks,
)
from torchlap.layers.lap import LapBase
from torchlap.logs import track

__all__ = ["FUSION_NORMALIZATIONS", "Sise", "otsu_threshold", "sise_fusion"]

#: how :func:`sise_fusion` scales the visualisation maps before adding them (paper 003 is
#: silent): ``"none"`` (Eq. 12's maps as they are) or ``"min_max"`` (each map to [0, 1])
FUSION_NORMALIZATIONS = ("none", "min_max")


def otsu_threshold(maps: Tensor, bins: int = 256) -> Tensor:
    """Otsu's threshold (Otsu 1979) of each map ``(B, H, W)``, batched: ``(B,)``.

    A ``bins``-bin histogram over each map's ``[min, max]``; the threshold is the bin centre that
    maximises the between-class variance ``w_0 w_1 (mu_0 - mu_1)^2`` of the split after it (the
    binning and tie rule of ``skimage.filters.threshold_otsu``). A constant map's threshold is
    its value.

    ``maps``: a non-empty, finite floating tensor (checked, one device sync); ``bins``: an int
    >= 2.
    """
    check_float_maps(maps, "maps", "(B, H, W)")
    _check_positive_int(bins, "bins")
    if bins < 2:
        raise ValueError(f"bins must be an int >= 2 (a histogram to split in two), got {bins!r}")
    _check_finite_maps(maps, "otsu_threshold")
    return _otsu_threshold(maps, bins)


def _check_finite_maps(maps: Tensor, caller: str) -> None:
    """``ValueError`` for an empty map or a NaN or infinite value in ``maps`` (one sync)."""
    if maps.numel() == 0:
        raise ValueError(f"{caller} needs non-empty maps, got shape {tuple(maps.shape)}")
    check_has_values(maps, "maps")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(
            f"{caller} got NaN or infinite values in its maps; only finite maps are accepted"
        )


def _otsu_threshold(maps: Tensor, bins: int = 256) -> Tensor:
    """:func:`otsu_threshold` without the checks (:func:`sise_fusion` checked its maps)."""
    flat = maps.flatten(1).double()
    low = flat.amin(dim=1, keepdim=True)
    high = flat.amax(dim=1, keepdim=True)
    span = high - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    index = ((flat - low) / safe_span * bins).floor().clamp(0, bins - 1).long()
    hist = torch.zeros(flat.shape[0], bins, dtype=flat.dtype, device=flat.device)
    hist.scatter_add_(1, index, torch.ones_like(flat))
    edges = low + safe_span * torch.arange(bins + 1, device=flat.device, dtype=flat.dtype) / bins
    centers = (edges[:, :-1] + edges[:, 1:]) / 2
    weight_low = hist.cumsum(dim=1)
    weight_high = hist.flip(1).cumsum(dim=1).flip(1)
    mean_low = (hist * centers).cumsum(dim=1) / weight_low.clamp_min(1)
    mean_high = (hist * centers).flip(1).cumsum(dim=1).flip(1) / weight_high.clamp_min(1)
    variance = weight_low[:, :-1] * weight_high[:, 1:] * (mean_low[:, :-1] - mean_high[:, 1:]) ** 2
    best = variance.argmax(dim=1, keepdim=True)
    threshold = centers.gather(1, best)[:, 0]
    return torch.where(span[:, 0] > 0, threshold, low[:, 0]).to(maps.dtype)


def sise_fusion(maps: Tensor, normalization: str = "none") -> Tensor:
    """SISE's cascaded fusion (paper 003, "Fusion Module", Fig. 5) of ``(L, B, H, W)`` maps.

    ``F_1 = V_1``; ``F_l = (F_{l-1} + V_l) * [V_l > otsu(V_l)]`` for ``l = 2..L`` (layers from
    the first block to the last): the sum keeps the detail of the shallower maps, the binary mask
    of the deeper map removes what the deeper layer does not see. Returns ``F_L`` ``(B, H, W)``.

    ``normalization`` (one of :data:`FUSION_NORMALIZATIONS`; the paper does not say): ``"none"``
    adds the maps as given; ``"min_max"`` first rescales each ``V_l`` of each image to [0, 1]
    (a constant map becomes 0), so that every layer weighs alike in the sums. Otsu's threshold
    moves with the map, so the binary masks are the same either way.
    """
    check_choice(normalization, "normalization", FUSION_NORMALIZATIONS)
    check_float_maps(maps, "maps", "(L, B, H, W)")
    if maps.shape[0] < 1:
        raise ValueError(f"sise_fusion expects maps (L, B, H, W), got {tuple(maps.shape)}")
    _check_finite_maps(maps, "sise_fusion")  # one sync per explanation
    if normalization == "min_max":
        maps = minmax_normalize(maps)
    fused = maps[0]
    for later in maps[1:]:
        keep = later > _otsu_threshold(later)[:, None, None]
        fused = (fused + later) * keep
    return fused


def _check_mu(mu: object) -> float:
    """Eq. 7's ``mu`` in [0, 1): the paper's ``mu >= 0`` (0 keeps the positive-gradient maps),
    and below 1 since ``alpha_k > mu * beta`` with ``beta = max_k alpha_k`` keeps no map at
    ``mu >= 1`` (every visualisation map would be zero)."""
    accepted = "a number in [0, 1) (0 keeps every positive-gradient feature map; 1 keeps none)"
    value = check_number(mu, "mu", minimum=0.0, accepted=accepted)
    if value >= 1.0:
        raise ValueError(f"mu must be {accepted}, got {mu!r}")
    return value


@register("sise")
class Sise(Explainer):
    """SISE (paper 003; see the module docstring for the four phases).

    Options: ``layers`` (``None``: block-wise selection; or a non-empty list of distinct
    module names in forward order, shallow to deep, each with ``(B, C, h, w)`` outputs of more
    than one pixel; repeated names are refused when the explainer is built, the order and
    shapes on the first call's probe, before any work), ``mu`` (Eq. 7's threshold, a number
    in [0, 1), default 0: a map is kept when ``alpha_k > mu * max_k alpha_k``, so ``mu >= 1``
    would keep none), ``fusion_normalization`` (``"none"``, default: the visualisation maps are
    added as Eq. 12 gives them; ``"min_max"``: each rescaled to [0, 1] first, see
    :func:`sise_fusion`), ``mask_batch_size`` (masked images per forward, default 64),
    ``deduplicate`` (default True: kept maps of an image that give the same mask share one
    forward, see
    :func:`torchlap.explainers.perturbation.unique_masks`), ``precision`` (``"float32"``
    default; ``"bfloat16"``: the masked forwards under autocast, see
    :func:`~torchlap.explainers.perturbation.masked_forward_context`). Maps are at the input
    resolution. Cost: one forward and one backward pass, plus one forward per distinct
    kept mask (``last_stats`` reports the count).
    """

    display_name = "SISE"
    kind = "perturbation"
    comparison_rank = 8
    column_rank = 7

    def __init__(
        self,
        model: nn.Module,
        layers: list[str] | None = None,
        mu: float = 0.0,
        mask_batch_size: int = 64,
        deduplicate: bool = True,
        precision: str = "float32",
        fusion_normalization: str = "none",
    ) -> None:
        super().__init__(model)
        self.precision = check_precision(precision)
        self.fusion_normalization = check_choice(
            fusion_normalization, "fusion_normalization", FUSION_NORMALIZATIONS
        )
        if not isinstance(deduplicate, bool):
            raise TypeError(f"deduplicate must be a bool, got {deduplicate!r}")
        self.deduplicate = deduplicate
        if layers is not None and (
            isinstance(layers, str)
            or not all(isinstance(n, str) for n in layers)
            or len(layers) == 0
        ):
            raise TypeError(
                f"layers must be None or a non-empty list of module names, got {layers!r}"
            )
        self.mu = _check_mu(mu)
        self.layers = None if layers is None else list(layers)
        laps = [n for n, m in model.named_modules() if n and isinstance(m, LapBase)]
        for name in self.layers or ():
            check_layer_option(model, name)
            inside = [lap for lap in laps if name.startswith(f"{lap}.")]
            if inside:
                raise ValueError(
                    f"layers lists {name!r}, a module inside the LAP layer {inside[0]!r}: its "
                    "concept scorer is no feature layer, and SISE orders its layers by the "
                    "feature probe's forward pass, which leaves it out; give feature layers "
                    f"outside LAP layers (the LAP layer {inside[0]!r} itself is one)"
                )
        if self.layers is not None and len(set(self.layers)) < len(self.layers):
            repeated = sorted({n for n in self.layers if self.layers.count(n) > 1})
            raise ValueError(
                f"layers lists {repeated} more than once ({self.layers}); SISE visualises each "
                "layer once: give distinct module names, shallow to deep"
            )
        self.mask_batch_size = _check_positive_int(mask_batch_size, "mask_batch_size")

    def explained_layers(self) -> list[str | nn.Module | None]:
        """The ``layers`` option, when given (see :meth:`Explainer.explained_layers`)."""
        return list(self.layers or [])

    def check_layers(self, images: Tensor) -> None:
        """:meth:`Explainer.check_layers`, and the ``layers`` option in forward order."""
        super().check_layers(images)
        with self:
            self.layer_names(images[:1])

    def layer_names(self, images: Tensor) -> list[str]:
        """The layers SISE visualises for images of this size (call inside :meth:`run`).

        Given ``layers`` must each pass :meth:`Explainer.resolve_layer` and come in forward
        order (the order their outputs are computed in, shallow to deep: the fusion cascades
        from the first to the last); ``ValueError`` names the forward order otherwise.
        """
        if self.layers is not None:
            names = [self.resolve_layer(name, images) for name in self.layers]
            order = self.feature_probe(images).order
            ranks = [order.get(name, -1) for name in names]
            if ranks != sorted(ranks):
                expected = sorted(names, key=lambda name: order.get(name, -1))
                raise ValueError(
                    f"layers {names} are not in forward order; SISE fuses its visualisation "
                    f"maps from the shallowest layer to the deepest: pass {expected}"
                )
            return names
        names = self.feature_probe(images).block_layers
        if not names:
            raise ValueError(
                "found no convolutional block (no layer with a 4-D output of spatial size > 1); "
                "SISE needs a CNN taking (B, C, H, W) images, or give layers=[...]"
            )
        return [self.resolve_layer(n, images) for n in names]

    def _visualization(self, images: Tensor, target: Tensor | None) -> Tensor:
        names = self.layer_names(images)
        captures = [self.capture(name) for name in names]
        inputs = images.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = self.forward(inputs)
            target = self.resolve_target(target, logits)
            activations = [capture.get() for capture in captures]
            score = class_scores(logits, target).sum()
            gradients = torch.autograd.grad(score, activations)
        for capture in captures:
            capture.remove()
        size = images.shape[-2:]
        maps = []
        # one context for every layer: one batch-norm fold (two probe forwards) per call
        with masked_forward_context(self, images[:1], self.precision):
            for acts, grads in zip(activations, gradients, strict=True):
                acts = acts.detach()
                alpha = grads.sum(dim=(2, 3))  # Eq. 6
                beta = alpha.amax(dim=1, keepdim=True)  # Eq. 8
                flat = acts.flatten(2)
                keep = (alpha > self.mu * beta) & (flat.amax(2) > flat.amin(2))
                image_index, channel_index = keep.nonzero(as_tuple=True)
                if self.deduplicate:
                    first, inverse = unique_masks(acts[image_index, channel_index], image_index)
                else:
                    first = inverse = torch.arange(image_index.numel(), device=images.device)
                # Eq. 10-12 per distinct mask, counted as often as kept channels give it
                # a sum into a tensor of known length: bincount reads the maximum on the host
                multiplicity = inverse.new_zeros(first.numel())
                multiplicity.index_add_(0, inverse, torch.ones_like(inverse))
                dtype = score_dtype(images.dtype)
                visual = torch.zeros(images.shape[0], *size, device=images.device, dtype=dtype)
                starts = range(0, first.numel(), self.mask_batch_size)
                for start in track(starts, description="sise", unit="mask batches"):
                    chosen = first[start : start + self.mask_batch_size]
                    rows, channels = image_index[chosen], channel_index[chosen]
                    upsampled = F.interpolate(
                        acts[rows, channels].unsqueeze(1),
                        size=size,
                        mode="bilinear",
                        align_corners=False,
                    )
                    masks = minmax_normalize(upsampled)  # Omega: bilinear, then min-max
                    masked = masked_batch(images[rows] * masks, self.precision)
                    logits = self.forward(masked).to(dtype)
                    scores = class_scores(logits, target[rows])
                    masks = masks[:, 0].to(dtype)
                    weights = scores / masks.sum(dim=(1, 2))  # Eq. 11: m / sum(m)
                    weights = weights * multiplicity[start : start + chosen.numel()]
                    visual.index_add_(0, rows, weights[:, None, None] * masks)  # Eq. 10, 12
                counts = keep.sum(dim=1).clamp_min(1).to(visual.dtype)
                maps.append(visual / counts[:, None, None])
        stacked = torch.stack(maps)
        # a NaN score of a masked forward reaches every pixel of its image's maps: one check
        self.check_finite_rows(stacked.transpose(0, 1), masked=True)
        return stacked

    def visualization_maps(self, images: Tensor, target: int | Tensor | None = None) -> Tensor:
        """The per-layer visualisation maps ``(L, B, H, W)`` of phase 3 (before fusion)."""
        return self.run(images, target, self._visualization)

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        return sise_fusion(self._visualization(images, target), self.fusion_normalization)
