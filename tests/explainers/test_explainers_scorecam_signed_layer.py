"""Score-CAM's final ReLU on a layer whose activations take both signs (a convolution's
output): ``ReLU(sum_k w_k A_k)`` against a channel-by-channel loop."""

import torch
from explainer_references import reference_scorecam, two_conv_cnn

from torchlap.explainers import ScoreCam


def test_scorecam_clips_negative_sums_on_a_signed_layer() -> None:
    """Pixels where the weighted sum of signed activations is negative become 0, the rest match."""
    model = two_conv_cnn(3)
    images = torch.randn(2, 3, 8, 8)
    target = torch.tensor([0, 2])
    ours = ScoreCam(model, layer="0", mask_batch_size=4).raw(images, target)
    saw_negative = False
    for i in range(2):
        total = reference_scorecam(model, model[0], images[i], int(target[i]), clip=False)
        saw_negative |= bool((total < 0).any())
        torch.testing.assert_close(ours[i], total.clamp(min=0), rtol=1e-4, atol=1e-6)
    assert saw_negative  # the case the ReLU exists for
