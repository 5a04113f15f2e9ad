"""Perturbation explainers against the libraries users know, on the same model and inputs.

``run_scorecam_against``: torchlap's Score-CAM against pytorch-grad-cam's ``ScoreCAM`` and
torchcam's ``ScoreCAM`` (test-only dependencies: ``pip install grad-cam torchcam``) on the same
model, images, target classes, layer and mask batch; images/s and the Pearson correlation of each
peer's map with torchlap's float32 map (all bilinearly resized to the input size).

How the three definitions differ (so the maps correlate, but are not equal):

- torchlap (Wang et al. 2020, as the paper's code): ``w_k`` = the target class's softmax
  probability of the masked image; mask = bilinear upsampling (``align_corners=False``), then
  min-max normalisation; constant channels are skipped (weight 0).
- pytorch-grad-cam: ``w_k`` = softmax over the channels of the masked images' target *logits*;
  upsampling with ``align_corners=True``; ``1e-8`` added to the min-max denominator; the map is
  min-max scaled and resized by OpenCV on the host (numpy).
- torchcam: ``w_k`` = softmax over the channels of (masked logit - unmasked logit); min-max
  normalisation at the layer's resolution, then upsampling.

``run_rise_vs_sise``: torchlap's RISE and SISE at the SISE paper's settings (ResNet-50, RISE with
8000 masks, "around 8000 random masks" in paper 003's ablation; SISE with mu = 0).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap.bench.common import keeps_model_flags
from torchlap.explainers.perturbation import Rise, ScoreCam
from torchlap.explainers.sise import Sise

logger = logging.getLogger(__name__)

__all__ = [
    "MAP_AGREEMENT",
    "PEERS",
    "SISE_PAPER_RISE_MASKS",
    "PeerRow",
    "format_peer_rows",
    "map_correlation",
    "run_rise_vs_sise",
    "run_scorecam_against",
]

PEERS = ("grad-cam", "torchcam")

#: RISE's mask count in paper 003's comparison ("around 8000 random masks"): ``run_rise_vs_sise``
#: and ``torchlap bench explain --rise-vs-sise`` use it unless told otherwise
SISE_PAPER_RISE_MASKS = 8000

#: the map correlation with torchlap's float32 maps at which a row counts as computing the same
#: maps (the tolerance torchlap states for reduced precision); below it the table says so
MAP_AGREEMENT = 0.99


@dataclass
class PeerRow:
    """One implementation: seconds for the batch, images/s, passes and map agreement."""

    name: str
    seconds: float
    batch: int
    forwards_per_image: float = float("nan")
    correlation: float = float("nan")

    @property
    def images_per_second(self) -> float:
        """Images explained per second (infinite for a batch timed at 0 s)."""
        return self.batch / self.seconds if self.seconds > 0 else float("inf")


def map_correlation(maps: Tensor, reference: Tensor) -> float:
    """Mean over images of the Pearson correlation of two ``(B, H, W)`` map sets (pixels)."""
    a = maps.flatten(1).double()
    b = reference.flatten(1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    corr = (a * b).sum(dim=1) / denominator.clamp_min(1e-300)
    # a constant map correlates with nothing: count it as 0 rather than nan
    return float(torch.where(denominator > 0, corr, torch.zeros_like(corr)).mean())


def _resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    maps = maps.float()
    if maps.shape[-2:] == size:
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _grad_cam_scorecam(model: nn.Module, layer: nn.Module, images, target, batch_size):
    # the peers are test-only dependencies (pip install grad-cam torchcam): imported on use
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = ScoreCAM(model=model, target_layers=[layer])
    cam.batch_size = batch_size
    try:
        # its per-image tqdm bars go to stderr: keep the benchmark's output readable
        with contextlib.redirect_stderr(io.StringIO()):
            maps = cam(
                input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in target]
            )
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(maps)


def _torchcam_scorecam(model: nn.Module, layer_name: str, images, target, batch_size):
    # a test-only dependency (pip install torchcam): imported on use
    from torchcam.methods import ScoreCAM

    with ScoreCAM(
        model, target_layer=layer_name, batch_size=batch_size, input_shape=tuple(images.shape[1:])
    ) as cam:
        with torch.no_grad():
            model(images)
        maps = cam(class_idx=[int(t) for t in target])
    return maps[0]


@keeps_model_flags
def run_scorecam_against(
    model: nn.Module,
    images: Tensor,
    peers: Sequence[str] = PEERS,
    mask_batch_size: int = 64,
    precisions: Sequence[str] = ("float32", "bfloat16"),
) -> list[PeerRow]:
    """torchlap's Score-CAM (at each precision) and each peer's on the same model and images."""

    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown --against peer(s) {unknown}; expected some of {list(PEERS)}")
    model = model.eval()
    size = (images.shape[-2], images.shape[-1])
    with torch.no_grad():
        target = model(images).argmax(dim=1)
    rows: list[PeerRow] = []
    reference = None
    layer_name = None
    for precision in precisions:
        explainer = ScoreCam(model, mask_batch_size=mask_batch_size, precision=precision)
        logger.info("timing torchlap scorecam (%s)", precision)
        maps, seconds = _timed(lambda e=explainer: e(images, target))
        layer_name = explainer.resolve_layer(None, images)
        maps = _resize(maps, size)
        if reference is None:
            reference = maps
        rows.append(
            PeerRow(
                f"torchlap scorecam ({precision})",
                seconds,
                images.shape[0],
                explainer.last_stats["forwards_per_image"],
                map_correlation(maps, reference),
            )
        )
    layer = dict(model.named_modules())[layer_name]
    for peer in peers:
        logger.info("timing %s ScoreCAM", peer)
        if peer == "grad-cam":
            maps, seconds = _timed(
                lambda: _grad_cam_scorecam(model, layer, images, target, mask_batch_size)
            )
        else:
            maps, seconds = _timed(
                lambda: _torchcam_scorecam(model, layer_name, images, target, mask_batch_size)
            )
        rows.append(
            PeerRow(
                f"{peer} ScoreCAM",
                seconds,
                images.shape[0],
                float("nan"),
                map_correlation(_resize(maps, size), reference),
            )
        )
    return rows


@keeps_model_flags
def run_rise_vs_sise(
    model: nn.Module,
    images: Tensor,
    rise_masks: int = SISE_PAPER_RISE_MASKS,
    mask_batch_size: int = 64,
    precision: str = "float32",
) -> list[PeerRow]:
    """torchlap's RISE (``rise_masks`` masks) and SISE (mu = 0) on the same model and images."""

    model = model.eval()
    with torch.no_grad():
        target = model(images).argmax(dim=1)
    rows = []
    for name, explainer in (
        ("sise", Sise(model, mask_batch_size=mask_batch_size, precision=precision)),
        (
            f"rise ({rise_masks} masks)",
            Rise(model, n_masks=rise_masks, mask_batch_size=mask_batch_size, precision=precision),
        ),
    ):
        logger.info("timing %s (%s)", name, precision)
        _, seconds = _timed(lambda e=explainer: e(images, target))
        rows.append(
            PeerRow(
                f"{name} ({precision})",
                seconds,
                images.shape[0],
                explainer.last_stats["forwards_per_image"],
            )
        )
    return rows


