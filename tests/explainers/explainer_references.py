"""Slow references shared by the explainer tests (not a test module itself)."""

import torch
import torch.nn.functional as F


def reference_scorecam(model, layer, image, target):
    """Score-CAM (Wang et al. 2020) for one image, one channel at a time."""
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
    return cam.clamp(min=0)
