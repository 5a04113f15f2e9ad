"""``parse_phase``'s text TRAIN:EPOCHS[:LR[:OPTIMIZER]] at its edges: two to four fields, no
more (a fifth was dropped without a word, and the fourth with it) and no fewer; EPOCHS a whole
number in ASCII digits (a decimal or an exponent is not an epoch count). A phase the model
cannot train is named by its number; the fallback optimizer is checked even when unused."""

from __future__ import annotations

import pytest

from torchlap.train.config import parse_phase

SYNTAX = r"expected TRAIN:EPOCHS\[:LR\[:OPTIMIZER\]\]"


@pytest.mark.parametrize("text", ["lap", "lap:2:1e-4:sgd:extra", "lap:2:1e-4:sgd:"])
def test_a_phase_has_two_to_four_fields(text: str) -> None:
    with pytest.raises(ValueError, match=rf"bad phase '{text}': {SYNTAX}"):
        parse_phase(text)


def test_the_four_fields_are_all_read() -> None:
    phase = parse_phase("layer4,fc:3:0.5:sgd")
    assert (phase.train, phase.epochs, phase.lr, phase.optimizer) == ("layer4,fc", 3, 0.5, "sgd")
    assert parse_phase("lap:2").epochs == 2


@pytest.mark.parametrize("epochs", ["2.5", "2.0", "1e2"])
def test_epochs_must_be_written_as_a_whole_number(epochs: str) -> None:
    with pytest.raises(ValueError, match=r"EPOCHS must be an int and LR a number"):
        parse_phase(f"lap:{epochs}")


def test_a_phase_the_model_cannot_train_is_named_by_its_number() -> None:
    from torchlap.train import PhaseConfig, TrainConfig

    config = TrainConfig(
        data="lesions", out="runs/x", model="bla-ph", lap="none", pretrained="w.safetensors",
        phases=[PhaseConfig(1), PhaseConfig(1, train="layer4")],
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"^phase 2 trains 'layer4', but --model bla-ph trains"):
        config.validate()
    config = TrainConfig(
        data="lesions",
        out="runs/x",
        lap="none",
        phases=[PhaseConfig(1), PhaseConfig(1, train="lap")],
    )
    with pytest.raises(ValueError, match=r"^phase 2 trains 'lap' but --lap none builds a model"):
        config.validate()


def test_the_fallback_optimizer_is_checked_also_when_the_text_names_its_own() -> None:
    """``torchlap train --optimizer bogus --phase lap:2:1e-4:sgd``: a bad value is refused,
    never ignored because every phase has its own."""
    with pytest.raises(ValueError, match=r"^optimizer must be one of 'adam', 'adamw', 'sgd'"):
        parse_phase("lap:2:1e-4:sgd", optimizer="bogus")
    assert parse_phase("lap:2:1e-4:sgd", optimizer="adamw").optimizer == "sgd"
