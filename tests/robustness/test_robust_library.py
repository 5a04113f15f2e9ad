"""Bad input to the library: every case raises a typed error naming what was wrong, before any
work is done (issue 16). CLI cases: test_robust_cli.py; faults: test_robust_faults.py."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import torchlap
from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d, lapify
from torchlap.data import AnnotatedFolder, image_folder, load_dataset, load_image
from torchlap.explainers import explain
from torchlap.runs import RunError, load_run

# ----------------------------------------------------------------------------- the LAP layer


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"alpha": float("inf")}, ValueError, r"alpha must be a finite float.*inf"),
        ({"alpha": float("-inf")}, ValueError, r"alpha must be a finite float.*-inf"),
        ({"alpha": float("nan")}, ValueError, r"alpha must be a finite float.*nan"),
        ({"alpha": "1"}, TypeError, r"alpha must be a finite float.*, got '1'"),
        ({"alpha": True}, TypeError, r"alpha must be a finite float.*, got True"),
        ({"eps": float("inf")}, ValueError, r"eps must be a finite float > 0.*inf"),
        ({"eps": float("nan")}, ValueError, r"eps must be a finite float > 0.*nan"),
        ({"eps": 0.0}, ValueError, r"eps must be a finite float > 0.*0\.0"),
        ({"eps": -1e-6}, ValueError, r"eps must be a finite float > 0.*-1e-06"),
        ({"eps": None}, TypeError, r"eps must be a finite float > 0.*, got None"),
    ],
)
@pytest.mark.parametrize("layer", ["LocalAttentionPool2d", "AdaptiveLocalAttentionPool2d"])
def test_lap_refuses_bad_alpha_eps(layer: str, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        if layer == "LocalAttentionPool2d":
            LocalAttentionPool2d(4, kernel_size=2, **kwargs)
        else:
            AdaptiveLocalAttentionPool2d(4, **kwargs)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (
            torch.rand(2, 4, 8, 8, dtype=torch.float16),
            r"float32 parameters but got a float.*float16",
        ),
        (torch.rand(2, 4, 8, 8).to(torch.bfloat16), r"float32 parameters.*bfloat16"),
        (torch.rand(2, 4, 8, 8, dtype=torch.float64), r"float32 parameters.*float64"),
        (torch.randint(0, 255, (2, 4, 8, 8)), r"non-floating-point torch\.int64 input"),
        (torch.randint(0, 255, (2, 4, 8, 8), dtype=torch.uint8), r"non-floating-point.*uint8"),
    ],
)
def test_lap_explains_dtype_mismatch(x: torch.Tensor, message: str) -> None:
    layer = LocalAttentionPool2d(4, kernel_size=2)
    with pytest.raises(TypeError, match=message):
        layer(x)
    assert layer.maps is None  # refused before any work


def test_lap_matching_dtype_and_autocast_work() -> None:
    layer = LocalAttentionPool2d(4, kernel_size=2).double()
    assert layer(torch.rand(1, 4, 8, 8, dtype=torch.float64)).dtype == torch.float64
    layer = LocalAttentionPool2d(4, kernel_size=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(layer(torch.rand(1, 4, 8, 8).to(torch.bfloat16)).float()).all()


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.rand(4, 8, 8), ValueError, r"expects \(B, C, H, W\) input, got shape \(4, 8, 8\)"),
        (torch.rand(1, 3, 8, 8), ValueError, r"built for 4 input channels, got an input with 3"),
    ],
)
def test_lap_refuses_bad_shapes(x: torch.Tensor, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        LocalAttentionPool2d(4, kernel_size=2)(x)


# ----------------------------------------------------------------------------- explainers


def _tiny_model(lap: bool = True) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    if lap:
        lapify(model, where="auto")
    return model.eval()


def _with(value: float, index: int) -> torch.Tensor:
    images = torch.rand(3, 3, 16, 16)
    images[index, 1, 2, 3] = value
    return images


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (_with(float("nan"), 1), r"images \[1\] \(batch indices\) hold NaN or infinite"),
        (_with(float("inf"), 2), r"images \[2\] \(batch indices\) hold NaN or infinite"),
        (_with(float("-inf"), 0), r"images \[0\] \(batch indices\) hold NaN or infinite"),
    ],
)
@pytest.mark.parametrize("method", ["gradcam", "guided_backprop", "lap"])
def test_explainers_refuse_non_finite_images(
    method: str, images: torch.Tensor, message: str
) -> None:
    model = _tiny_model()
    with pytest.raises(ValueError, match=message):
        explain(model, images, method)


@pytest.mark.parametrize(
    ("images", "target", "error", "message"),
    [
        (torch.rand(3, 16, 16), None, ValueError, r"shape \(B, C, H, W\), got \(3, 16, 16\)"),
        (torch.randint(0, 255, (2, 3, 16, 16)), None, TypeError, r"floating-point.*int64"),
        (torch.rand(0, 3, 16, 16), None, ValueError, r"empty batch"),
        ([[0.0]], None, TypeError, r"images must be a torch\.Tensor"),
        (torch.rand(2, 3, 16, 16), True, TypeError, r"got a bool"),
        (torch.rand(2, 3, 16, 16), torch.tensor([0.0, 1.0]), TypeError, r"integer classes"),
        (torch.rand(2, 3, 16, 16), torch.tensor([0, 1, 2]), ValueError, r"shape \(2,\)"),
        (torch.rand(2, 3, 16, 16), -1, ValueError, r"class index >= 0, got -1"),
        (torch.rand(2, 3, 16, 16), "cat", TypeError, r"got str"),
    ],
)
def test_explainers_refuse_bad_images_and_targets(
    images: object, target: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        explain(_tiny_model(), images, "gradcam", target=target)


@pytest.mark.parametrize("method", ["gradcam", "guided_backprop", "rise", "scorecam", "lap"])
@pytest.mark.parametrize("target", [None, 1])
def test_images_that_do_not_fit_the_model_are_named(method: str, target: int | None) -> None:
    """float64 images and a wrong channel count used to fail inside torch, the latter naming
    the one-image probe's shape (1, 1, 16, 16) instead of the user's batch."""
    options = {"n_masks": 8} if method == "rise" else {}
    model = _tiny_model()
    with pytest.raises(TypeError, match=r"images are torch\.float64 but the model's parameters "
                       r"are torch\.float32: pass images\.to\(torch\.float32\)"):  # fmt: skip
        explain(model, torch.rand(2, 3, 16, 16, dtype=torch.float64), method, target, **options)
    with pytest.raises(ValueError, match=r"images have 1 channels \(shape \(5, 1, 16, 16\)\), "
                       r"but the model's first convolution '0' takes 3"):  # fmt: skip
        explain(model, torch.rand(5, 1, 16, 16), method, target, **options)
    # the model is left as it was: eval mode, no hook
    assert not model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    # a model in float64 takes float64 images
    maps = explain(model.double(), torch.rand(2, 3, 16, 16, dtype=torch.float64), method, target,
                   **options)  # fmt: skip
    assert maps.dtype == torch.float64 and maps.shape == (2, 16, 16)


@pytest.mark.parametrize("method", ["deeplift", "rise", "guided_backprop", "gradcam", "scorecam"])
def test_out_of_range_target_is_named(method: str) -> None:
    """deeplift and rise used to fail deep inside captum/indexing (issue 16)."""
    options = {"n_masks": 8} if method == "rise" else {}
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 3\).*\[5, 5\]"):
        explain(_tiny_model(), torch.rand(2, 3, 16, 16), method, target=5, **options)


def test_explainer_option_values_are_checked_when_built() -> None:
    from torchlap.explainers import get

    model, images = _tiny_model(), torch.rand(2, 3, 16, 16)
    for bad in (float("nan"), 7, -0.1):  # Algorithm 1 compares probabilities with it
        with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
            get("lap")(model, threshold=bad)
    with pytest.raises(TypeError, match=r"threshold must be a number in \[0, 1\].*got '0.5'"):
        get("lap")(model, threshold="0.5")
    for method in ("gradcam", "scorecam", "relevance_cam"):
        with pytest.raises(ValueError, match=r"unknown layer 'nosuch'"):
            get(method)(model, layer="nosuch")  # at construction, before any image
        # a layer without a (B, C, h, w) output: named, not an internal shape error later
        with pytest.raises(
            ValueError, match=r"layer '7' outputs shape \(B, 3\); .* \(B, C, h, w\)"
        ):
            explain(model, images, method, layer="7")
    with pytest.raises(ValueError, match=r"layer '7' outputs shape \(B, 3\)"):
        get("sise")(model, layers=["7"]).check_layers(images)


def test_flags_and_sizes_are_not_coerced(tmp_path: Path, tiny_run: Path) -> None:
    """bool("no") is True and int(3.5) is 3: such values used to pass as something else."""
    from torchlap.data import load_dataset
    from torchlap.data.transforms import size_pair
    from torchlap.explainers import get
    from torchlap.layers import LocalAttentionPool2d

    with pytest.raises(TypeError, match=r"ceil_mode must be True or False, got 'no'"):
        LocalAttentionPool2d(4, 3, ceil_mode="no")
    with pytest.raises(TypeError, match=r"relu must be True or False, got 'no'"):
        get("gradcam")(_tiny_model(), relu="no")
    for bad in (3.5, (3.5, 4), "32", (0, 4)):
        with pytest.raises(ValueError, match=r"image_size must be a positive int or \(height"):
            size_pair(bad)
    assert size_pair((np.int64(3), 5)) == (3, 5)
    for name in ("a", "b"):
        _png(tmp_path / "data" / name / "0.png")
    with pytest.raises(TypeError, match=r"augment must be True or False, got 'no'"):
        load_dataset(tmp_path / "data", image_size=16, augment="no")
    with pytest.raises(ValueError, match=r"mean must be finite and std finite and positive"):
        load_dataset(tmp_path / "data", image_size=16, mean=[float("nan")])
    (tmp_path / "data" / "annotations.csv").write_text("image,label,split\na/0.png,a,train\n")
    with pytest.raises(ValueError, match=r"split_fractions must be three non-negative"):
        load_dataset(tmp_path / "data", image_size=16, split_fractions=(1.2, -0.1, -0.1))
    # a run's config.json where the run folder is expected: the folder is named
    from torchlap.runs import load_run

    with pytest.raises(ValueError, match=rf"config\.json is a file; .*\(pass {tiny_run}\)"):
        load_run(tiny_run / "config.json")
    # a run folder given as the data: named as such by train (which knows the run format),
    # and described by its entries in the data layer, not "no valid file for the classes"
    from torchlap.train import TrainConfig, fit

    with pytest.raises(ValueError, match=r"is a torchlap run folder .*not a dataset"):
        fit(TrainConfig(data=str(tiny_run), out=str(tmp_path / "run"), arch="smallcnn"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"holds no image files in class subfolders \(it holds "
                       r"checkpoints/, config\.json, "):  # fmt: skip
        load_dataset(tiny_run)


def test_unknown_method_is_named() -> None:
    with pytest.raises(ValueError, match=r"magic"):
        explain(_tiny_model(), torch.rand(1, 3, 16, 16), "magic")


# ----------------------------------------------------------------------------- data folders


def _png(path: Path, size: tuple[int, int] = (20, 16), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(np.full(shape, 128, dtype=np.uint8), mode=mode).save(path)


def _dataset(root: Path, rows: list[str], header: str = "image,label,split") -> Path:
    for name in ("a.png", "b.png", "c.png"):
        _png(root / "images" / name)
    _png(root / "masks" / "a.png")
    _png(root / "masks" / "small.png", size=(10, 10))
    (root / "annotations.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


_BOX_HEADER = "image,label,split,x_min,y_min,x_max,y_max,mask"


@pytest.mark.parametrize(
    ("header", "rows", "error", "message"),
    [
        ("", [], ValueError, r"annotations\.csv: missing column\(s\) image, label"),
        ("image,label", [], ValueError, r"annotations\.csv has a header but no rows"),
        ("image,split", ["images/a.png,train"], ValueError, r"label"),
        ("image,label,split", ["images/a.png,x,training"], ValueError, r"line 2.*training"),
        (
            "image,label,split",
            ["images/a.png,x,train", "images/nope.png,x,train"],
            FileNotFoundError,
            r"line 3: image file .*nope\.png not found",
        ),
        (
            "image,label,split",
            ["images/a.png,x,train", "images/b.png,y,val"],
            ValueError,
            r"line 3: label 'y' appears only in the val split",
        ),
        (
            "image,label,split",
            ["images/a.png,x,train", "images/a.png,x,val"],
            ValueError,
            r"line 3: image 'images/a\.png' is in split 'val' but in 'train'",
        ),
        (_BOX_HEADER, ["images/a.png,x,train,1,2,abc,4,"], ValueError, r"line 2: x_max is 'abc'"),
        (_BOX_HEADER, ["images/a.png,x,train,1,2,inf,4,"], ValueError, r"line 2: x_max.*finite"),
        (_BOX_HEADER, ["images/a.png,x,train,5,2,3,4,"], ValueError, r"line 2.*x_min=5 >= x_max"),
        (_BOX_HEADER, ["images/a.png,x,train,1,9,3,4,"], ValueError, r"line 2.*y_min=9 >= y_max"),
        (_BOX_HEADER, ["images/a.png,x,train,1,2,,4,"], ValueError, r"line 2"),
        (
            _BOX_HEADER,  # a short row: the columns past its end are missing, not empty
            ["images/a.png,x"],
            ValueError,
            r"line 2: 2 field\(s\) for the 8 header columns \(image, label, split, x_min",
        ),
        (_BOX_HEADER, ["images/a.png,x,train,1,2,3,4"], ValueError, r"line 2: 7 field\(s\)"),
        (
            _BOX_HEADER,
            ["images/a.png,x,train,1,2,30,4,"],
            ValueError,
            r"line 2: box \(1, 2, 30, 4\) lies outside image images/a\.png of width 20",
        ),
        (
            _BOX_HEADER,
            ["images/a.png,x,train,-1,2,3,4,"],
            ValueError,
            r"line 2: box \(-1, 2, 3, 4\) lies outside",
        ),
        (
            _BOX_HEADER,
            ["images/a.png,x,train,,,,,masks/nope.png"],
            FileNotFoundError,
            r"line 2: mask file .*nope\.png not found",
        ),
        (
            _BOX_HEADER,
            ["images/a.png,x,train,,,,,masks/small.png"],
            ValueError,
            r"line 2: mask masks/small\.png is 10x10 but image images/a\.png is 20x16",
        ),
    ],
)
def test_annotated_folder_names_file_and_line(
    tmp_path: Path, header: str, rows: list[str], error: type, message: str
) -> None:
    root = _dataset(tmp_path / "data", rows, header)
    with pytest.raises(error, match=message):
        AnnotatedFolder(root, split="train")


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data", ["images/a.png,x,train", "images/bad.png,x,train"])
    (root / "images" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"line 3: image file .*bad\.png is unreadable"):
        AnnotatedFolder(root, split="train")


@pytest.mark.parametrize("extra", [["masks"], ["dataset.json"], ["masks", "dataset.json"]])
def test_annotated_layout_without_csv_is_an_error(tmp_path: Path, extra: list[str]) -> None:
    """Used to be read as an ImageFolder with classes 'images' and 'masks' (issue 16)."""
    root = tmp_path / "exported"
    _png(root / "images" / "train" / "00000.png")
    for name in extra:
        if name == "masks":
            _png(root / "masks" / "train" / "00000.png")
        else:
            (root / name).write_text("{}")
    for load in (lambda: load_dataset(root, split="train"), lambda: image_folder(root)):
        with pytest.raises(FileNotFoundError, match=r"no annotations\.csv.*torchlap data check"):
            load()


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("no_such_benchmark", ValueError, r"unknown dataset 'no_such_benchmark'"),
        ("missing/folder", FileNotFoundError, r"dataset folder missing/folder does not exist"),
    ],
)
def test_unknown_dataset_names(name: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        load_dataset(name)


def test_dataset_given_a_file(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("image,label\n")
    with pytest.raises(ValueError, match=r"x\.csv is a file; a dataset is a folder"):
        load_dataset(tmp_path / "x.csv")


def test_image_folder_without_classes(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises((ValueError, FileNotFoundError), match=r"empty"):
        image_folder(tmp_path / "empty")


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, FileNotFoundError, r"image file .*x\.png not found"),
        (b"not an image", ValueError, r"x\.png is not a readable image"),
    ],
)
def test_load_image_names_the_file(
    tmp_path: Path, content: bytes | None, error: type, message: str
) -> None:
    if content is not None:
        (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(error, match=message):
        load_image(tmp_path / "x.png", 1, 16)


# ----------------------------------------------------------------------------- run folders


def _edit_config(run: Path, **changes: object) -> None:
    config = json.loads((run / "config.json").read_text())
    config.update(changes)
    (run / "config.json").write_text(json.dumps(config))


def _damage(run: Path, case: str) -> None:
    weights = run / "model.safetensors"
    if case == "format_version 99":
        _edit_config(run, format_version=99)
    elif case == "format_version text":
        _edit_config(run, format_version="2")
    elif case == "not torchlap's config":
        (run / "config.json").write_text(json.dumps({"lr": 0.1}))
    elif case == "config not JSON":
        (run / "config.json").write_text("{ not json")
    elif case == "no weights":
        weights.unlink()
    elif case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif case == "1000 bytes overwritten":
        data = bytearray(weights.read_bytes())
        data[-1000:] = b"\xff" * 1000
        weights.write_bytes(bytes(data))
    elif case == "config edited (classes)":
        config = json.loads((run / "config.json").read_text())
        config["model"]["num_classes"] = 5
        (run / "config.json").write_text(json.dumps(config))
    elif case == "weights unreadable (no integrity record)":
        config = json.loads((run / "config.json").read_text())
        del config["integrity"]
        (run / "config.json").write_text(json.dumps(config))
        weights.write_bytes(b"garbage!" * 4)
    elif case == "integrity record missing for weights":
        config = json.loads((run / "config.json").read_text())
        del config["integrity"]["model.safetensors"]
        (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("format_version 99", RunError, r"format_version 99, newer than this torchlap reads \(1\)"),
        ("format_version text", RunError, r"format_version is '2', not an integer"),
        ("not torchlap's config", RunError, r"config\.json was not written by torchlap train"),
        ("config not JSON", RunError, r"config\.json is not valid JSON"),
        ("no weights", FileNotFoundError, r"model\.safetensors does not exist: .*not finished"),
        ("truncated weights", RunError, r"model\.safetensors is damaged or was changed"),
        ("1000 bytes overwritten", RunError, r"model\.safetensors is damaged or was changed"),
        # config.json disagrees with itself: named from it alone, before the weights are read
        ("config edited (classes)", RunError, r"'classes' names 2 class\(es\) .* 5 outputs"),
        (
            "weights unreadable (no integrity record)",
            RunError,
            r"model\.safetensors is not a readable safetensors file",
        ),
        (
            "integrity record missing for weights",
            RunError,
            r"model\.safetensors: config\.json records no SHA-256",
        ),
    ],
)
def test_load_run_refuses_damaged_runs(run_copy: Path, case: str, error: type, message: str):
    _damage(run_copy, case)
    with pytest.raises(error, match=message):
        load_run(run_copy)
    with pytest.raises(error, match=message):  # the same through the package's name
        torchlap.load_run(run_copy)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, r"run folder .*nowhere does not exist"),
        (lambda p: (p.mkdir(), p)[1], r"not a torchlap run folder: no config\.json in it"),
    ],
)
def test_load_run_on_non_runs(tmp_path: Path, make, message: str) -> None:
    folder = make(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=message) as caught:
        load_run(folder)
    assert isinstance(caught.value, RunError)  # also a torchlap.RunError


def test_load_run_still_importable_from_train(tiny_run: Path) -> None:
    from torchlap.train import load_run as from_train
    from torchlap.train.run import load_run as from_run

    assert from_train is load_run and from_run is load_run and torchlap.RunError is RunError
    run = load_run(tiny_run)
    with torch.no_grad():
        assert math.isfinite(float(run.model(torch.rand(1, run.in_channels, 32, 32)).sum()))
    assert re.fullmatch(r"[0-9a-f]{64}", run.config["integrity"]["model.safetensors"]["sha256"])


def test_unreadable_data_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder the user may not list (chmod 000; simulated: the suite runs as root here)."""
    root = tmp_path / "locked"
    (root / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "cat" / "a.png")
    real_iterdir = Path.iterdir

    def iterdir(self: Path):  # type: ignore[no-untyped-def]
        if self == root:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(PermissionError, match=r"dataset folder .*locked is not readable"):
        image_folder(root)


