"""What the masked forwards of Score-CAM, RISE and SISE run under, observed from inside the
model: inference mode, autocast to the requested precision, channels-last inputs on the CPU
(and, on other devices, in reduced precision only)."""

import pytest
import torch
from torch import Tensor, nn

from torchlap.explainers import Rise, ScoreCam, Sise
from torchlap.explainers.perturbation import masked_batch


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()


EXPLAINERS = {
    "scorecam": lambda model, precision: ScoreCam(model, precision=precision),
    "rise": lambda model, precision: Rise(model, n_masks=6, precision=precision),
    "sise": lambda model, precision: Sise(model, precision=precision),
}
AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def masked_forward_states(method: str, precision: str) -> list[dict]:
    """The state seen by the first convolution in each forward of more than one image (one
    image is explained, so only the masked forwards batch several)."""
    model = small_cnn()
    seen = []

    def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        (inputs,) = args
        if inputs.shape[0] > 1:
            seen.append(
                {
                    "inference": torch.is_inference_mode_enabled(),
                    "autocast": torch.is_autocast_enabled("cpu"),
                    "autocast_dtype": torch.get_autocast_dtype("cpu"),
                    "channels_last": inputs.is_contiguous(memory_format=torch.channels_last)
                    and not inputs.is_contiguous(),
                }
            )

    model[0].register_forward_pre_hook(record)
    EXPLAINERS[method](model, precision).raw(torch.randn(1, 3, 8, 8), 1)
    assert seen, "no masked forward observed"
    return seen


@pytest.mark.parametrize("method", sorted(EXPLAINERS))
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_masked_forwards_run_in_inference_mode_channels_last_and_autocast(method, precision):
    for state in masked_forward_states(method, precision):
        assert state["inference"], state
        assert state["channels_last"], state  # on the CPU, whatever the precision
        assert state["autocast"] == (precision != "float32"), state
        if precision != "float32":
            assert state["autocast_dtype"] == AUTOCAST[precision], state


def test_masked_batch_layout_by_device_and_precision():
    """Channels-last for 4-D inputs on the CPU at any precision, elsewhere (the meta device
    stands in for a GPU here) in reduced precision only; other ranks are returned as given."""
    cpu = torch.randn(2, 3, 4, 5)
    for precision in ("float32", "bfloat16", "float16"):
        out = masked_batch(cpu, precision)
        assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
        assert torch.equal(out, cpu)
    other = torch.empty(2, 3, 4, 5, device="meta")
    assert masked_batch(other, "float32").is_contiguous()
    assert not masked_batch(other, "float32").is_contiguous(memory_format=torch.channels_last)
    for precision in ("bfloat16", "float16"):
        out = masked_batch(other, precision)
        assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    for rank3 in (torch.randn(2, 3, 5), torch.empty(2, 3, 5, device="meta")):
        for precision in ("float32", "bfloat16"):
            assert masked_batch(rank3, precision) is rank3


def test_scorecam_masked_forwards_carry_no_capture_hook():
    """The capture of the explained layer is removed before the masked forwards (it would
    keep a masked batch's activations alive)."""
    model = small_cnn()
    hooks_seen = []
    model[4].register_forward_pre_hook(
        lambda module, args: hooks_seen.append((args[0].shape[0], len(module._forward_hooks)))
    )
    ScoreCam(model, layer="4").raw(torch.randn(1, 3, 8, 8), 1)
    assert (1, 1) in hooks_seen  # the capturing forward (of the one image)
    masked = [count for batch, count in hooks_seen if batch > 1]
    assert masked and masked == [0] * len(masked), hooks_seen


@pytest.mark.parametrize("method", sorted(EXPLAINERS))
@pytest.mark.parametrize("mask_batch_size", [1, 2, 4])
def test_masked_forwards_never_exceed_mask_batch_size(method, mask_batch_size):
    """Three images, five RISE masks: every masked forward (the ones in inference mode) holds
    at most ``mask_batch_size`` images, whichever of images or masks outnumbers the other."""
    model = small_cnn()
    sizes = []
    model[0].register_forward_pre_hook(
        lambda module, args: (
            sizes.append(args[0].shape[0]) if torch.is_inference_mode_enabled() else None
        )
    )
    options = {"mask_batch_size": mask_batch_size}
    explainer = {
        "scorecam": lambda: ScoreCam(model, **options),
        "rise": lambda: Rise(model, n_masks=5, **options),
        "sise": lambda: Sise(model, **options),
    }[method]()
    explainer.raw(torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2]))
    assert sizes and max(sizes) <= mask_batch_size, sizes


def test_the_documented_defaults_of_score_cam_and_sise():
    """64 masked images per forward, deduplicated masks, float32 forwards; SISE's mu = 0."""
    scorecam, sise = ScoreCam(small_cnn()), Sise(small_cnn())
    assert (scorecam.layer, scorecam.mask_batch_size, scorecam.deduplicate) == (None, 64, True)
    assert (sise.layers, sise.mask_batch_size, sise.deduplicate, sise.mu) == (None, 64, True, 0.0)
    assert scorecam.precision == sise.precision == "float32"
    assert sise.fusion_normalization == "none"


def test_sise_masked_forwards_carry_no_capture_hook():
    model = small_cnn()
    hooks_seen = []
    model[4].register_forward_pre_hook(
        lambda module, args: hooks_seen.append((args[0].shape[0], len(module._forward_hooks)))
    )
    Sise(model, layers=["4"]).raw(torch.randn(1, 3, 8, 8), 1)
    assert (1, 1) in hooks_seen  # the capturing forward (of the one image)
    masked = [count for batch, count in hooks_seen if batch > 1]
    assert masked and masked == [0] * len(masked), hooks_seen
