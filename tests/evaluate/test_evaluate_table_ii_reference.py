"""Paper 000's Table II for a post-hoc method, end to end, against a slow reference written from
the paper's text (section IV and supplementary):

- "we normalized each importance map by its maximum value ... created a dataset from the
  normalized pixel-wise interpretation scores over the validation samples ... positive label to
  all the pixels under the experts' annotated boxes and the negative to the others ...
  RidgeClassifier ... alpha of 0.01 ... balanced weighting ... the point with the prediction
  label equal to zero as the threshold": the ridge line's zero crossing, by loops over every
  validation pixel (closed form of one feature: weighted least squares with ``alpha`` on the
  slope only, targets -1/+1, weights ``n / (2 n_class)``);
- "We used the classifier's threshold to binarize the normalized score maps of the test data"
  and the IoU with the boxes (**Binarization by Thresholding**);
- "we selected as many top-scored pixels as the bounding boxes area of each sample"
  (**Binarization by Top-Scored Selection**), ties at the cut by their expectation;

each image holding a box scoring its IoU, the table's number their mean; the maps explain the
predicted class (README, "Table II's images, class and mean"). The maps themselves come from the
explainer (tested against captum elsewhere); what is checked is how they become Table II.
"""

from __future__ import annotations

import torch
from torch import nn

from torchlap.evaluate.core import EvalData, EvaluateOptions, evaluate_method
from torchlap.explainers import explain

SIZE = 12


def spatial_model() -> nn.Module:
    """Logit c = mean of a 3x3-smoothed channel c: Grad-CAM of class c is that smoothed channel."""
    conv, linear = nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3, 3)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[c, c] = 1.0 / 9
        conv.bias.zero_()
        linear.weight.copy_(torch.eye(3))
        linear.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval()


def boxed_split(n: int, with_region: int, seed: int) -> EvalData:
    """Noisy images brighter under one box each (the first ``with_region`` images); the others
    hold no box (negatives: all their pixels outside)."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.5 * torch.rand(n, 3, SIZE, SIZE, generator=generator)
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    for i in range(with_region):
        top, left = (int(v) for v in torch.randint(0, SIZE - 5, (2,), generator=generator))
        height, width = (int(v) for v in torch.randint(3, 6, (2,), generator=generator))
        masks[i, top : top + height, left : left + width] = True
        images[i, :, top : top + height, left : left + width] += 0.4
    return EvalData(
        images=images,
        labels=torch.randint(0, 3, (n,), generator=generator),
        masks=masks,
        has_region=masks.flatten(1).any(dim=1),
        classes=["a", "b", "c"],
        name="synthetic",
    )


def ref_normalized(score: torch.Tensor) -> list[list[float]]:
    """The map divided by its maximum, pixel by pixel (no positive maximum: all zero)."""
    rows, cols = score.shape
    peak = max(float(score[r, c]) for r in range(rows) for c in range(cols))
    return [
        [float(score[r, c]) / peak if peak > 0 else 0.0 for c in range(cols)] for r in range(rows)
    ]


def ref_threshold(val_maps: torch.Tensor, val_masks: torch.Tensor, alpha: float = 0.01) -> float:
    values, labels = [], []
    for score, mask in zip(val_maps, val_masks, strict=True):
        normalized = ref_normalized(score)
        for r in range(SIZE):
            for c in range(SIZE):
                values.append(normalized[r][c])
                labels.append(bool(mask[r, c]))
    n, inside = len(labels), sum(labels)
    weights = [n / (2 * (inside if label else n - inside)) for label in labels]
    targets = [1.0 if label else -1.0 for label in labels]
    total = sum(weights)
    mean_x = sum(w * x for w, x in zip(weights, values, strict=True)) / total
    mean_y = sum(w * y for w, y in zip(weights, targets, strict=True)) / total
    spread = sum(w * (x - mean_x) ** 2 for w, x in zip(weights, values, strict=True))
    joint = sum(
        w * (x - mean_x) * (y - mean_y) for w, x, y in zip(weights, values, targets, strict=True)
    )
    slope = joint / (spread + alpha)
    return -(mean_y - slope * mean_x) / slope


def ref_box(mask: torch.Tensor) -> set[tuple[int, int]]:
    return {(r, c) for r in range(SIZE) for c in range(SIZE) if bool(mask[r, c])}


def ref_iou_threshold(score: torch.Tensor, box: set, threshold: float) -> float:
    normalized = ref_normalized(score)
    kept = {(r, c) for r in range(SIZE) for c in range(SIZE) if normalized[r][c] > threshold}
    return len(kept & box) / len(kept | box)


def ref_iou_top_scored(score: torch.Tensor, box: set) -> float:
    """As many top-scored pixels as the box holds; pixels tied at the cut count by their chance
    of being chosen."""
    pixels = [(r, c) for r in range(SIZE) for c in range(SIZE)]
    k = len(box)
    cut = sorted((float(score[p]) for p in pixels), reverse=True)[k - 1]
    above = [p for p in pixels if float(score[p]) > cut]
    tied = [p for p in pixels if float(score[p]) == cut]
    inter = sum(p in box for p in above) + (k - len(above)) * sum(p in box for p in tied) / len(
        tied
    )
    return inter / (k + len(box) - inter)


def test_table_ii_of_a_post_hoc_method_matches_the_papers_recipe() -> None:
    model = spatial_model()
    test, val = boxed_split(7, 5, seed=0), boxed_split(6, 4, seed=1)
    with torch.no_grad():
        test_predictions = model(test.images).argmax(1)
        val_predictions = model(val.images).argmax(1)
    options = EvaluateOptions(
        methods=("gradcam",), ks=(50,), stability_images=1, stability_fractions=(0.1,),
        batch_size=4, tie_draws=1, bootstrap_resamples=0,
    )  # fmt: skip
    out, maps = evaluate_method(
        "gradcam", model, test, val, test_predictions, val_predictions, options,
        torch.device("cpu"),
    )  # fmt: skip
    # the maps: Grad-CAM of the predicted class, validation maps alike (every validation image,
    # the two without a box giving outside pixels only)
    torch.testing.assert_close(maps, explain(model, test.images, "gradcam", test_predictions))
    val_maps = explain(model, val.images, "gradcam", val_predictions)
    threshold = ref_threshold(val_maps, val.masks)
    assert 0.1 < threshold < 0.9  # between the classes: a meaningful case
    location = out["localization"]
    torch.testing.assert_close(location["threshold"], threshold, rtol=0, atol=1e-9)
    by_threshold, by_top = [], []
    for score, mask in zip(maps, test.masks, strict=True):
        box = ref_box(mask)
        if not box:  # a negative image: no box, no IoU
            continue
        by_threshold.append(ref_iou_threshold(score, box, threshold))
        by_top.append(ref_iou_top_scored(score, box))
    for key, scores in (("iou_threshold", by_threshold), ("iou_topk", by_top)):
        assert (location[key]["n"], location[key]["n_excluded"]) == (5, 2), key
        torch.testing.assert_close(location[key]["value"], sum(scores) / len(scores))
    assert 0 < location["iou_threshold"]["value"] < 1
