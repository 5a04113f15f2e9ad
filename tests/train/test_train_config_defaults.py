"""TrainConfig's defaults: those paper 000 states (appendix A: MinAR, MaxAR, IAR, Adam, the
decay coefficient, the best validation epoch; the expert loss's half of the box pixels) and,
for every other field, the default of its ``torchlap train`` option (the README's command
table documents those, tests/logs/test_logs_readme.py checks the table against the command),
so that ``TrainConfig(data=..., out=...)`` trains what ``torchlap train --data --out`` does."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from torchlap.train import PhaseConfig, TrainConfig
from torchlap.train import cli as train_cli

#: paper 000, appendix A (RSNA, weak supervision): "MinAR = 0.1, MaxAR = 0.5, IAR = 0.1";
#: "the ADAM optimizer with an initial learning rate of 10^-4 and a decay coefficient of 10^-6"
#: (the README reads the decay as weight decay); "We selected the model related to the epoch
#: with the best performance on validation data"; full supervision: "we applied the loss on
#: half of the pixels with higher importance probability within the box only"
PAPER_000_APPENDIX_A = {
    "min_ar": 0.1,
    "max_ar": 0.5,
    "iar": 0.1,
    "optimizer": "adam",
    "weight_decay": 1e-6,
    "keep_epoch": "best",
    "expert_positive_fraction": 0.5,
    "supervision": "weak",
    "use_discriminative": True,
}


def _config() -> TrainConfig:
    return TrainConfig(data="lesions", out="runs/x")


@pytest.mark.parametrize(("name", "value"), sorted(PAPER_000_APPENDIX_A.items()))
def test_defaults_are_the_settings_paper_000_states(name: str, value: object) -> None:
    assert getattr(_config(), name) == value


def test_the_default_phase_trains_everything_with_the_papers_optimizer_and_decay() -> None:
    (phase,) = _config().resolved_phases()
    assert (phase.train, phase.optimizer, phase.weight_decay) == ("all", "adam", 1e-6)
    # a phase of its own (PhaseConfig) has the defaults of the one default phase
    config, own = _config(), PhaseConfig(1)
    for name in ("lr", "optimizer", "weight_decay", "schedule", "momentum"):
        assert getattr(own, name) == getattr(config, name), name
    assert own.train == "all"


def _command_defaults() -> dict[str, object]:
    signature = inspect.signature(train_cli.train)
    return {
        name: param.default
        for name, param in signature.parameters.items()
        if param.default is not inspect.Parameter.empty
    }


def test_every_default_is_the_train_commands() -> None:
    command = _command_defaults()
    config = _config()
    # fields whose flag has another name or sense (checked below) or none of its own
    renamed = {"use_discriminative", "balanced_batches", "phases", "data_options"}
    renamed |= {"loss_weights", "concept_sets", "expert_positive_fraction",
                "concordance_threshold", "concordance_mode"}  # fmt: skip
    compared = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in renamed]
    missing = [name for name in compared if name not in command and name not in ("data", "out")]
    assert missing == [], f"fields without a train option of their name: {missing}"
    wrong = {
        name: (getattr(config, name), command[name])
        for name in compared
        if name in command and getattr(config, name) != command[name]
    }
    assert wrong == {}, "TrainConfig default != torchlap train default: " + repr(wrong)
    assert config.use_discriminative is not command["no_discriminative"]
    assert config.data_options == {} and command["data_option"] is None
    assert config.loss_weights is None and command["loss_weight"] is None
    assert config.phases == [] and command["phase"] is None
