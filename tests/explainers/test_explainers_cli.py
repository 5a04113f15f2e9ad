"""`torchlap explain`: one PNG figure and one .npz per image, for a trained run."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.train import TrainConfig, fit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    config = TrainConfig(
        data="lesions", out=str(tmp_path_factory.mktemp("run") / "ws"), arch="smallcnn",
        lap="auto", supervision="weak", epochs=1, n_images=60, image_size=32, batch_size=16,
        progress_bar=False,
    )  # fmt: skip
    return fit(config)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images" / "positive"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        pixels = (generator.random((40, 40)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return tmp_path / "images"


def test_explain_writes_figures_and_maps(run_dir, image_folder, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["explain", str(image_folder), "--run", str(run_dir), "--methods", "lap,gradcam",
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for stem in ("a", "b"):  # names mirror the paths under the folder named
        with Image.open(out / "positive" / f"{stem}.png") as figure:
            assert figure.width > 300 and figure.height > 200
            pixels = np.asarray(figure.convert("L"), dtype=np.float64)
        assert pixels.std() > 5  # not blank
        arrays = np.load(out / "positive" / f"{stem}.npz")
        assert arrays["lap"].shape == (32, 32) and arrays["gradcam"].shape == (32, 32)
        assert any(key.startswith("lap_concepts/") for key in arrays.files)
        assert np.isfinite(arrays["gradcam"]).all()


def test_explain_refuses_bad_input_before_writing(run_dir, image_folder, tmp_path):
    runner = CliRunner()
    out = tmp_path / "nothing"
    bad_method = runner.invoke(
        app, ["explain", str(image_folder), "--run", str(run_dir), "--methods", "magic",
              "--out", str(out)],
    )  # fmt: skip
    assert bad_method.exit_code == 2 and "unknown method" in bad_method.output
    missing = runner.invoke(app, ["explain", str(tmp_path / "nope.png"), "--run", str(run_dir),
                                  "--out", str(out)])  # fmt: skip
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "notes.txt").write_text("hello")
    not_image = runner.invoke(app, ["explain", str(tmp_path / "notes.txt"), "--run", str(run_dir),
                                    "--out", str(out)])  # fmt: skip
    assert not_image.exit_code == 2 and "not an image file" in not_image.output
    assert not out.exists()
