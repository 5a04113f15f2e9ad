"""RISE and Score-CAM on non-square images (height != width) against slow references: RISE
mask by mask (Petsiuk et al. 2018: grid, bilinear upsampling, random crop, then
``S = 1 / (N p) sum_i P(c | I * M_i) M_i``), Score-CAM channel by channel."""

import torch
import torch.nn.functional as F
from explainer_references import reference_scorecam, two_conv_cnn

from torchlap.explainers import Rise, ScoreCam


def loop_rise(model, image, target, n, grid, p, seed):
    """RISE for one image, one mask at a time (the masks drawn as RiseMasks documents: the
    grids, then the row shifts, then the column shifts, from one seeded CPU generator)."""
    height, width = image.shape[-2:]
    cell_h, cell_w = -(-height // grid), -(-width // grid)
    generator = torch.Generator().manual_seed(seed)
    grids = (torch.rand(n, grid, grid, generator=generator) < p).float()
    shift_y = torch.randint(0, cell_h, (n,), generator=generator)
    shift_x = torch.randint(0, cell_w, (n,), generator=generator)
    saliency = torch.zeros(height, width)
    for i in range(n):
        up = F.interpolate(
            grids[i][None, None], size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear"
        )[0, 0]
        sy, sx = int(shift_y[i]), int(shift_x[i])
        mask = up[sy : sy + height, sx : sx + width]
        with torch.no_grad():
            probability = model((image * mask)[None]).softmax(dim=1)[0, target]
        saliency += probability * mask
    return saliency / (n * p)


def test_rise_on_non_square_images_matches_the_loop():
    model = two_conv_cnn(4)
    for size in ((12, 16), (16, 10)):
        images = torch.randn(2, 3, *size)
        target = torch.tensor([2, 0])
        ours = Rise(model, n_masks=12, grid_size=4, p=0.4, seed=3, mask_batch_size=5)(
            images, target
        )
        assert ours.shape == (2, *size)
        for i in range(2):
            expected = loop_rise(model, images[i], int(target[i]), 12, 4, 0.4, 3)
            torch.testing.assert_close(ours[i], expected, rtol=1e-4, atol=1e-6)


def test_scorecam_on_non_square_images_matches_the_loop():
    model = two_conv_cnn(4)
    images = torch.randn(2, 3, 8, 14)
    target = torch.tensor([1, 2])
    ours = ScoreCam(model, layer="4", mask_batch_size=4).raw(images, target)
    assert ours.shape == (2, 4, 7)
    for i in range(2):
        expected = reference_scorecam(model, model[4], images[i], int(target[i]))
        torch.testing.assert_close(ours[i], expected, rtol=1e-4, atol=1e-6)
