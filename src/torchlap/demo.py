"""``torchlap demo`` / ``make demo``: the main job on the built-in ``lesions`` benchmark.

Trains a vanilla ResNet18, a weakly supervised LAP-ResNet18 (Eq. 5 + Eq. 6) and an
expert-supervised LAP-ResNet18 (boxes), evaluates all three with every explainer, and writes one
comparison report. Sized to finish in under 15 minutes on a 2-core CPU; ``scale`` grows or
shrinks the data and the number of evaluated images together.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["DemoSettings", "run_demo"]


@dataclass
class DemoSettings:
    """What the demo trains and evaluates (defaults: the numbers the README quotes)."""

    image_size: int = 64
    n_images: int = 1000
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    eval_images: int = 32
    val_images: int = 32
    stability_images: int = 4
    rise_masks: int = 300
    seed: int = 0
    arch: str = "resnet18"

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
            stability_images=max(4, round(self.stability_images * min(scale, 1.0))),
            rise_masks=max(50, round(self.rise_masks * min(scale, 1.0))),
            seed=self.seed,
            arch=self.arch,
        )


RUNS = (
    ("vanilla", {"lap": "none", "supervision": "none"}),
    ("ws-lap", {"lap": "resnet18", "supervision": "weak"}),
    ("bb-lap", {"lap": "resnet18", "supervision": "expert"}),
)


def run_demo(
    out: str | os.PathLike[str],
    settings: DemoSettings | None = None,
    methods: tuple[str, ...] | None = None,
    overwrite: bool = False,
) -> Path:
    """Train the three runs into ``out/runs``, compare them into ``out``; return report.html.

    A finished run is reused (its config must match), so an interrupted demo resumes.
    """
    from torchlap.evaluate import DEFAULT_METHODS, EvaluateOptions, compare_runs
    from torchlap.train import TrainConfig, fit

    settings = settings or DemoSettings()
    out = Path(out)
    run_dirs = []
    for name, model_options in RUNS:
        run_dir = out / "runs" / name
        lap = model_options["lap"] if settings.arch == "resnet18" else "auto"
        if model_options["lap"] == "none":
            lap = "none"
        config = TrainConfig(
            data="lesions",
            out=str(run_dir),
            arch=settings.arch,
            lap=lap,
            supervision=model_options["supervision"],
            epochs=settings.epochs,
            lr=settings.lr,
            image_size=settings.image_size,
            batch_size=settings.batch_size,
            n_images=settings.n_images,
            seed=settings.seed,
            overwrite=overwrite,
        )
        if (run_dir / "model.safetensors").is_file() and not overwrite:
            logger.info("%s: reusing the finished run in %s", name, run_dir)
        else:
            started = time.perf_counter()
            fit(config)
            logger.info("%s: trained in %.0f s", name, time.perf_counter() - started)
        run_dirs.append(run_dir)
    options = EvaluateOptions(
        methods=tuple(methods or DEFAULT_METHODS),
        max_images=settings.eval_images,
        max_val_images=settings.val_images,
        stability_images=settings.stability_images,
        method_options={"rise": {"n_masks": settings.rise_masks}},
        seed=settings.seed,
    )
    return compare_runs(run_dirs, "lesions", out, options, force=overwrite)
