"""One trained toy run shared by the export tests (none of them writes into it)."""

import pytest


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    from torchlap.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("export") / "run"
    config = TrainConfig(
        data="lesions", out=str(out), arch="smallcnn", epochs=1, n_images=40, image_size=32,
        batch_size=16, progress_bar=False,
    )  # fmt: skip
    return fit(config)
