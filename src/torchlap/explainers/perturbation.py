"""Perturbation explainers: ``scorecam`` (Wang et al. 2020) and ``rise`` (Petsiuk et al. 2018).

Both score masked copies of the images. Masked forwards run in batches of ``mask_batch_size``
images on the images' device; masks are built batch by batch on that device, never all at once.
The score of a masked image is the target class's softmax probability (the sigmoid for a
single-output model), as in both papers. The masked forwards run in ``torch.inference_mode``,
with the model's own in-place flags and its eval batch norms folded into their convolutions
(float rounding only); ``precision="bfloat16"`` (or ``"float16"``) runs them under
``torch.autocast`` (see :func:`masked_forward_context`), the scores are then taken in float32.
Scores and maps are summed in the images' dtype, float32 at least
(:func:`~torchlap.explainers.maps.score_dtype`): a float64 model's maps keep float64.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap._checks import check_device, check_number, check_seed
from torchlap._checks import check_positive_int as _check_positive_int
from torchlap.explainers.base import (
    Explainer,
    minmax_normalize,
    register,
)
from torchlap.explainers.inputs import _class_scores as class_scores  # target checked once
from torchlap.explainers.inputs import check_layer_option
from torchlap.explainers.maps import score_dtype
from torchlap.logs import track
from torchlap.models.folding import folded_batch_norms

__all__ = [
    "PRECISIONS",
    "Rise",
    "RiseMasks",
    "ScoreCam",
    "masked_batch",
    "masked_forward_context",
    "masked_scores",
    "rise_masks",
    "unique_masks",
]

PRECISIONS = ("float32", "bfloat16", "float16")


def check_precision(precision: object) -> str:
    """``precision`` checked against :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return str(precision)


def masked_batch(inputs: Tensor, precision: str) -> Tensor:
    """The masked images as the forward takes them: channels-last on the CPU, and in reduced
    precision on any device.

    oneDNN's convolutions run fastest on channels-last inputs. Measured in float32 on a 2-core
    AVX2 CPU (no AVX-512), 64 images at 112 px: a ResNet18 forward 0.24 s against 0.33 s, a
    ResNet-50 0.58 s against 1.02 s, a LAP-ResNet18 1.2-1.3x faster at 112-224 px; in bfloat16 a
    LAP-ResNet18 1.5x faster at 224 px. The maps are those of the default layout up to float
    rounding (logits within 2e-5). A CUDA float32 forward keeps the default layout (not
    measured here).
    """
    if inputs.dim() == 4 and (precision != "float32" or inputs.device.type == "cpu"):
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


