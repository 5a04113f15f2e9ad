"""The feature probe's layer choice at the edges its rules name, and its hygiene.

``cam_layer`` (the layer every CAM method explains by default) and ``block_layers`` (SISE's
layers, paper 003's "last layer of each convolutional block") are compared with the paper-rule
reference of ``test_explainers_sise_layers_reference`` on tiny models that reach the edges: a
convolution feeding a pool directly, a pool halving the pixels exactly, feature maps one pixel
high, convolutions the probe cannot see (functional ones), a squeeze-and-excitation gate (a
pool to 1x1 inside a block, not the global pool). The probe runs in eval mode and leaves no hook
and no changed flag or statistic behind; :class:`Capture` keeps the call it is asked for and
refuses what is no feature map.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_explainers_sise_layers_reference import reference_blocks
from torch import nn
from torchvision.ops import SqueezeExcitation

from torchlap.explainers import GradCam, RelevanceCam, ScoreCam, Sise, probe_features
from torchlap.explainers.probe import Capture


def _probe(model: nn.Module, images: torch.Tensor):
    return probe_features(model.eval(), images[:1], [])


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def _net(*layers: nn.Module, channels: int = 4) -> nn.Sequential:
    """``layers``, then the global pool and a linear classifier of 3 classes (the probe reads
    shapes only: no seed needed)."""
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 3)]
    return nn.Sequential(*layers, *head)


def test_a_convolution_feeding_a_pool_directly_ends_its_block() -> None:
    """No ReLU between: the convolution itself is the block's last layer (the model's first
    one too), and a pooled output flattened next ends no block but is the CAM layer."""
    torch.manual_seed(0)
    model = nn.Sequential(
        _conv(3, 4), nn.MaxPool2d(2), _conv(4, 4), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3)
    )
    images = torch.rand(1, 3, 16, 16)
    probe = _probe(model, images)
    assert reference_blocks(model, images) == ["0", "2"]
    assert probe.block_layers == ["0", "2"]
    # no global pool: the last module with a 4-D output of more than one pixel
    assert probe.cam_layer == "3"


def test_a_convolution_feeding_the_global_pool_is_the_cam_layer() -> None:
    model = _net(_conv(3, 4), nn.MaxPool2d(2), _conv(4, 4))
    images = torch.rand(1, 3, 16, 16)
    probe = _probe(model, images)
    assert probe.cam_layer == "2"
    assert probe.block_layers == reference_blocks(model, images) == ["0", "2"]


@pytest.mark.parametrize("kernel", [(2, 1), (1, 2)])
def test_a_pool_halving_the_pixels_exactly_is_a_down_sampling(kernel: tuple[int, int]) -> None:
    """Halving the height or the width keeps half the pixels: "at most half" includes it."""
    model = _net(_conv(3, 4), nn.ReLU(), nn.MaxPool2d(kernel), _conv(4, 4), nn.ReLU())
    images = torch.rand(1, 3, 8, 8)
    assert _probe(model, images).block_layers == reference_blocks(model, images) == ["1", "4"]


def test_feature_maps_one_pixel_high_are_feature_maps() -> None:
    """A 1x2 map has 2 pixels (more than one): a feature map, and the global pool's input."""
    model = _net(_conv(3, 4), nn.ReLU(), nn.MaxPool2d(2), _conv(4, 4), nn.ReLU())
    images = torch.rand(1, 3, 2, 4)  # 1x2 maps after the pool
    probe = _probe(model, images)
    assert probe.cam_layer == "4"
    assert probe.block_layers == reference_blocks(model, images) == ["1", "4"]
    assert probe.shapes["4"] == (1, 4, 1, 2)


def test_one_pixel_images_have_no_feature_layer() -> None:
    model = _net(nn.Conv2d(3, 4, 1), nn.ReLU())
    images = torch.rand(2, 3, 1, 1)
    probe = _probe(model, images)
    assert probe.cam_layer is None and probe.block_layers == []
    with pytest.raises(ValueError, match=r"found no layer with a 4-D output of spatial size > 1"):
        GradCam(model)(images)


