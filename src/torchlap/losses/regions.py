"""Expert regions for the losses: region masks resized to a LAP layer's map, and which samples
have a region (the helpers of :func:`torchlap.losses.expert_supervision_loss`, re-exported by
:mod:`torchlap.losses.functional`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from torchlap._checks import check_choice, check_has_values, check_size_pair
from torchlap.losses._validation import REGION_VALUES, check_bool_mask, check_values

__all__ = ["MASK_RESIZE_MODES", "annotated_samples", "resize_region_masks"]

MASK_RESIZE_MODES = ("any", "area")


def resize_region_masks(region_masks: Tensor, size: tuple[int, int], mode: str = "any") -> Tensor:
    """Resize (B, H0, W0) region masks in [0, 1] to a LAP layer's input size (B, H, W).

    ``mode="any"`` (default): adaptive max pooling; a LAP pixel is inside the region when any
    image pixel of its cell is, as the pixel's features see that part of the image.
    ``mode="area"``: adaptive average pooling; the target is the fraction of the cell covered.
    Both use PyTorch's adaptive cells (start ``floor(i H0 / H)``, end ``ceil((i + 1) H0 / H)``),
    so they also work when the map is larger than the mask. ``size``: ``(H, W)``, two positive
    ints. The masks' values are checked (one device sync): a NaN, or a value outside [0, 1]
    (e.g. a 0-255 mask), raises ``ValueError``.
    """
    check_choice(mode, "mode", MASK_RESIZE_MODES)
    size = check_size_pair(size, "size")
    _check_region_masks(region_masks)
    check_values([("region_masks", region_masks, REGION_VALUES)])  # one sync
    return _resize_region_masks(region_masks, size, mode)


def _resize_region_masks(region_masks: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """:func:`resize_region_masks` without the checks (the losses', whose caller checked the
    masks with the other tensors in one sync)."""
    masks = region_masks if region_masks.dtype.is_floating_point else region_masks.float()
    pool = F.adaptive_max_pool2d if mode == "any" else F.adaptive_avg_pool2d
    return pool(masks.unsqueeze(1), tuple(size)).squeeze(1)


def _check_region_masks(
    region_masks: object, batch: int | None = None, against: str = "probs"
) -> Tensor:
    """``region_masks`` if it is a real tensor (B, H0, W0) with values (``batch``: the B of
    ``against``, None: any); its values: :func:`check_values`."""
    if not isinstance(region_masks, Tensor) or region_masks.dim() != 3:
        raise ValueError(
            "region_masks must be a tensor (B, H0, W0) at image resolution, got "
            f"{getattr(region_masks, 'shape', type(region_masks).__name__)}"
        )
    if batch is not None and region_masks.shape[0] != batch:
        raise ValueError(
            f"region_masks has batch size {region_masks.shape[0]}, {against} has {batch}"
        )
    if region_masks.shape[1] == 0 or region_masks.shape[2] == 0:
        raise ValueError(
            "region_masks must have at least one pixel per image (B, H0, W0 >= 1), got "
            f"{tuple(region_masks.shape)}"
        )
    if region_masks.is_complex():
        raise TypeError(
            "region_masks must be a real tensor (float in [0, 1], bool or 0/1 integers), got "
            f"dtype {region_masks.dtype}"
        )
    return check_has_values(region_masks, "region_masks")


def _inside_cells(
    region_masks: Tensor, size: tuple[int, int], resize: str, device: torch.device
) -> Tensor:
    """Bool (B, H*W): the map cells inside the experts' regions.

    ``resize="area"`` keeps the cells at least half covered; a region that covers no cell by
    half (smaller than half a cell, e.g. a small lesion at a coarse layer) keeps the cells it
    touches instead (the ``"any"`` rule), so that it does not vanish and leave its sample
    supervised as "no concept anywhere".
    """
    region = _resize_region_masks(region_masks.to(device), size, resize)
    touched = region > 0
    if resize == "any":
        return touched.flatten(1)
    covered = region >= 0.5
    vanished = ~covered.flatten(1).any(1)
    return torch.where(vanished[:, None, None], touched, covered).flatten(1)


def annotated_samples(region_masks: Tensor, has_region: Tensor) -> Tensor:
    """Bool (B,): the samples flagged ``has_region`` whose mask holds a region pixel (> 0).

    A sample flagged ``has_region`` with an empty mask (a known "no region", as for a negative
    image) has no region to supervise its present concepts with: the expert loss treats it as a
    sample without a region (:class:`~torchlap.losses.InjectionLoss`: Eq. 5 for it), rather
    than as "the concept nowhere in this image".

    ``region_masks``: (B, H0, W0) with values in [0, 1] (checked, one device sync: a NaN, or a
    0-255 mask, raises ``ValueError``); ``has_region``: bool (B,).
    """
    if not isinstance(has_region, Tensor) or has_region.dim() != 1:
        raise TypeError(f"has_region must be a bool tensor (B,), got {has_region!r:.80}")
    has_region = check_bool_mask(has_region, tuple(has_region.shape), "has_region", "(B,)")
    region_masks = _check_region_masks(region_masks, has_region.shape[0], "has_region")
    check_values([("region_masks", region_masks, REGION_VALUES)])  # one sync
    return _annotated_samples(region_masks, has_region)


def _annotated_samples(region_masks: Tensor, has_region: Tensor) -> Tensor:
    """:func:`annotated_samples` without the checks (the losses', whose caller checked the
    masks with the other tensors in one sync)."""
    return has_region & (region_masks.flatten(1) > 0).any(1).to(has_region.device)