@contextlib.contextmanager
def masked_forward_context(explainer: Explainer, probe: Tensor, precision: str) -> Iterator[None]:
    """The context of the masked forwards: inference mode, the model's own in-place flags,
    batch norms folded into their convolutions, and autocast to ``precision``.

    The in-place flags (:meth:`~torchlap.explainers.base.Explainer.in_place_forwards`) and
    the folding (:func:`~torchlap.models.folding.folded_batch_norms`, checked on ``probe``, one
    of the images) change float rounding only: measured on a LAP-ResNet18, 64 images at 112
    px, channels-last float32, 4.6 ms per masked image against 6.2 without either; in
    bfloat16 2.6 against 3.0. ``"float32"`` is exact (the maps of the papers) up to that
    rounding; ``"bfloat16"`` runs the model's convolutions and matrix products in bfloat16
    (3.6x faster for a ResNet18 forward on a CPU with AVX512-BF16, measured), at the cost of
    about 2-3 significant digits in each masked image's class probability (the maps'
    correlation with float32 maps is reported by ``torchlap bench explain``). ``"float16"`` is
    for GPUs. Nothing changes before the ``with`` statement enters it (a KeyboardInterrupt
    between the call and the ``with`` leaves the model as it is), and everything is undone when
    the block ends, also on error.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        stack.enter_context(explainer.in_place_forwards())
        stack.enter_context(folded_batch_norms(explainer.model, probe))
        if precision != "float32":
            dtype = torch.bfloat16 if precision == "bfloat16" else torch.float16
            stack.enter_context(torch.autocast(probe.device.type, dtype=dtype))
        yield


def unique_masks(maps: Tensor, group: Tensor) -> tuple[Tensor, Tensor]:
    """Which (image, activation map) pairs give the same Score-CAM/SISE mask.

    ``maps`` ``(N, h, w)`` non-constant activation maps, ``group`` ``(N,)`` the image each
    belongs to. A mask is the map upsampled (bilinear, linear) and min-max normalised, so two
    maps of one image whose min-max normalised low-resolution values are equal give the same
    mask (up to float rounding) and the same score: one masked forward serves both. It is
    exact grouping, not an approximation; the saving depends on how sparse the layer is (at
    2x2 every channel with a single positive pixel gives the same one-hot mask): 2-7% of the
    forwards on the demo's ResNet18s at 64x64. Returns ``(first, inverse)``: ``first``
    ``(U,)`` the index of one representative per distinct mask, ``inverse`` ``(N,)`` the mask
    of each pair.

    Written here because no explainer library shares masked forwards between channels.
    """
    flat = maps.flatten(1).to(score_dtype(maps.dtype))
    low = flat.amin(dim=1, keepdim=True)
    normed = (flat - low) / (flat.amax(dim=1, keepdim=True) - low)
    key = torch.cat([group[:, None].to(normed.dtype), normed], dim=1)
    # the distinct keys' count is their tensor's length: no read of ``inverse`` on the host
    distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
    n_unique = distinct.shape[0]
    index = torch.arange(flat.shape[0], device=maps.device)
    first = torch.full((n_unique,), flat.shape[0], dtype=torch.long, device=maps.device)
    first.scatter_reduce_(0, inverse, index, reduce="amin")
    return first, inverse


def masked_scores(
    explainer: Explainer,
    n_items: int,
    make_inputs: Callable[[Tensor], Tensor],
    target: Tensor,
    batch_size: int,
    probe: Tensor,
    precision: str = "float32",
) -> Tensor:
    """Scores ``(n_items,)``: item ``i`` is the input ``make_inputs(idx)[j]`` (``idx[j] = i``)
    scored for class ``target[i]``; forwards run ``batch_size`` items at a time, without grad
    (see :func:`masked_forward_context` for ``probe`` and ``precision``)."""
    device, dtype = probe.device, score_dtype(probe.dtype)
    scores = torch.empty(n_items, device=device, dtype=dtype)
    with masked_forward_context(explainer, probe, precision):
        starts = range(0, n_items, batch_size)
        for start in track(starts, description=explainer.name, unit="mask batches"):
            index = torch.arange(start, min(start + batch_size, n_items), device=device)
            logits = explainer.forward(masked_batch(make_inputs(index), precision)).to(dtype)
            scores[start : start + index.numel()] = class_scores(logits, target[index])
    return scores


@register("scorecam")
class ScoreCam(Explainer):
    """Score-CAM (Wang et al., CVPRW 2020): ``ReLU(sum_k w_k A_k)``.

    Each activation map ``A_k`` of the layer is upsampled (bilinear) to the input size and
    min-max normalised to a mask ``H_k``; ``w_k`` is the target class's softmax probability of
    the masked image ``X * H_k``. Constant maps (no mask) get weight 0. Options: ``layer``
    (``None``: the last feature layer before global pooling, or a module name),
    ``mask_batch_size`` (masked images per forward, default 64), ``precision`` (``"float32"``
    default; ``"bfloat16"``: masked forwards under autocast, see :func:`masked_forward_context`).
    Raw maps are at the layer's resolution. Cost: one forward plus one per distinct mask of an
    image: constant channels are skipped and channels giving the same mask share one forward
    (:func:`unique_masks`; ``deduplicate=False`` scores every channel separately).
    """

    display_name = "Score-CAM"
    kind = "perturbation"
    comparison_rank = 6
    column_rank = 5

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        mask_batch_size: int = 64,
        deduplicate: bool = True,
        precision: str = "float32",
    ) -> None:
        super().__init__(model)
        self.precision = check_precision(precision)
        if not isinstance(deduplicate, bool):
            raise TypeError(f"deduplicate must be a bool, got {deduplicate!r}")
        self.layer = check_layer_option(model, layer)
        self.mask_batch_size = _check_positive_int(mask_batch_size, "mask_batch_size")
        self.deduplicate = deduplicate

    def explained_layers(self) -> list[str | nn.Module | None]:
        """The ``layer`` option (see :meth:`Explainer.explained_layers`)."""
        return [self.layer]

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        name = self.resolve_layer(self.layer, images)
        capture = self.capture(name)
        with torch.no_grad():
            logits = self.forward(images)
            activations = capture.get()
        capture.remove()  # the masked forwards need no capture
        target = self.resolve_target(target, logits)
        batch, channels = activations.shape[:2]
        flat = activations.flatten(2)
        valid = flat.amax(dim=2) > flat.amin(dim=2)
        image_index, channel_index = valid.nonzero(as_tuple=True)
        size = images.shape[-2:]
        if self.deduplicate:
            first, inverse = unique_masks(activations[image_index, channel_index], image_index)
        else:
            first = inverse = torch.arange(image_index.numel(), device=images.device)
        scored_image, scored_channel = image_index[first], channel_index[first]

        def make_inputs(index: Tensor) -> Tensor:
            maps = activations[scored_image[index], scored_channel[index]]
            upsampled = F.interpolate(
                maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False
            )
            masks = minmax_normalize(upsampled)
            return images[scored_image[index]] * masks

        scores = masked_scores(
            self, first.numel(), make_inputs, target[scored_image], self.mask_batch_size,
            images[:1], self.precision,
        )[inverse]  # fmt: skip
        self.check_finite_rows(scores, image_index, masked=True)  # one check, not per batch
        weights = torch.zeros(batch, channels, device=images.device, dtype=activations.dtype)
        weights[image_index, channel_index] = scores.to(activations.dtype)
        return torch.relu((weights[:, :, None, None] * activations).sum(dim=1))


def _check_rise_grid(grid_size: object) -> int:
    """RISE's ``grid_size``: an int >= 2 (a 1x1 grid upsamples to a constant mask, all kept or
    all removed, so every map would be flat)."""
    _check_positive_int(grid_size, "grid_size")
    if grid_size < 2:  # type: ignore[operator]
        raise ValueError(
            f"grid_size must be an int >= 2, got {grid_size!r}: a 1x1 grid makes every RISE mask "
            "constant (the whole image kept or removed), so every map would be flat; the RISE "
            "paper uses 7 or 8"
        )
    return grid_size  # type: ignore[return-value]


#: the most grid cells RISE draws up front (``n_masks * grid_size**2`` floats: 1 GiB); the
#: RISE's default mask count, the RISE paper's (``Rise(n_masks=...)``)
RISE_MASKS = 4000

#: RISE paper's 4000 or 8000 masks of 7x7 or 8x8 cells take 2 MB
MAX_RISE_CELLS = 2**28


def _check_rise_cells(n_masks: int, grid_size: int) -> None:
    """``ValueError`` when the masks' grids (drawn up front) would not fit in memory (a grid
    of more cells than that alone is larger than any image: refused as such, with the image)."""
    if grid_size * grid_size <= MAX_RISE_CELLS < n_masks * grid_size * grid_size:
        raise ValueError(
            f"n_masks {n_masks} of {grid_size}x{grid_size} grids draw "
            f"{n_masks * grid_size * grid_size} grid cells up front, above the {MAX_RISE_CELLS} "
            f"(1 GiB) RISE takes; pass n_masks <= {MAX_RISE_CELLS // (grid_size * grid_size)} at "
            "this grid_size (the RISE paper uses 4000 to 8000 masks)"
        )


def _check_rise_p(p: object) -> float:
    """RISE's ``p``: a number in (0, 1) (at 1 every cell of every mask is kept: a flat map)."""
    value = check_number(
        p, "p", minimum=0.0, maximum=1.0, strict_minimum=True,
        accepted="a number in (0, 1) (the probability that a grid cell is kept)",
    )  # fmt: skip
    if value == 1.0:
        raise ValueError(
            "p must be a number in (0, 1) (the probability that a grid cell is kept), got "
            f"{p!r}: at 1 every mask keeps the whole image, so every map would be flat"
        )
    return value


