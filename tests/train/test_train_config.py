"""TrainConfig/PhaseConfig validation and JSON round trip; samplers; the model front end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from torchlap.train import Normalize, NormalizedClassifier, PhaseConfig, SmallCNN, TrainConfig
from torchlap.train.config import parse_phase
from torchlap.train.sampling import EpochOrderSampler, ResumableBatchSampler, SeededItems


def _config(**kw) -> TrainConfig:
    return TrainConfig(data="lesions", out="runs/x", **kw)


def test_config_json_round_trip_with_phases() -> None:
    config = _config(
        phases=[PhaseConfig(2, 1e-4, "lap"), PhaseConfig(3, 1e-3, "layer4,fc", "sgd")],
        loss_weights={"concordance": 0.5},
        data_options={"split_fractions": [0.8, 0.1, 0.1]},
    )
    config.validate()
    text = json.dumps(config.to_dict())
    again = TrainConfig.from_dict(json.loads(text))
    assert again == config
    assert again.phases[1].train_targets() == ["layer4", "fc"]


def test_from_dict_refuses_unknown_keys() -> None:
    data = _config().to_dict()
    data["min_AR"] = 0.2
    with pytest.raises(ValueError, match="unknown train config keys"):
        TrainConfig.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_ar": 0.6, "max_ar": 0.5}, "must not exceed MaxAR"),
        ({"min_ar": 0.0}, r"min_ar \(MinAR\) must be a number in \(0, 1\], got 0.0"),
        ({"max_ar": 1.5}, r"max_ar \(MaxAR\) must be a number in \(0, 1\]"),
        ({"iar": -0.1}, r"iar \(IAR\) must be a number in \(0, 1\]"),
        ({"supervision": "strong"}, "unknown supervision"),
        ({"batch_size": 0}, "batch_size must be an int from 1 to 65536, got 0"),
        ({"seed": -1}, "seed must be an int from 0 to 4294967295, got -1"),
        ({"alpha": float("inf")}, "alpha must be a finite number >= 0, got inf"),
        ({"alpha": -0.5}, "alpha must be a finite number >= 0, got -0.5"),
        ({"overwrite": True, "resume": True}, "exclude each other"),
        ({"lap": "none", "phases": [PhaseConfig(1, 1e-3, "lap")]}, "without LAP layers"),
        ({"phases": [PhaseConfig(1, -1.0)]}, "phase 1: phase learning rate"),
        ({"precision": "8-bit"}, "unknown precision"),
        ({"loss_weights": {"expert": -1}}, "loss weight 'expert' must be a finite number >= 0"),
        ({"concordance_weight": float("nan")}, "concordance_weight must be a finite number >= 0"),
    ],
)
def test_bad_settings_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**changes).validate()


def test_types_are_checked() -> None:
    with pytest.raises(TypeError, match=r"image_size \(--image-size\) must be an int >= 4, got 32"):
        _config(image_size=32.0).validate()
    with pytest.raises(TypeError, match="min_ar"):
        _config(min_ar="0.1").validate()
    with pytest.raises(TypeError, match=r"seed must be an int from 0 to 4294967295, got 1\.5"):
        _config(seed=1.5).validate()
    with pytest.raises(TypeError, match=r"phase 1: phase learning rate must be a finite number"):
        _config(phases=[PhaseConfig(1, "0.1")]).validate()


def test_parse_phase() -> None:
    assert parse_phase("lap:2:1e-4") == PhaseConfig(2, 1e-4, "lap")
    assert parse_phase("layer4,fc:3:1e-3:sgd") == PhaseConfig(3, 1e-3, "layer4,fc", "sgd")
    for bad in ("lap", "lap:two", "lap:1:1e-3:rmsprop", ":1"):
        with pytest.raises(ValueError):
            parse_phase(bad)


def test_parse_phase_takes_the_settings_the_syntax_has_no_field_for() -> None:
    phase = parse_phase("layer4,fc:3:1e-3:sgd", weight_decay=0.0, schedule="constant", momentum=0.5)
    assert phase == PhaseConfig(3, 1e-3, "layer4,fc", "sgd", 0.0, "constant", 0.5)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        parse_phase("lap:2", schedule="linear")
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\)"):
        parse_phase("lap:2:1e-3:sgd", momentum=1.0)


def test_top_level_schedule_or_weight_decay_that_the_phases_would_drop_is_refused() -> None:
    # it used to be ignored without a word (the phases kept cosine and 1e-6)
    phases = [parse_phase("lap:2:1e-4"), parse_phase("layer4,fc:3:1e-3:sgd")]
    with pytest.raises(ValueError, match=r"schedule='constant' \(--schedule\) is not phase 1's "
                       r"\('cosine'\).*set it on the phases"):  # fmt: skip
        _config(phases=phases, schedule="constant").validate()
    with pytest.raises(ValueError, match=r"weight_decay=0.0 \(--weight-decay\) is not phase 1's"):
        _config(phases=phases, weight_decay=0.0).validate()
    with pytest.raises(ValueError, match=r"momentum=0.5 \(--momentum\) is not phase 1's"):
        _config(phases=phases, momentum=0.5).validate()
    # the same values on the phases (as torchlap train --phase gives them) are accepted
    same = [parse_phase(t, schedule="constant", weight_decay=0.0) for t in ("lap:2", "all:1")]
    _config(phases=same, schedule="constant", weight_decay=0.0).validate()
    _config(phases=same).validate()  # phases of their own, top level at its defaults


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan"), True, "0.9", None])
def test_momentum_must_be_a_number_in_0_1(bad: object) -> None:
    error = TypeError if isinstance(bad, (bool, str)) or bad is None else ValueError
    with pytest.raises(error, match=r"momentum must be a number in \[0, 1\) \(SGD's momentum"):
        _config(optimizer="sgd", momentum=bad).validate()
    with pytest.raises(error, match=r"phase 1: momentum must be a number in \[0, 1\)"):
        _config(phases=[PhaseConfig(1, optimizer="sgd", momentum=bad)]).validate()


def test_momentum_without_an_sgd_phase_is_refused_and_recorded_otherwise() -> None:
    with pytest.raises(ValueError, match=r"momentum=0.5 \(--momentum\) is SGD's, but no phase"):
        _config(momentum=0.5).validate()  # adam: it would be dropped
    config = _config(optimizer="sgd", momentum=0.0)
    config.validate()
    assert config.resolved_phases()[0].momentum == 0.0
    data = json.loads(json.dumps(config.to_dict()))
    assert data["momentum"] == 0.0 and TrainConfig.from_dict(data) == config
    # a config.json from before the option: SGD's momentum was 0.9
    old = _config(phases=[PhaseConfig(1, optimizer="sgd")]).to_dict()
    del old["momentum"], old["phases"][0]["momentum"]
    again = TrainConfig.from_dict(old)
    assert again.momentum == 0.9 and again.phases[0].momentum == 0.9


def test_vanilla_run_has_no_supervision() -> None:
    assert _config(lap="none", supervision="expert").effective_supervision == "none"
    assert _config(lap="auto", supervision="expert").effective_supervision == "expert"


def test_identity_ignores_execution_settings() -> None:
    a = _config(devices="2", progress_bar=True, resume=True)
    b = _config(devices="auto", num_workers=3)
    assert a.identity() == b.identity()
    assert _config(seed=1).identity() != b.identity()


# ------------------------------------------------------------------------------------------
def _batches(sampler_kw: dict, batch_size: int, epoch: int, skip: int = 0) -> list[list]:
    sampler = EpochOrderSampler(**sampler_kw)
    sampler.set_epoch(epoch)
    batches = ResumableBatchSampler(sampler, batch_size)
    if skip:
        batches.skip_batches(skip)
    return list(batches)


def test_a_config_from_before_momentum_with_phases_loads_as_it_trained() -> None:
    # before --momentum the phases ignored the top-level schedule and weight decay, which
    # config.json still recorded: such a run must load, validate and resume as it trained
    phase = PhaseConfig(epochs=2, lr=1e-4, train="lap").to_dict()
    del phase["momentum"]
    data = TrainConfig(data="lesions", out="runs/x").to_dict()
    del data["momentum"]
    data.update(phases=[phase], schedule="constant", weight_decay=0.0)
    config = TrainConfig.from_dict(data)
    config.validate()
    assert (config.schedule, config.weight_decay, config.momentum) == ("cosine", 1e-6, 0.9)
    assert [(p.schedule, p.weight_decay) for p in config.phases] == [("cosine", 1e-6)]
    # a current config keeps its values (and refuses the disagreement)
    data["momentum"] = 0.9
    with pytest.raises(ValueError, match=r"\(--weight-decay\) is not phase 1's"):
        TrainConfig.from_dict(data).validate()


def test_parse_phase_fills_lr_and_optimizer_and_refuses_unknown_settings() -> None:
    assert (parse_phase("lap:2", lr=0.1, optimizer="sgd").lr, parse_phase("lap:2").lr) == (
        0.1,
        1e-3,
    )
    assert parse_phase("lap:2:1e-4:adamw", optimizer="sgd").optimizer == "adamw"
    with pytest.raises(TypeError, match=r"unknown phase setting\(s\) \['gamma'\]; accepted"):
        parse_phase("lap:2", gamma=0.1)


def test_order_depends_only_on_seed_phase_epoch() -> None:
    kw = {"n_items": 20, "seed": 3, "phase": 1}
    assert _batches(kw, 4, 2) == _batches(kw, 4, 2)
    assert _batches(kw, 4, 2) != _batches(kw, 4, 3)
    assert _batches(kw, 4, 2) != _batches({**kw, "phase": 0}, 4, 2)
    flat = [index for batch in _batches(kw, 4, 2) for _, index in batch]
    assert sorted(flat) == list(range(20))


def test_skip_resumes_the_same_epoch_order() -> None:
    kw = {"n_items": 23, "seed": 0}
    full = _batches(kw, 5, 4)
    assert _batches(kw, 5, 4, skip=2) == full[2:]
    sampler = EpochOrderSampler(**kw)
    batches = ResumableBatchSampler(sampler, 5)
    batches.skip_batches(2)
    assert len(batches) == len(full) == math.ceil(23 / 5)
    list(batches)
    assert len(list(batches)) == len(full)  # the skip is used once


def test_ranks_split_each_global_batch() -> None:
    """Reference: with W ranks and per-rank batch b, the ranks' j-th batches together are the
    single-process j-th batch of size W*b (the DDP run sees the same samples per step)."""
    n, world, per_rank = 24, 2, 3
    single = _batches({"n_items": n, "seed": 5}, world * per_rank, 1)
    ranks = [
        _batches({"n_items": n, "seed": 5, "rank": r, "world_size": world}, per_rank, 1)
        for r in range(world)
    ]
    for j, batch in enumerate(single):
        union = sorted(pair for r in range(world) for pair in ranks[r][j])
        assert union == sorted(batch)


def test_uneven_ranks_are_padded() -> None:
    orders = [
        EpochOrderSampler(7, shuffle=False, rank=r, world_size=3).order().tolist() for r in range(3)
    ]
    assert [len(o) for o in orders] == [3, 3, 3]
    # the order 0..6 padded by its first two items to 9 = 3 ranks x 3, then interleaved
    assert orders == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]


def test_sampler_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        EpochOrderSampler(5, rank=2, world_size=2)
    with pytest.raises(ValueError, match="n_items"):
        EpochOrderSampler(0)


def test_seeded_items_make_random_transforms_repeatable() -> None:
    class Noisy:
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.rand(3) + index

    items = SeededItems(Noisy())
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    a = items[(123, 2)]
    assert torch.equal(torch.random.get_rng_state(), before)  # caller's RNG untouched
    torch.manual_seed(99)
    assert torch.equal(items[(123, 2)], a)
    assert not torch.equal(items[(124, 2)], a)


# ------------------------------------------------------------------------------------------
def test_normalize_matches_formula_per_channel() -> None:
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    x = torch.rand(2, 3, 4, 5)
    out = Normalize(mean, std)(x)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, c] - mean[c]) / std[c])
    with pytest.raises(ValueError, match="expected"):
        Normalize(mean, std)(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalize([0.0], [0.0])


def test_normalized_classifier_feeds_normalized_images() -> None:
    net = SmallCNN(3, in_channels=1)
    model = NormalizedClassifier(net, [0.5], [0.25]).eval()
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(model(x), net((x - 0.5) / 0.25))
    assert set(model.state_dict()) >= {"normalize.mean", "normalize.std"}


def test_small_cnn_shapes_and_group_norm() -> None:
    for norm in ("batch", "group"):
        model = SmallCNN(5, in_channels=2, norm=norm)
        assert model(torch.rand(3, 2, 32, 32)).shape == (3, 5)
    with pytest.raises(ValueError, match="norm"):
        SmallCNN(2, norm="layer")


@pytest.mark.parametrize("text", ["all:1_0", "all:1:1_0e-3", "all:\uff11", "all:1:inf", "all:nan"])
def test_phase_numbers_are_read_not_bent(text) -> None:
    """Before: int()/float() took "1_0" as 10 epochs, "1_0e-3" as lr 0.01, "１" as 1."""

    with pytest.raises(ValueError, match=r"EPOCHS must be an int and LR a number, in ASCII"):
        parse_phase(text)
    assert parse_phase("lap:3:.001:sgd").lr == 0.001 and parse_phase("all:2:1e-4").epochs == 2


def test_cli_json_options_refuse_a_repeated_key(tmp_path) -> None:
    """Before: json kept the last value of a repeated key in --ratios and --concept-sets."""
    from typer.testing import CliRunner

    from torchlap.cli import app

    concept_sets = tmp_path / "cs.json"
    concept_sets.write_text(
        '{"n_classes": 2, "n_concepts": 1, "mapping": {"0": [], "1": [0]}, "mapping": {}}'
    )
    base = ["train", "--data", "lesions", "--arch", "smallcnn", "--out", str(tmp_path / "r")]
    for extra, said in (
        (["--ratios", '{"0": [0.1, 0.5, 0.1], "0": [0.2, 0.6, 0.1]}'], "--ratios names '0'"),
        (["--concept-sets", str(concept_sets)], "names 'mapping' twice in one object"),
    ):
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert said in result.output
    assert not (tmp_path / "r").exists()
