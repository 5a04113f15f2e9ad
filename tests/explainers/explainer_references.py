"""Slow references shared by the explainer tests (not a test module itself)."""

import torch
import torch.nn.functional as F
from torch import nn


def reference_scorecam(model, layer, image, target, clip=True):
    """Score-CAM (Wang et al. 2020) for one image, one channel at a time; ``clip=False`` leaves
    out the final ReLU (the weighted channel sum itself)."""
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.setdefault("a", o.clone()))
    with torch.no_grad():
        model(image[None])
    handle.remove()
    activations = captured["a"][0]
    cam = torch.zeros(activations.shape[1:])
    for k in range(activations.shape[0]):
        a = activations[k]
        if a.max() == a.min():
            continue
        up = F.interpolate(a[None, None], size=image.shape[-2:], mode="bilinear")[0, 0]
        mask = (up - up.min()) / (up.max() - up.min())
        with torch.no_grad():
            probability = model((image * mask)[None]).softmax(dim=1)[0, target]
        cam += probability * a
    return cam.clamp(min=0) if clip else cam


def reference_lap_all(maps, decay=0.8, threshold=0.5):
    """Algorithm 1 of the LAP supplement, pixel by pixel, window by window."""
    depth = len(maps)
    integrated = maps[-1].clone()
    for level in range(depth - 2, -1, -1):
        layer_map = maps[level]
        batch, height, width = layer_map.shape
        coarse_h, coarse_w = integrated.shape[-2:]
        out = torch.empty(batch, height, width)
        for b in range(batch):
            for i in range(coarse_h):
                rows = [y for y in range(height) if y * coarse_h // height == i]
                for j in range(coarse_w):
                    cols = [x for x in range(width) if x * coarse_w // width == j]
                    if not rows or not cols:
                        continue
                    window = layer_map[b][rows][:, cols]
                    r = integrated[b, i, j].item()
                    result = torch.full(window.shape, r)
                    if r >= threshold and window.max().item() >= threshold:
                        for a in range(window.shape[0]):
                            for c in range(window.shape[1]):
                                p = window[a, c].item() * decay ** (depth - 1 - level)
                                if window[a, c].item() >= threshold:
                                    result[a, c] = max(r, p)
                                else:
                                    result[a, c] = p
                    for a, y in enumerate(rows):
                        for c, x in enumerate(cols):
                            out[b, y, x] = result[a, c]
        integrated = out
    return integrated


def two_conv_cnn(seed: int) -> nn.Sequential:
    """conv(3->5)-ReLU-maxpool-conv(5->6)-ReLU-GAP-linear(6->3) in eval mode, drawn after
    ``torch.manual_seed(seed)``: layer "0" has signed maps, "3" a 2x smaller map."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(5, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()
