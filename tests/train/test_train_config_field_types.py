"""TrainConfig.validate() on fields of the wrong kind, which the API fuzzer does not sweep: the
four names (``data``, ``out``, ``arch``, ``lap``) must be non-empty strings; ``concept_sets``,
``loss_weights`` and ``data_options`` dicts; ``phases`` a list of PhaseConfig; ``num_nodes`` an
int >= 1; ``devices`` as ``--devices`` takes it. A bad top-level phase setting (``--schedule``,
``--weight-decay``) without a ``--phase`` is named as the option, not as a phase's; an unknown
model is refused saying what each family is."""

from __future__ import annotations

import pytest

from torchlap.train import PhaseConfig, TrainConfig


def _config(**changes: object) -> TrainConfig:
    fields = {"data": "lesions", "out": "runs/x", **changes}
    return TrainConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["data", "out", "arch", "lap"])
@pytest.mark.parametrize("value", ["", "   ", None, 5])
def test_the_names_must_be_non_empty_strings(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be a non-empty string, got"):
        _config(**{name: value}).validate()


def test_concept_sets_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match=r"concept_sets must be a dict of ConceptSets\.to_dict"):
        _config(concept_sets=[[0], [1]]).validate()
    with pytest.raises(TypeError, match=r"^loss_weights must be a dict, got \[\('expert', 1.0\)\]"):
        _config(loss_weights=[("expert", 1.0)]).validate()


@pytest.mark.parametrize("phases", [(PhaseConfig(1),), [{"epochs": 1}], [PhaseConfig(1), "lap:1"]])
def test_phases_must_be_a_list_of_phase_configs(phases: object) -> None:
    with pytest.raises(TypeError, match=r"phases must be a list of PhaseConfig objects"):
        _config(phases=phases).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": "linear"}, r"^unknown schedule 'linear'; expected one of"),
        ({"weight_decay": -1.0}, r"^weight_decay must be a finite number >= 0, got -1.0"),
    ],
)
def test_a_bad_top_level_phase_setting_is_named_as_the_option(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**changes).validate()


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"num_nodes": 0}, ValueError, r"^num_nodes must be an int >= 1, got 0"),
        ({"num_nodes": True}, TypeError, r"^num_nodes must be an int >= 1, got True"),
        ({"data_options": [("split_fractions", [0.8, 0.1, 0.1])]}, TypeError,
         r"^data_options must be a dict, got \["),
    ],
)  # fmt: skip
def test_num_nodes_and_data_options_are_checked(changes, error, message) -> None:
    with pytest.raises(error, match=message):
        _config(**changes).validate()


def test_an_unknown_model_is_refused_with_what_each_family_is() -> None:
    message = r"^unknown model 'vit'; expected one of .*\(lap: LAP layers; .*paper 002; antehoc"
    with pytest.raises(ValueError, match=message):
        _config(model="vit").validate()


@pytest.mark.parametrize("devices", ["0,,1", "gpu", ""])
def test_devices_are_checked_by_validate_not_first_by_the_launcher(devices: str) -> None:
    with pytest.raises(ValueError, match=r"^--devices must be 'auto', a count \(2\) or a comma"):
        _config(devices=devices).validate()