def format_peer_rows(rows: Sequence[PeerRow], reference: str | None = None) -> str:
    """A Markdown table; ``reference``: the row name whose time the others are divided by.
    Rows whose maps correlate below :data:`MAP_AGREEMENT` with torchlap's float32 maps are
    named in a line under the table."""
    base = next((r for r in rows if r.name == reference), rows[0])
    lines = [
        "| implementation | s / batch | images/s | speed vs " + base.name + " | forwards / image "
        "| map correlation with torchlap float32 |",
        "|---|---|---|---|---|---|",
    ]

    def shown(value: float, spec: str) -> str:
        return "-" if value != value else format(value, spec)  # nan: not measured

    for r in rows:
        lines.append(
            f"| {r.name} | {r.seconds:.2f} | {r.images_per_second:.3f} "
            f"| {base.seconds / r.seconds:.2f}x | {shown(r.forwards_per_image, '.0f')} "
            f"| {shown(r.correlation, '.3f')} |"
        )
    apart = [r for r in rows if r.correlation < MAP_AGREEMENT]  # (nan: not compared)
    if apart:
        names = ", ".join(f"{r.name} ({r.correlation:.3f})" for r in apart)
        lines += [
            "",
            f"Maps differ: {names} correlate below {MAP_AGREEMENT} with torchlap's float32 maps, "
            "so their speed is not compared at equal maps.",
        ]
    return "\n".join(lines)
