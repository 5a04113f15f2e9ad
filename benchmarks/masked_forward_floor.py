"""How fast Score-CAM's masked forwards could get in float32: the model's convolutions alone.

Run: ``.venv/bin/python benchmarks/masked_forward_floor.py [--size 224] [--batch 64]
[--rounds 5]``

Score-CAM makes one forward per distinct mask, and the peers of ``torchlap bench explain
--against grad-cam,torchcam`` make as many on the same model, so at equal maps its speed-up over
them is the speed-up of one masked forward. This script times, on the model of ``bench explain``
(a LAP-ResNet18 with random weights) and a batch of random images:

1. the plain forward as the peers run it (default layout, batch norms as they are, under
   ``torch.no_grad``);
2. torchlap's masked forward (:func:`torchlap.explainers.perturbation.masked_forward_context`:
   inference mode, in-place flags, batch norms folded; channels-last input);
3. the same model's ``nn.Conv2d`` layers alone, each run on the input it got in (2) (recorded by
   forward hooks, removed afterwards): the work no layout or fusion takes away.

It prints each one's time per image (best of ``--rounds`` rounds, each round running the three
in turn) and two ratios:
plain / torchlap (what Score-CAM gains per forward today) and plain / convolutions (what it would
gain if everything but the convolutions cost nothing). The second bounds Score-CAM's float32
speed-up over a peer that makes the same forwards.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from torchlap.allocator import keep_freed_memory
from torchlap.bench.explain import build_lap_resnet18
from torchlap.explainers.perturbation import ScoreCam, masked_batch, masked_forward_context


def recorded_conv_inputs(model: nn.Module, images: Tensor) -> list[tuple[nn.Conv2d, Tensor]]:
    """Each ``nn.Conv2d`` of ``model`` with (a copy of) the input it gets in a forward of
    ``images``; the hooks are removed when the forward ends, also on error."""
    seen: list[tuple[nn.Conv2d, Tensor]] = []

    def record(module: nn.Module, args: tuple) -> None:
        seen.append((module, args[0].clone()))

    handles = [
        m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)
    ]
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def timed(run) -> float:
    """Seconds of one call of ``run``."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    """Print the three times per image and the two ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=224, help="image size in pixels")
    parser.add_argument("--batch", type=int, default=64, help="images per forward (mask batch)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    keep_freed_memory()  # as the torchlap command does
    torch.manual_seed(0)
    model, how = build_lap_resnet18()
    model.eval()
    images = torch.randn(args.batch, 3, args.size, args.size)
    explainer = ScoreCam(model)
    best = dict.fromkeys(("plain", "torchlap", "convs"), float("inf"))
    # each round: the peers' plain forward, then torchlap's context (folding included) with its
    # forward and the convolutions alone; a warm-up round first, not counted
    for round_ in range(args.rounds + 1):
        with torch.no_grad():
            times = {"plain": timed(lambda: model(images))}
        with explainer, masked_forward_context(explainer, images[:1], "float32"):
            fast = masked_batch(images, "float32")
            convs = recorded_conv_inputs(model, fast)
            times["torchlap"] = timed(lambda fast=fast: model(fast))
            times["convs"] = timed(lambda convs=convs: [conv(inputs) for conv, inputs in convs])
        for name, seconds in times.items():
            best[name] = min(best[name], seconds) if round_ else best[name]
    per_image = {
        "plain forward (the peers')": best["plain"],
        "torchlap's masked forward": best["torchlap"],
        f"its {len(convs)} nn.Conv2d layers alone": best["convs"],
    }
    print(
        f"{how}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads; "
        f"ms per image, best of {args.rounds} rounds"
    )
    for name, seconds in per_image.items():
        print(f"{name + ':':40s}{seconds / args.batch * 1e3:8.2f}")
    ratios = {
        "plain / torchlap": best["plain"] / best["torchlap"],
        "plain / convolutions alone": best["plain"] / best["convs"],
        "convolutions' share of torchlap's": best["convs"] / best["torchlap"],
    }
    for name, ratio in ratios.items():
        print(f"{name + ':':40s}{ratio:8.2f}")


if __name__ == "__main__":
    main()
