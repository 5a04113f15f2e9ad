"""Bad input to the public helpers found by a machine sweep of the Python API (each public
callable called with one argument at a time replaced by a bad value): every case raises a typed
error naming the argument, where it was an internal error (AttributeError, IndexError, torch's
RuntimeError) or was silently accepted (garbage or NaN out). Library cases of earlier work:
test_robust_library.py; CLI cases: test_robust_cli.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

import torchlap
from torchlap import data, explainers, losses, metrics, models, report
from torchlap.export import output_names
from torchlap.layers import LapMaps

NAN = float("nan")


def _nan(shape: tuple[int, ...]) -> torch.Tensor:
    tensor = torch.rand(shape)
    tensor.view(-1)[0] = NAN
    return tensor


def _masks() -> torch.Tensor:
    masks = torch.zeros(3, 16, 16)
    masks[:, 4:10, 4:10] = 1
    return masks


def _lap_maps() -> LapMaps:
    return LapMaps(torch.rand(3, 4, 8, 8), torch.rand(3, 1, 8, 8), None, (16, 16))


def _fit_features(features: torch.Tensor) -> None:
    metrics.LearnedConceptPredictor(4, 3, 8, epochs=1).fit(features, torch.tensor([0, 1, 2]))


# ----------------------------------------------------------------------------- metrics

METRICS: list[tuple[str, Callable[[], object], type, str]] = [
    ("higher_is_better-int", lambda: metrics.higher_is_better(3), TypeError, r"name must be"),
    (
        "salt_and_pepper-generator",
        lambda: metrics.salt_and_pepper(torch.rand(2, 3, 8, 8), 0.1, generator=3),
        TypeError,
        r"generator must be a torch\.Generator or None, got 3",
    ),
    (
        "learned-seed-negative",
        lambda: metrics.LearnedConceptPredictor(4, 3, seed=-1),
        ValueError,
        r"seed must be an int from 0 to 4294967295, got -1",
    ),
    (
        "learned-seed-float",
        lambda: metrics.LearnedConceptPredictor(4, 3, seed=2.5),
        TypeError,
        r"seed must be an int",
    ),
    (
        "learned-seed-bool",
        lambda: metrics.LearnedConceptPredictor(4, 3, seed=True),
        TypeError,
        r"seed must be an int",
    ),
    (
        "learned-seed-text",
        lambda: metrics.LearnedConceptPredictor(4, 3, seed="3"),
        TypeError,
        r"seed must be an int",
    ),
    (
        "learned-nan-features",
        lambda: _fit_features(_nan((3, 4))),
        ValueError,
        r"features \(B, n_concepts\) contain NaN or infinite values",
    ),
    (
        "paper_primary_rule-text",
        lambda: metrics.paper_primary_rule(2, "binary"),
        TypeError,
        r"available must be a list of rule names",
    ),
]

# ----------------------------------------------------------------------------- losses

LOSSES: list[tuple[str, Callable[[], object], type, str]] = [
    (
        "resize_region_masks-nan",
        lambda: losses.resize_region_masks(_masks() * NAN, (8, 8)),
        ValueError,
        r"region_masks must hold values in \[0, 1\].*NaN",
    ),
    (
        "resize_region_masks-0-255",
        lambda: losses.resize_region_masks(_masks() * 255, (8, 8)),
        ValueError,
        r"region_masks must hold values in \[0, 1\].*from 0 to 255",
    ),
    (
        "annotated_samples-nan",
        lambda: losses.annotated_samples(_masks() * NAN, torch.ones(3, dtype=torch.bool)),
        ValueError,
        r"region_masks must hold values in \[0, 1\].*NaN",
    ),
]

# ----------------------------------------------------------------------------- explainers

EXPLAINERS: list[tuple[str, Callable[[], object], type, str]] = [
    *[
        (
            f"upsample-size-{label}",
            lambda size=size: explainers.upsample(torch.rand(2, 4, 4), size),
            error,
            r"size must be \(H, W\), two positive ints",
        )
        for label, size, error in [
            ("zero", (0, 8), ValueError),
            ("negative", (-2, 8), ValueError),
            ("float", (2.5, 8), TypeError),
            ("bool", (True, 8), TypeError),
            ("one", (8,), ValueError),
            ("text", "88", TypeError),
        ]
    ],
    (
        "upsample-int-maps",
        lambda: explainers.upsample(torch.ones(2, 4, 4, dtype=torch.int64), (8, 8)),
        TypeError,
        r"maps must be a floating tensor \(B, h, w\), got dtype torch\.int64",
    ),
    (
        "minmax_normalize-list",
        lambda: explainers.minmax_normalize([[0.0, 1.0]]),
        TypeError,
        r"maps must be a floating torch\.Tensor, got list",
    ),
    (
        "minmax_normalize-bool",
        lambda: explainers.minmax_normalize(torch.ones(2, 4, 4, dtype=torch.bool)),
        TypeError,
        r"maps must be a floating torch\.Tensor, got torch\.bool",
    ),
    (
        "otsu-nan",
        lambda: explainers.otsu_threshold(_nan((2, 8, 8))),
        ValueError,
        r"otsu_threshold got NaN or infinite values",
    ),
    (
        "otsu-int",
        lambda: explainers.otsu_threshold(torch.ones(2, 8, 8, dtype=torch.int64)),
        TypeError,
        r"maps must be a floating tensor",
    ),
    ("otsu-list", lambda: explainers.otsu_threshold([1.0]), TypeError, r"maps must be"),
    (
        "otsu-bins-0",
        lambda: explainers.otsu_threshold(torch.rand(2, 8, 8), bins=0),
        ValueError,
        r"bins must be an int >= 1, got 0",
    ),
    (
        "otsu-bins-1",
        lambda: explainers.otsu_threshold(torch.rand(2, 8, 8), bins=1),
        ValueError,
        r"bins must be an int >= 2",
    ),
    (
        "otsu-bins-bool",
        lambda: explainers.otsu_threshold(torch.rand(2, 8, 8), bins=True),
        TypeError,
        r"bins must be an int",
    ),
    (
        "sise_fusion-nan",
        lambda: explainers.sise_fusion(_nan((2, 2, 8, 8))),
        ValueError,
        r"sise_fusion got NaN or infinite values",
    ),
    (
        "sise_fusion-int",
        lambda: explainers.sise_fusion(torch.ones(2, 2, 8, 8, dtype=torch.int64)),
        TypeError,
        r"maps must be a floating tensor \(L, B, H, W\)",
    ),
    (
        "sise_fusion-list",
        lambda: explainers.sise_fusion([torch.rand(2, 8, 8)]),
        TypeError,
        r"maps must be a floating torch\.Tensor \(L, B, H, W\), got list",
    ),
    (
        "reduce_channels-bool",
        lambda: explainers.reduce_channels(torch.ones(2, 3, 8, 8, dtype=torch.bool)),
        TypeError,
        r"attributions must be a floating tensor",
    ),
    (
        "reduce_channels-3d",
        lambda: explainers.reduce_channels(torch.rand(3, 8, 8)),
        ValueError,
        r"attributions must have shape \(B, C, H, W\), got \(3, 8, 8\)",
    ),
    (
        "reduce_channels-none",
        lambda: explainers.reduce_channels(None),
        TypeError,
        r"attributions must be a floating torch\.Tensor",
    ),
    (
        "class_scores-int-logits",
        lambda: explainers.class_scores(torch.ones(2, 3, dtype=torch.int64), torch.tensor([0, 1])),
        TypeError,
        r"logits must be a floating tensor \(N, K\), got dtype torch\.int64",
    ),
    (
        "class_scores-nan-logits",
        lambda: explainers.class_scores(_nan((2, 3)), torch.tensor([0, 1])),
        ValueError,
        r"logits hold NaN or infinite values",
    ),
    (
        "lap_all-int-maps",
        lambda: explainers.lap_all([torch.ones(2, 8, 8, dtype=torch.int64)] * 2),
        TypeError,
        r"lap_all expects floating maps",
    ),
    (
        "rise_masks-device",
        lambda: explainers.rise_masks(4, (16, 16), grid_size=4, device="bogus"),
        ValueError,
        r"device 'bogus' is not a device",
    ),
    (
        "select_lap_map-float-target",
        lambda: explainers.select_lap_map(_lap_maps(), torch.tensor([0.0, 1.0, 2.0]), 4),
        TypeError,
        r"target must be an integer tensor of 3 class indices in \[0, 4\), got torch\.float32",
    ),
    (
        "select_lap_map-target-out-of-range",
        lambda: explainers.select_lap_map(_lap_maps(), torch.tensor([0, 1, 5]), 4),
        ValueError,
        r"target must be .* in \[0, 4\), got classes from 0 to 5",
    ),
    (
        "select_lap_map-target-list",
        lambda: explainers.select_lap_map(_lap_maps(), [0, 1, 2], 4),
        TypeError,
        r"target must be an integer tensor of 3 class indices",
    ),
    (
        "select_lap_map-num-classes",
        lambda: explainers.select_lap_map(_lap_maps(), torch.tensor([0, 1, 2]), -1),
        ValueError,
        r"num_classes must be an int >= 1, got -1",
    ),
    (
        "select_lap_map-include-common",
        lambda: explainers.select_lap_map(
            _lap_maps(), torch.tensor([0, 1, 2]), 4, include_common="no"
        ),
        TypeError,
        r"include_common must be True or False, got 'no'",
    ),
    (
        "table_order-text",
        lambda: explainers.table_order("gradcam"),
        TypeError,
        r"names must be a list of method names",
    ),
    (
        "method_facts-text",
        lambda: explainers.method_facts("lap"),
        TypeError,
        r"names must be a list of method names",
    ),
    (
        "applicability-model",
        lambda: explainers.applicability("gradcam", "resnet18"),
        TypeError,
        r"model must be an nn\.Module, got str",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(call, error, message, id=name) for name, call, error, message in METRICS]
    + [pytest.param(call, error, message, id=name) for name, call, error, message in LOSSES]
    + [pytest.param(call, error, message, id=name) for name, call, error, message in EXPLAINERS],
)
def test_metric_loss_and_explainer_helpers_name_bad_input(
    call: Callable[[], object], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------- data, models


@pytest.fixture(scope="module")
def rgb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "rgb.png"
    Image.new("RGB", (10, 10), (200, 30, 30)).save(path)
    return path


@pytest.mark.parametrize(
    ("channels", "error"),
    [(0, ValueError), (2, ValueError), (4, ValueError), (True, TypeError), ("3", TypeError)],
)
def test_load_image_refuses_channel_counts(rgb_png: Path, channels: object, error: type) -> None:
    # any count but 3 used to give a 1-channel luma image, silently
    with pytest.raises(error, match=r"channels must be 1 \(grayscale\) or 3 \(RGB\), got"):
        data.load_image(rgb_png, channels)  # type: ignore[arg-type]
    assert data.load_image(rgb_png, 3).shape == (3, 10, 10)
    assert data.load_image(rgb_png, 1).shape == (1, 10, 10)


def _first_images(n_images: object, seed: object) -> object:
    dataset = data.builtin_dataset("concepts", n_images=20, image_size=32)
    return data.first_images(dataset, n_images, seed)  # type: ignore[arg-type]


def _sam(size: object) -> object:
    return models.soft_attention_map(torch.rand(2, 4, 8, 8), size)  # type: ignore[arg-type]


DATA_MODELS: list[tuple[str, Callable[[], object], type, str]] = [
    (
        "default_normalization-bool",
        lambda: data.default_normalization(True),
        TypeError,
        r"n_channels must be 1 \(grayscale\) or 3 \(RGB\), got True",
    ),
    (
        "default_transforms-train-text",
        lambda: data.default_transforms(32, 3, train="no"),
        TypeError,
        r"train must be True or False, got 'no'",
    ),
    ("first_images-negative", lambda: _first_images(-1, 0), ValueError, r"n_images must be"),
    ("first_images-bool", lambda: _first_images(True, 0), TypeError, r"n_images must be"),
    ("first_images-seed", lambda: _first_images(3, -1), ValueError, r"seed must be an int"),
    ("first_images-seed-float", lambda: _first_images(3, 2.5), TypeError, r"seed must be"),
    (
        "masks_to_tight_boxes-list",
        lambda: data.masks_to_tight_boxes([[True, False]]),
        TypeError,
        r"masks must be a bool torch\.Tensor \(\.\.\., H, W\), got list",
    ),
    (
        "boxes_to_mask-bool",
        lambda: data.boxes_to_mask(torch.ones(1, 4, dtype=torch.bool), 8, 8),
        TypeError,
        r"boxes must hold pixel coordinates \(numbers\), got dtype torch\.bool",
    ),
    (
        "Normalize-uint8",
        lambda: models.Normalize((0.5,) * 3, (0.2,) * 3)(torch.full((1, 3, 2, 2), 200).byte()),
        TypeError,
        r"images must be a floating tensor in \[0, 1\], got dtype torch\.uint8",
    ),
    (
        "Normalize-std-inf",
        lambda: models.Normalize((0.5,), (float("inf"),)),
        ValueError,
        r"std must be > 0 and finite",
    ),
    (
        "soft_attention_map-zero",
        lambda: _sam((0, 16)),
        ValueError,
        r"size must be \(H, W\), two positive ints",
    ),
    (
        "soft_attention_map-float",
        lambda: _sam((2.5, 16)),
        TypeError,
        r"size must be \(H, W\), two positive ints",
    ),
    (
        "soft_attention_map-int",
        lambda: models.soft_attention_map(torch.ones(2, 4, 8, 8, dtype=torch.int64)),
        TypeError,
        r"activation must be a floating tensor",
    ),
    (
        "adapt_input_weight-zero",
        lambda: models.adapt_input_weight(torch.randn(8, 3, 3, 3), 0),
        ValueError,
        r"in_channels must be an int >= 1, got 0",
    ),
    (
        "adapt_input_weight-bool",
        lambda: models.adapt_input_weight(torch.randn(8, 3, 3, 3), True),
        TypeError,
        r"in_channels must be an int >= 1, got True",
    ),
    (
        "adapt_input_weight-list",
        lambda: models.adapt_input_weight([1.0], 1),
        TypeError,
        r"weight must be a floating tensor \(out, C, kh, kw\), got list",
    ),
    (
        "select_conv_layers-text",
        lambda: models.select_conv_layers("resnet18", 2),
        TypeError,
        r"backbone must be an nn\.Module, got str",
    ),
    (
        "blaify-k-negative",
        lambda: torchlap.blaify(models.SmallCNN(3), variant="bla", k=-1, input_size=32),
        ValueError,
        r"k must be an int >= 1, got -1",
    ),
    (
        "blaify-tau-nan",
        lambda: torchlap.blaify(models.SmallCNN(3), variant="bla", tau=NAN, input_size=32),
        ValueError,
        r"tau must be a finite number > 0, got nan",
    ),
    (
        "method_display_name-facts",
        lambda: report.method_display_name("gradcam", facts="GC"),
        TypeError,
        r"facts must be a mapping",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(call, error, message, id=name) for name, call, error, message in DATA_MODELS],
)
def test_data_model_and_report_helpers_name_bad_input(
    call: Callable[[], object], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


def test_plot_overlays_refuses_a_bool_alpha(tmp_path: Path) -> None:
    path = tmp_path / "overlays.png"
    with pytest.raises(TypeError, match=r"alpha must be a number in \(0, 1\], got True"):
        report.plot_overlays(
            torch.rand(1, 3, 8, 8), {"gradcam": torch.rand(1, 8, 8)}, None, None, path, alpha=True
        )
    assert not path.exists()


# ----------------------------------------------------------------------------- training helpers


def _antehoc() -> models.AnteHocModel:
    torch.manual_seed(0)
    return models.AnteHocModel(models.SmallCNN(3), eta=2)


TRAINING: list[tuple[str, Callable[[], object], type, str]] = [
    (
        "pass_one-images-list",
        lambda: models.antehoc_pass_one_loss(_antehoc(), [[0.0]], torch.tensor([0])),
        ValueError,
        r"images must be a float \(B, C, H, W\) tensor, got list",
    ),
    (
        "pass_one-images-float64",
        lambda: models.antehoc_pass_one_loss(
            _antehoc(), torch.rand(2, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1])
        ),
        TypeError,
        r"images are torch\.float64 but the model's parameters are torch\.float32",
    ),
    (
        "pass_one-targets-0d",
        lambda: models.antehoc_pass_one_loss(_antehoc(), torch.rand(2, 3, 32, 32), torch.tensor(1)),
        ValueError,
        r"a 0-d target \(no batch dim\) for 2 images; give one row per image",
    ),
    (
        "pass_one-targets-bool",
        lambda: models.antehoc_pass_one_loss(
            _antehoc(), torch.rand(2, 3, 32, 32), torch.tensor([True, False])
        ),
        TypeError,
        r"takes integer class indices or float class probabilities, got dtype torch\.bool",
    ),
    (
        "antehoc-forward-float16",
        lambda: _antehoc()(torch.rand(2, 3, 32, 32).half()),
        TypeError,
        r"images are torch\.float16 but the model's parameters are torch\.float32",
    ),
    (
        "collate_regions-tensor",
        lambda: data.collate_regions(torch.rand(2, 3)),
        TypeError,
        r"batch must be a list of sample dicts, got Tensor",
    ),
    (
        "collate_regions-tensors",
        lambda: data.collate_regions([torch.rand(3, 8, 8)]),
        TypeError,
        r"batch must be a list of sample dicts \(a dataset's items\), got \['Tensor'\]",
    ),
    (
        "output_names-model",
        lambda: output_names(models.SmallCNN(3)),
        TypeError,
        r"module must be a LapExportModule, got SmallCNN",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(call, error, message, id=name) for name, call, error, message in TRAINING],
)
def test_training_and_export_helpers_name_bad_input(
    call: Callable[[], object], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


def test_bla_maps_refuses_a_text_flag() -> None:
    model, _ = torchlap.blaify(models.SmallCNN(3), input_size=32)
    model.eval()(torch.rand(1, 3, 32, 32))
    with pytest.raises(TypeError, match=r"detach must be True or False, got 'no'"):
        models.bla_maps(model, detach="no")  # it detached the maps: bool("no") is True
    assert not models.bla_maps(model)["soft"].requires_grad
