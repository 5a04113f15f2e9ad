"""SISE names the image whose masked copies score NaN (and only that image), not the layers:
its visualisation maps are (L, B, H, W), checked image by image."""

import pytest
import torch
from torch import Tensor, nn

from torchlap.explainers import Sise
from torchlap.models.wrapping import SmallCNN


class MaskedNaN(nn.Module):
    """SmallCNN whose logits are NaN for masked copies (a pixel of channel 0 exactly 0) of the
    image whose channel 2 is all zero; the unmasked images' logits are finite."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = SmallCNN(3)

    def forward(self, x: Tensor) -> Tensor:
        masked = (x[:, 0] == 0).flatten(1).any(dim=1)
        chosen = (x[:, 2] == 0).flatten(1).all(dim=1)
        poison = torch.where(masked & chosen, float("nan"), 0.0)
        return self.net(x) + poison[:, None]


def test_sise_names_the_one_image_with_nan_masked_scores():
    torch.manual_seed(1)
    images = 0.5 + 0.5 * torch.rand(3, 3, 32, 32)
    images[1, 2] = 0.0
    model = MaskedNaN().eval()
    with torch.no_grad():
        assert torch.isfinite(model(images)).all()
    explainer = Sise(model)
    assert len(explainer.layer_names(images[:1])) >= 2  # more layers than bad images
    message = r"sise: the model gives NaN or infinite class scores on masked copies of images \[1\]"
    with pytest.raises(ValueError, match=message):
        explainer(images, 0)