class _FunctionalConv(nn.Module):
    """A convolution the probe cannot recognise (``F.conv2d``, no ``nn.Conv2d``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1)


def test_without_recorded_convolutions_every_block_end_is_kept() -> None:
    """The first module ran first (index 0): it still ends the first block."""
    model = _net(_FunctionalConv(3, 4), nn.MaxPool2d(2), _FunctionalConv(4, 4))
    probe = _probe(model, torch.rand(1, 3, 16, 16))
    assert probe.block_layers == ["0", "2"] and probe.cam_layer == "2"


def test_a_squeeze_and_excitation_pool_is_not_the_global_pool() -> None:
    """The gates' pools to 1x1 (EfficientNet's, MobileNetV3's; one in each block) end no
    block: only the last pool to 1x1 is the model's global pool."""
    first, second = SqueezeExcitation(8, 4), SqueezeExcitation(8, 4)
    layers = [_conv(3, 8), nn.ReLU(), first, nn.MaxPool2d(2), _conv(8, 8), nn.ReLU(), second]
    model = _net(*layers, channels=8)
    images = torch.rand(1, 3, 16, 16)
    probe = _probe(model, images)
    assert probe.block_layers == reference_blocks(model, images) == ["2", "6"]
    assert probe.cam_layer == "6"


def test_an_identity_after_the_last_layer_is_not_named() -> None:
    """Of the modules returning the same tensor the first is named: the ReLU, not the eval-mode
    Dropout passing its input on."""
    torch.manual_seed(0)
    model = nn.Sequential(_conv(3, 4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(256, 3))
    assert _probe(model, torch.rand(1, 3, 8, 8)).cam_layer == "1"


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


@pytest.mark.parametrize("fails", [False, True])
def test_the_probe_runs_in_eval_mode_and_leaves_no_trace(fails: bool) -> None:
    """Batch norm's running statistics untouched (eval mode), the caller's ``hooks`` list empty
    again, no hook on any module, every train/eval flag back; also when the forward raises."""
    torch.manual_seed(0)
    model = nn.Sequential(_conv(3, 4), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
    if fails:
        model.append(_Boom())
    model.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)))
    model.train()
    model[3].eval()  # a flag of the caller's own
    flags = [m.training for m in model.modules()]
    mean, var = model[1].running_mean.clone(), model[1].running_var.clone()
    hooks: list = []
    if fails:
        with pytest.raises(RuntimeError, match="boom"):
            probe_features(model, torch.rand(1, 3, 8, 8), hooks)
    else:
        probe = probe_features(model, torch.rand(1, 3, 8, 8), hooks)
        assert probe.cam_layer == "2"  # Dropout (eval) returns the ReLU's tensor
    assert hooks == [] and _hook_count(model) == 0
    assert [m.training for m in model.modules()] == flags
    torch.testing.assert_close(model[1].running_mean, mean, rtol=0, atol=0)
    torch.testing.assert_close(model[1].running_var, var, rtol=0, atol=0)
    assert model[1].num_batches_tracked.item() == 0


def test_a_layer_that_never_runs_is_refused_naming_it() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(_conv(3, 4), nn.ReLU())
            self.spare = _conv(4, 4)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    model = Unused().eval()
    probe = probe_features(model, torch.rand(1, 3, 8, 8), [])
    assert "spare" not in probe.calls
    with pytest.raises(ValueError, match=r"layer 'spare' did not run in a forward pass"):
        probe.ran("spare")
    with pytest.raises(ValueError, match=r"layer 'spare' did not run in a forward pass"):
        GradCam(model, layer="spare")(torch.rand(2, 3, 8, 8))
    assert probe.ran("body") == 1


