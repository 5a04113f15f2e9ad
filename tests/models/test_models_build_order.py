"""build_model checks the LAP options before it downloads or reads any weights.

Before: ``build_model("resnet18", 3, pretrained="IMAGENET1K_V1", n_concepts=0)`` downloaded the
weights (offline: an OSError naming the URL) and only then had lapify refuse ``n_concepts``.
"""

import pytest

from torchlap.models import build


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"n_concepts": 0}, ValueError, "n_concepts must be an int >= 1"),
        ({"aggregation": "magic"}, ValueError, "unknown aggregation 'magic'"),
        ({"eps": 1e-50}, ValueError, "eps must be a finite float > 0"),
        ({"lap": ["layer2.0", 3]}, TypeError, "lap must be a str, a list of module names"),
    ],
)
def test_lap_options_are_refused_before_the_weights_are_fetched(monkeypatch, options, error, match):
    fetched = []
    monkeypatch.setattr(build, "_weights", lambda *args: fetched.append(args))
    monkeypatch.setattr(build, "_weights_file", lambda *args: fetched.append(args))
    for pretrained in ("IMAGENET1K_V1", "weights/resnet18.safetensors"):
        with pytest.raises(error, match=match):
            build.build_model("resnet18", 3, pretrained=pretrained, **options)
    assert fetched == []


def test_lap_options_of_a_plain_model_are_not_checked_here():
    # lap=None builds no LAP layer: its options are unused (train refuses them elsewhere)
    model = build.build_model("resnet18", 3, lap=None, n_concepts=2)
    assert not any(type(m).__name__.startswith("Lap") for m in model.modules())
