"""``torchlap demo`` / ``make demo``: the main job on the built-in ``lesions`` benchmark.

Trains a vanilla ResNet18, a weakly supervised LAP-ResNet18 (Eq. 5 + Eq. 6) and an
expert-supervised LAP-ResNet18 (boxes), evaluates all three with every explainer, and writes one
comparison report. Sized to finish in under 15 minutes on a 2-core CPU; ``scale`` grows or
shrinks the data and the number of evaluated images together.

The ``peers`` suite adds the self-explaining peers on the same backbone, data and schedule:
BLA, BLA-T, L2X-F (paper 002, trained end to end), BLA-PH (paper 002's post-hoc setup: the
trained vanilla run frozen, only the BLA module trained) and the ante-hoc weight network
(paper 004), evaluated with their own maps and the gradient explainers.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from torchlap.runs import WEIGHTS_FILE

logger = logging.getLogger(__name__)

__all__ = ["SUITES", "DemoSettings", "run_demo"]


@dataclass
class DemoSettings:
    """What the demo trains and evaluates (defaults: the numbers the README quotes).

    The evaluation is sized for a 2-core CPU: the perturbation explainers (Score-CAM, SISE:
    one forward per feature map, ~500 per image on ResNet18; RISE: one per mask) dominate, so
    the demo explains 32 test images, 16 validation images (for the thresholds, fitted on all
    of them as paper 000 does: 65 000 pixels at 64 px, for a one-dimensional threshold), and 2
    images at 3 noise levels for stability, with 200 RISE masks and SISE at mu = 0.3.
    ``torchlap compare`` with its defaults evaluates at full size.
    """

    image_size: int = 64
    n_images: int = 1000
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    eval_images: int = 32
    val_images: int = 16
    stability_images: int = 2
    stability_fractions: tuple[float, ...] = (0.1, 0.3, 0.5)
    rise_masks: int = 200
    sise_mu: float = 0.3
    seed: int = 0
    arch: str = "resnet18"
    data: str = "lesions"
    select_metric: str = "cross_entropy"

    def scaled(self, scale: float) -> DemoSettings:
        """The same demo with data and evaluation sizes multiplied by ``scale``."""
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        return DemoSettings(
            image_size=self.image_size,
            n_images=max(60, round(self.n_images * scale)),
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            eval_images=max(8, round(self.eval_images * scale)),
            val_images=max(8, round(self.val_images * scale)),
            stability_images=max(1, round(self.stability_images * min(scale, 1.0))),
            stability_fractions=self.stability_fractions,
            rise_masks=max(50, round(self.rise_masks * min(scale, 1.0))),
            sise_mu=self.sise_mu,
            seed=self.seed,
            arch=self.arch,
            data=self.data,
            select_metric=self.select_metric,
        )


_MAIN = (
    ("vanilla", {"lap": "none", "supervision": "none"}),
    ("ws-lap", {"lap": "resnet18", "supervision": "weak"}),
    ("bb-lap", {"lap": "resnet18", "supervision": "expert"}),
)
_PEERS = tuple(
    (name, {"lap": "none", "supervision": "none", "model": name})
    for name in ("bla", "bla-t", "bla-ph", "l2x-f", "antehoc")
)
#: run name -> TrainConfig fields of each suite; "peers" = the main runs plus every peer
SUITES = {"main": _MAIN, "peers": _MAIN + _PEERS}
#: explainers of each suite (None: every method); the peer suite skips the perturbation
#: explainers (RISE, Score-CAM, SISE), whose cost the main suite already measures
SUITE_METHODS = {
    "main": None,
    "peers": (
        "lap", "bla", "antehoc", "gradcam", "guided_gradcam", "guided_backprop", "deeplift",
        "relevance_cam",
    ),
}  # fmt: skip


def run_demo(
    out: str | os.PathLike[str],
    settings: DemoSettings | None = None,
    methods: tuple[str, ...] | None = None,
    overwrite: bool = False,
    suite: str = "main",
) -> Path:
    """Train the suite's runs into ``out/runs``, compare them into ``out``; return report.html.

    ``suite``: ``"main"`` (vanilla, WS-LAP, BB-LAP) or ``"peers"`` (those plus BLA, BLA-T,
    BLA-PH, L2X-F and the ante-hoc network). A finished run is reused, so an interrupted demo
    resumes.
    """
    from torchlap.evaluate import DEFAULT_METHODS, EvaluateOptions, compare_runs
    from torchlap.train import TrainConfig, fit

    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected one of {', '.join(SUITES)}")
    settings = settings or DemoSettings()
    out = Path(out)
    run_dirs = []
    for name, model_options in SUITES[suite]:
        run_dir = out / "runs" / name
        lap = model_options["lap"] if settings.arch == "resnet18" else "auto"
        if model_options["lap"] == "none":
            lap = "none"
        model = model_options.get("model", "lap")
        config = TrainConfig(
            data=settings.data,
            out=str(run_dir),
            arch=settings.arch,
            model=model,
            # BLA-PH explains the trained vanilla network (trained first, frozen)
            pretrained=str(out / "runs" / "vanilla") if model == "bla-ph" else None,
            lap=lap,
            supervision=model_options["supervision"],
            epochs=settings.epochs,
            lr=settings.lr,
            image_size=settings.image_size,
            batch_size=settings.batch_size,
            n_images=settings.n_images,
            seed=settings.seed,
            # the demo's validation split holds ~100 images: balanced accuracy moves by whole
            # images between epochs, the validation cross-entropy ranks epochs smoothly
            select_metric=settings.select_metric,
            overwrite=overwrite,
        )
        if (run_dir / WEIGHTS_FILE).is_file() and not overwrite:
            logger.info("%s: reusing the finished run in %s", name, run_dir)
        else:
            started = time.perf_counter()
            fit(config)
            logger.info("%s: trained in %.0f s", name, time.perf_counter() - started)
        run_dirs.append(run_dir)
    options = EvaluateOptions(
        methods=tuple(methods or SUITE_METHODS[suite] or DEFAULT_METHODS),
        max_images=settings.eval_images,
        max_val_images=settings.val_images,
        stability_images=settings.stability_images,
        stability_fractions=settings.stability_fractions,
        # SISE's mu = 0.3 keeps the feature maps with larger gradients only: the SISE paper's
        # ablation reports a 4x shorter run with a barely changed map (section "Complexity")
        method_options={"rise": {"n_masks": settings.rise_masks}, "sise": {"mu": settings.sise_mu}},
        seed=settings.seed,
    )
    return compare_runs(run_dirs, settings.data, out, options, force=overwrite)