def test_capture_keeps_the_call_it_is_asked_for() -> None:
    relu = nn.ReLU()
    first, second = Capture("relu"), Capture("relu", call=1)
    handles = [relu.register_forward_hook(first), relu.register_forward_hook(second)]
    a, b = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    out_a, out_b = relu(a), relu(b)
    relu(torch.randn(1, 2, 3, 3))  # a third call: neither capture changes
    assert torch.equal(first.get(), out_a) and torch.equal(second.get(), out_b)
    # the forward goes on with a copy of the kept output (what it changes in place is the copy)
    assert first.get() is not out_a and second.get() is not out_b
    assert torch.equal(second.get(), torch.relu(b)) and not torch.equal(first.get(), out_b)
    first.handle, second.handle = handles
    first.remove()
    second.remove()
    assert len(relu._forward_hooks) == 0
    Capture("unused").remove()  # no handle: nothing to remove


def test_capture_refuses_what_is_no_feature_map() -> None:
    capture = Capture("layer")
    with pytest.raises(ValueError, match=r"layer 'layer' did not run in the forward pass"):
        capture.get()
    with pytest.raises(TypeError, match=r"layer 'layer' returns tuple, not a tensor"):
        capture(nn.Identity(), (), (torch.zeros(1), torch.zeros(1)))
    flat = Capture("fc")
    flat(nn.Identity(), (), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"layer 'fc' outputs shape \(2, 5\)"):
        flat.get()
    changed = Capture("conv")
    output = torch.zeros(1, 2, 3, 3)
    changed(nn.Identity(), (), output)
    assert changed.get() is output
    output += 1
    with pytest.raises(ValueError, match=r"output of layer 'conv' was modified in place"):
        changed.get()