class RiseMasks:
    """RISE's random masks (Petsiuk et al. 2018, section 3.2), generated lazily by index.

    A binary ``grid_size x grid_size`` grid (each cell 1 with probability ``p``) is upsampled
    bilinearly to ``(grid_size + 1) * cell`` (``cell = ceil(H / grid_size)``) and cropped to
    ``H x W`` at a random shift in ``[0, cell)``. The grids and shifts are drawn up front from a
    ``torch.Generator`` seeded with ``seed`` (on the CPU, so that a seed gives the same masks on
    every device); :meth:`__call__` builds the requested masks on ``device``.

    Accepted: ``n_masks`` a positive int, ``grid_size`` an int from 2 to the image's smaller
    side, ``size`` two positive ints, ``p`` a number in (0, 1) (a 1x1 grid or ``p = 1`` makes
    constant masks, hence flat maps), ``seed`` an int in [0, 2**32 - 1] (never a float or bool
    truncated by ``int()``).
    """

    def __init__(
        self,
        n_masks: int,
        size: tuple[int, int],
        grid_size: int = 8,
        p: float = 0.5,
        seed: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        _check_positive_int(n_masks, "n_masks")
        _check_rise_grid(grid_size)
        self.p = _check_rise_p(p)
        check_seed(seed)
        if (
            isinstance(size, (str, bytes))
            or not isinstance(size, (tuple, list, torch.Size))
            or len(size) != 2
        ):
            raise TypeError(f"size must be (height, width), two positive ints, got {size!r}")
        self.n_masks = n_masks
        self.size = (
            _check_positive_int(size[0], "size[0] (height)"),
            _check_positive_int(size[1], "size[1] (width)"),
        )
        if grid_size > min(self.size):
            raise ValueError(
                f"grid_size {grid_size} is larger than the {self.size[0]}x{self.size[1]} "
                "images: RISE's grid cells must hold at least one pixel (grid_size <= "
                f"{min(self.size)} here; the RISE paper uses 7 or 8 at 224 px)"
            )
        _check_rise_cells(n_masks, grid_size)
        self.grid_size = grid_size
        self.cell = (math.ceil(self.size[0] / grid_size), math.ceil(self.size[1] / grid_size))
        self.device = check_device(device) if device is not None else torch.device("cpu")
        # drawn on the host (the same masks on every device), whatever torch's default device
        generator = torch.Generator().manual_seed(seed)
        grids = torch.rand(n_masks, grid_size, grid_size, generator=generator, device="cpu")
        shift_y = torch.randint(0, self.cell[0], (n_masks,), generator=generator, device="cpu")
        shift_x = torch.randint(0, self.cell[1], (n_masks,), generator=generator, device="cpu")
        self.grids = (grids < self.p).float().to(self.device)
        self.shift_y = shift_y.to(self.device)
        self.shift_x = shift_x.to(self.device)

    def __len__(self) -> int:
        return self.n_masks

    def __call__(self, index: Tensor) -> Tensor:
        """Masks ``(len(index), H, W)`` in [0, 1] for the mask indices ``index``."""
        index = index.to(self.device)
        up = (
            (self.grid_size + 1) * self.cell[0],
            (self.grid_size + 1) * self.cell[1],
        )
        upsampled = F.interpolate(
            self.grids[index].unsqueeze(1), size=up, mode="bilinear", align_corners=False
        )[:, 0]
        rows = self.shift_y[index, None] + torch.arange(self.size[0], device=self.device)
        cols = self.shift_x[index, None] + torch.arange(self.size[1], device=self.device)
        which = torch.arange(index.numel(), device=self.device)
        return upsampled[which[:, None, None], rows[:, :, None], cols[:, None, :]]


def rise_masks(
    n_masks: int,
    size: tuple[int, int],
    grid_size: int = 8,
    p: float = 0.5,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """All ``n_masks`` RISE masks ``(n_masks, H, W)`` at once (see :class:`RiseMasks`)."""
    masks = RiseMasks(n_masks, size, grid_size, p, seed, device)
    return masks(torch.arange(n_masks, device=masks.device))


@register("rise")
class Rise(Explainer):
    """RISE (Petsiuk et al., BMVC 2018): ``S(x) = 1 / (N p) sum_i P(c | I * M_i) M_i``.

    Options: ``n_masks`` (N, default 4000), ``grid_size`` (s, default 8, from 2 to the image's
    smaller side), ``p`` (a number in (0, 1), default 0.5), ``seed`` (an int in [0, 2**32 - 1],
    default 0; the same seed gives the same masks; ``torchlap evaluate``/``compare`` give it
    their ``--seed`` unless ``--method-options`` sets it), ``mask_batch_size`` (masked images per
    forward, default 64), ``precision`` (as for :class:`ScoreCam`). The same masks explain
    every image of the batch. Cost: ``N`` forwards per image (plus one when ``target`` is
    ``None``).
    """

    display_name = "RISE"
    kind = "perturbation"
    comparison_rank = 7
    column_rank = 6
    run_facts = ("seed",)  # evaluate's --seed, unless --method-options gives one

    def __init__(
        self,
        model: nn.Module,
        n_masks: int = RISE_MASKS,
        grid_size: int = 8,
        p: float = 0.5,
        seed: int = 0,
        mask_batch_size: int = 64,
        precision: str = "float32",
    ) -> None:
        super().__init__(model)
        self.precision = check_precision(precision)
        self.n_masks = _check_positive_int(n_masks, "n_masks")
        self.grid_size = _check_rise_grid(grid_size)
        _check_rise_cells(self.n_masks, self.grid_size)
        self.p = _check_rise_p(p)
        self.seed = check_seed(seed)
        self.mask_batch_size = _check_positive_int(mask_batch_size, "mask_batch_size")

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        target = self.predict_target(images, target)
        batch = images.shape[0]
        size = (images.shape[-2], images.shape[-1])
        masks = RiseMasks(self.n_masks, size, self.grid_size, self.p, self.seed, images.device)
        dtype = score_dtype(images.dtype)
        saliency = torch.zeros(batch, *size, device=images.device, dtype=dtype)
        # one step = up to mask_batch_size (image, mask) pairs: masks_per_step masks for
        # images_per_step images
        masks_per_step = max(1, self.mask_batch_size // batch)
        images_per_step = min(batch, self.mask_batch_size)
        with masked_forward_context(self, images[:1], self.precision):
            mask_starts = range(0, self.n_masks, masks_per_step)
            for mask_start in track(mask_starts, description="rise", unit="mask batches"):
                mask_end = min(mask_start + masks_per_step, self.n_masks)
                mask_index = torch.arange(mask_start, mask_end, device=images.device)
                step_masks = masks(mask_index).to(images.dtype)  # (m, H, W)
                for image_start in range(0, batch, images_per_step):
                    chunk = images[image_start : image_start + images_per_step]
                    chunk_target = target[image_start : image_start + images_per_step]
                    masked = chunk[:, None] * step_masks[None, :, None]  # (b, m, C, H, W)
                    masked = masked_batch(masked.flatten(0, 1), self.precision)
                    logits = self.forward(masked).to(dtype)
                    scores = class_scores(
                        logits, chunk_target.repeat_interleave(step_masks.shape[0])
                    ).view(chunk.shape[0], step_masks.shape[0])
                    saliency[image_start : image_start + chunk.shape[0]] += torch.einsum(
                        "bm,mhw->bhw", scores, step_masks.to(dtype)
                    )
        # a NaN score of a masked forward reaches every pixel of its image's map: one check
        self.check_finite_rows(saliency, masked=True)
        return saliency / (self.n_masks * self.p)
