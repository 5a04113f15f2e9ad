"""Test balanced accuracy and LAP-map IoU with the boxes, for trained run folders.

Usage::

    python benchmarks/train_lesions_iou.py runs/ws runs/vanilla runs/expert [--batch-size 64]

For each run folder (written by ``torchlap train``) this reloads the model with
``torchlap.load_run`` (safetensors + JSON), rebuilds the run's test split from its
``config.json`` (same data, image size, number of images and seed), and prints:

- the balanced accuracy on the test split, recomputed here (and the value in metrics.json);
- per LAP layer, the IoU of the binarized score map (score > 0.5, paper 000 section IV,
  "Binarization by Thresholding") with the boxes, over the test images that have boxes, and
  the IoU of the top-k pixels with k the box area ("Binarization by Top-Scored Selection"). The
  score map lives at the layer's input resolution; it is upsampled bilinearly to the image
  size before thresholding (the paper resizes maps to the image; it does not say how). The
  row marked ``*`` is the last LAP layer before the global pool, the acceptance number.

A vanilla run (``--lap none``) has no LAP layer: its IoU column is empty.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from torchlap import AdaptiveLocalAttentionPool2d, attention_maps, load_run
from torchlap.data import collate_regions, load_dataset
from torchlap.data._base import boxes_to_mask
from torchlap.metrics import iou_threshold, iou_topk


def _test_split(config: dict) -> torch.utils.data.Dataset:
    train = config["train"]
    kwargs = dict(train.get("data_options") or {})
    if train.get("n_images") is not None:
        kwargs["n_images"] = train["n_images"]
    return load_dataset(
        train["data"], split="test", image_size=train["image_size"], seed=train["seed"], **kwargs
    )


@torch.no_grad()
def evaluate(run_dir: Path, batch_size: int) -> dict:
    """Balanced accuracy and per-layer IoU (score > 0.5) of one run on its test split."""
    run = load_run(run_dir)
    dataset = _test_split(run.config)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_regions
    )
    n_classes = len(run.classes)
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long)
    maps_by_layer: dict[str, list[torch.Tensor]] = {}
    box_masks: list[torch.Tensor] = []
    for batch in loader:
        images = batch["image"]
        logits = run.model(images)
        predictions = logits.argmax(dim=1)
        confusion += torch.bincount(
            batch["label"] * n_classes + predictions, minlength=n_classes * n_classes
        ).view(n_classes, n_classes)
        size = images.shape[-2:]
        # the IoU is taken against the boxes (rasterized), not the exact lesion footprint
        box_masks.append(
            torch.stack([boxes_to_mask(b.as_subclass(torch.Tensor), *size) for b in batch["boxes"]])
            .bool()
            .logical_and(batch["has_region"][:, None, None])
        )
        if run.config.get("lap_layers"):
            for name, lap in attention_maps(run.model).items():
                upsampled = F.interpolate(
                    lap.score, size=size, mode="bilinear", align_corners=False
                )
                maps_by_layer.setdefault(name, []).append(upsampled[:, 0])
    recall = confusion.diag().double() / confusion.sum(dim=1).clamp_min(1).double()
    masks = torch.cat(box_masks)
    ious = {}
    for name, parts in maps_by_layer.items():
        maps = torch.cat(parts)
        ious[name] = (iou_threshold(maps, masks, 0.5), iou_topk(maps, masks))
    metrics_path = run_dir / "metrics.json"
    stored = json.loads(metrics_path.read_text()).get("test") if metrics_path.is_file() else None
    return {
        "balanced_accuracy": float(recall.mean()),
        "stored_balanced_accuracy": None if not stored else stored.get("balanced_accuracy"),
        "iou": {name: (th.value, tk.value, th.n) for name, (th, tk) in ious.items()},
        "global_lap": _last_local_lap(run.model, list(ious)),
        "supervision": run.config["losses"]["supervision"],
        "n_test": len(dataset),
    }


def _last_local_lap(model: torch.nn.Module, names: list[str]) -> str | None:
    """The last (in forward order) LAP layer that is not an adaptive (global) pool."""
    modules = dict(model.named_modules())
    local = [n for n in names if not isinstance(modules[n], AdaptiveLocalAttentionPool2d)]
    return local[-1] if local else None


def main() -> None:
    """Print the table for the run folders given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of torchlap train")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run_dir in args.runs:
        result = evaluate(run_dir, args.batch_size)
        stored = result["stored_balanced_accuracy"]
        stored_text = "n/a" if stored is None else f"{stored:.4f}"
        print(
            f"{run_dir}: supervision={result['supervision']} n_test={result['n_test']} "
            f"balanced_accuracy={result['balanced_accuracy']:.4f} "
            f"(metrics.json: {stored_text})"
        )
        if not result["iou"]:
            print("    no LAP layer: no IoU")
        for name, (threshold, topk, n) in result["iou"].items():
            mark = "*" if name == result["global_lap"] else " "
            print(
                f"  {mark} {name:<18} IoU(score > 0.5) {threshold:.4f}   "
                f"IoU(top-k, k = box area) {topk:.4f}   (n={n} images with boxes)"
            )


if __name__ == "__main__":
    main()