class _AddsInPlace(nn.Module):
    """``x += 1`` after the convolution, in the forward itself (no ``inplace`` flag)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv(3, 4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x += 1
        return self.head(x)


class _AddsOutOfPlace(_AddsInPlace):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x) + 1)


@pytest.mark.parametrize("explainer", [ScoreCam, RelevanceCam, Sise])
def test_an_explained_layer_changed_in_place_by_the_forward_is_read_unchanged(explainer) -> None:
    """The forward goes on with a copy of the captured output, so ``x += 1`` after the layer
    changes the copy: the maps are those of the same model adding out of place (they were
    refused before, as DenseNet's in-place ReLU on its ``features`` made every default layer
    refused; Grad-CAM's captum hook keeps its own copy and was right either way)."""
    torch.manual_seed(0)
    in_place = _AddsInPlace().eval()
    out_of_place = _AddsOutOfPlace().eval()
    out_of_place.load_state_dict(in_place.state_dict())
    images = torch.rand(2, 3, 8, 8)
    options = {"layers": ["conv"]} if explainer is Sise else {"layer": "conv"}
    got = explainer(in_place, **options)(images, 0)
    want = explainer(out_of_place, **options)(images, 0)
    assert got.any()
    torch.testing.assert_close(got, want)


class _Reduction(nn.Module):
    """Inception's Mixed_6a in small: a 1x1 then a strided 3x3 convolution beside a strided
    max pool, concatenated (a down-sampling block with a branch at its input resolution)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2, 1)
        )
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch(x), self.pool(x)], 1)


def test_a_branch_inside_a_reduction_block_ends_no_block() -> None:
    """The branch's ReLU feeds the strided convolution at the block's input resolution: the
    block's input ends the block before it, not the branch."""
    model = _net(_conv(3, 4), nn.ReLU(), _Reduction(4), _conv(8, 4), nn.ReLU())
    images = torch.rand(1, 3, 16, 16)
    probe = _probe(model, images)
    assert probe.block_layers == reference_blocks(model, images) == ["1", "4"]
    assert probe.cam_layer == "4"


def test_a_strided_convolution_keeping_every_value_is_a_down_sampling() -> None:
    """4 to 16 channels at half the side: as many values as its input, but no reordering of
    them (as ConvNeXt's ``Permute`` is): the pixels shrink, a block ends before it."""
    strided = nn.Conv2d(4, 16, 3, stride=2, padding=1)
    model = _net(_conv(3, 4), nn.ReLU(), strided, nn.ReLU(), channels=16)
    images = torch.rand(1, 3, 8, 8)
    assert _probe(model, images).block_layers == reference_blocks(model, images) == ["1", "3"]


def test_a_stage_of_a_convolution_and_a_pool_ends_at_its_convolution() -> None:
    """VGG-like stages without an activation: the convolution inside the stage feeds its pool
    (the stage ends with the pool after a convolution of its own)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(_conv(3, 4), nn.MaxPool2d(2)),
        nn.Sequential(_conv(4, 4), nn.MaxPool2d(2)),
        nn.Flatten(),
        nn.Linear(64, 3),
    )
    images = torch.rand(1, 3, 16, 16)
    probe = _probe(model, images)
    assert probe.block_layers == reference_blocks(model, images) == ["0.0", "1.0"]
    assert probe.cam_layer == "1"


def test_stages_ending_with_a_strided_convolution_end_before_it() -> None:
    """The stage's strided convolution is its reduction; the stage container's own input (the
    previous stage's output) ends no block of its own."""
    model = _net(
        nn.Sequential(_conv(3, 4), nn.ReLU(), nn.Conv2d(4, 4, 3, 2, 1)),
        nn.Sequential(_conv(4, 4), nn.ReLU(), nn.Conv2d(4, 4, 3, 2, 1)),
        nn.Sequential(_conv(4, 4), nn.ReLU()),
    )
    images = torch.rand(1, 3, 16, 16)
    assert _probe(model, images).block_layers == reference_blocks(model, images)
    assert reference_blocks(model, images) == ["0.1", "1.1", "2"]


def test_without_a_global_pool_the_last_feature_map_is_the_cam_layer() -> None:
    """The last pool gives 1x2 maps, flattened next: no pool to 1x1, so the pooled maps (more
    than one pixel) are the CAM layer, not the pool's input."""
    model = nn.Sequential(_conv(3, 4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert _probe(model, torch.rand(1, 3, 2, 4)).cam_layer == "2"


class _AuxHead(nn.Module):
    """A second head on the feature maps, computed after the global pool (its maps are the
    last spatial output of the pass, though they feed no logit)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(3, 4), nn.ReLU())
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)
        self.aux = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        logits = self.fc(self.pool(features).flatten(1))
        self.aux_maps = self.aux(features)
        return logits


def test_the_cam_layer_is_the_global_pools_input_not_the_last_feature_map() -> None:
    assert _probe(_AuxHead(), torch.rand(1, 3, 8, 8)).cam_layer == "body"


class _SharedAfterFunctional(nn.Module):
    """One module applied after each convolution, to a tensor no module returned: a ReLU
    after a functional scaling, or an eval-mode Dropout (it returns its input) after a
    functional ReLU. No layer ran once where the shared module's call read its input."""

    def __init__(self, shared: nn.Module) -> None:
        super().__init__()
        self.c1, self.c2, self.shared = _conv(3, 4), _conv(4, 4), shared
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.c1, self.c2):
            y = conv(x)
            x = self.shared(y * 2.0 if isinstance(self.shared, nn.ReLU) else F.relu(y))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("shared", [nn.ReLU(), nn.Dropout(0.5)])
def test_a_shared_module_after_functional_ops_is_named_itself(shared: nn.Module) -> None:
    """The probe ends (the Dropout's input is its own output: no earlier layer to take) and
    names the shared module, which then is refused as running twice."""
    model = _SharedAfterFunctional(shared).eval()
    probe = probe_features(model, torch.rand(1, 3, 8, 8), [])
    assert probe.cam_layer == "shared" and probe.calls["shared"] == 2
    with pytest.raises(ValueError, match="'shared' runs 2 times"):
        GradCam(model)(torch.rand(1, 3, 8, 8))