@pytest.mark.parametrize("name", ["results.json", "report.html", "tables.md"])
def test_library_refuses_to_overwrite_a_users_file_before_any_work(
    tiny_run: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # evaluate_run, compare_runs and the demo write these names into their output folder: a
    # file of the user's there is refused (force/overwrite replaces it, and says so)
    from torchlap import demo
    from torchlap.evaluate import EvaluateOptions, compare_runs, evaluate_run

    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("mine")
    options = EvaluateOptions(methods=("gradcam",), max_images=2, max_val_images=2)
    with pytest.raises(FileExistsError, match=rf"holds {re.escape(name)}, which torchlap did not"):
        evaluate_run(tiny_run, None, out, options)
    # compare and the demo write results.json per run (OUT/<run>), none into OUT itself: a
    # user's results.json there is theirs to keep (compare used to refuse it, and under
    # --force say it replaced it)
    top_level = name != "results.json"
    if top_level:
        with pytest.raises(FileExistsError, match=rf"holds {re.escape(name)}, which torchlap"):
            compare_runs([tiny_run], None, out, options)
    nested = tmp_path / "nested"
    (nested / tiny_run.name).mkdir(parents=True)
    (nested / tiny_run.name / name).write_text("mine")
    with pytest.raises(FileExistsError, match=re.escape(str(nested / tiny_run.name))):
        compare_runs([tiny_run], None, nested, options)
    monkeypatch.setattr(demo, "fit", lambda config: pytest.fail("the demo trained first"))
    if top_level:
        with pytest.raises(
            FileExistsError, match=rf"holds {re.escape(name)}, which .* --overwrite"
        ):
            demo.run_demo(out)
    (demo_run := out / "vanilla").mkdir()
    (out / name).unlink()
    (demo_run / name).write_text("mine")
    with pytest.raises(FileExistsError, match=re.escape(str(demo_run))):
        demo.run_demo(out)
    assert sorted(p.name for p in out.rglob("*")) == sorted([name, "vanilla"])
    assert (demo_run / name).read_text() == "mine"


def test_unknown_explainer_options_are_named_with_the_accepted_ones() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"gradcam has no option\(s\) \['bogus'\]; its options"):
        explain(model, images, "gradcam", bogus=1)
    with pytest.raises(TypeError, match=r"options of 'rise' must be a dict"):
        torchlap.explainers.check_options("rise", [1])
    torchlap.explainers.check_options("rise", {"n_masks": 10})  # accepted: no error
