"""ClassifierModule's steps without a Trainer run: the training step's loss and its refusal of
a non-finite loss (on any process), the validation refusal of non-finite outputs, the epoch
record, the best-epoch choice, the checkpoint state, the optimizers and the schedule; a
stand-in trainer that holds what the module reads (two processes' decision reduced as
Lightning's strategies do)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from torchlap.train import PhaseConfig
from torchlap.train.module import (
    ClassifierModule,
    NonFiniteLossError,
    classification_summary,
    per_class_rates,
    set_trainable,
)


class _Strategy:
    """Two processes: this one's decision and a peer's, reduced with all() or any()."""

    def __init__(self, peer: bool = True) -> None:
        self.peer = peer
        self.calls: list[tuple[bool, bool]] = []

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.calls.append((decision, all))
        return (decision and self.peer) if all else (decision or self.peer)


def _module(phases=None, peer: bool = True, epoch: int = 2, **kw) -> ClassifierModule:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    module = ClassifierModule(model, 3, None, phases or [PhaseConfig(1)], seed=1, **kw)
    module.set_phase(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25)
    module.trainer = SimpleNamespace(  # type: ignore[assignment]
        strategy=_Strategy(peer), current_epoch=epoch, global_rank=0, world_size=1,
        optimizers=[optimizer], estimated_stepping_batches=8,
    )  # fmt: skip
    return module


def _batch(n: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    return {"image": torch.rand(n, 1, 2, 2, generator=generator), "label": torch.arange(n) % 3}


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of -log softmax(logits)[label], sample by sample."""
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        total += math.log(sum(math.exp(v) for v in row)) - row[label]
    return total / len(labels)


# ------------------------------------------------------------------------- training step
def test_training_step_returns_the_cross_entropy_and_counts_the_batch() -> None:
    module = _module()
    batch = _batch()
    loss = module.training_step(batch, 0).detach()
    logits = module.model(batch["image"]).detach()
    assert float(loss) == pytest.approx(_cross_entropy(logits, batch["label"]), rel=1e-5)
    assert module._batches_done == 1
    assert module.trainer.strategy.calls == [(True, True)]
    train = module._compute("train")
    assert train["loss_cross_entropy"] == pytest.approx(float(loss), rel=1e-6)
    correct = (logits.argmax(1) == batch["label"]).float().mean()
    assert train["accuracy"] == pytest.approx(float(correct))


def test_a_non_finite_loss_stops_training_with_where_it_happened() -> None:
    module = _module(phases=[PhaseConfig(1, train="all")], epoch=2)
    with torch.no_grad():
        module.model[1].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"phase 1 \('all'\), epoch 3, batch 5 "):
        module.training_step(_batch(), 4)
    assert module._batches_done == 0


def test_a_non_finite_loss_on_another_process_stops_this_one_too() -> None:
    module = _module(peer=False)
    with pytest.raises(NonFiniteLossError, match="the training loss is not finite"):
        module.training_step(_batch(), 0)
    assert module.trainer.strategy.calls == [(True, True)]  # finite here; all() of both


# ------------------------------------------------------------------------------ validation
def test_non_finite_validation_outputs_stop_the_run_and_finite_ones_are_recorded() -> None:
    module = _module()
    module.validation_step(_batch(), 0)
    with torch.no_grad():
        module.model[1].bias[1] = float("inf")
    module.validation_step(_batch(3), 1)
    with pytest.raises(
        NonFiniteLossError,
        match=r"validation split are not finite after phase 1 \('all'\), epoch 3:",
    ):
        module.on_validation_epoch_end()
    with torch.no_grad():
        module.model[1].bias[1] = 0.0
    module._metrics("val").reset()
    for metric in module._losses("val").values():
        metric.reset()
    batch = _batch()
    module.validation_step(batch, 0)  # the flag of the diverged epoch is gone
    module.on_validation_epoch_end()
    logits = module.model(batch["image"]).detach()
    val = module._val_results
    assert val["loss_cross_entropy"] == pytest.approx(_cross_entropy(logits, batch["label"]))
    assert module.trainer.strategy.calls[-1] == (True, True)


def test_a_peer_with_non_finite_validation_outputs_stops_this_process() -> None:
    module = _module(peer=False)
    module.validation_step(_batch(), 0)
    with pytest.raises(NonFiniteLossError):
        module.on_validation_epoch_end()


def test_test_step_fills_test_results() -> None:
    module = _module()
    batch = _batch()
    module.test_step(batch, 0)
    module.on_test_epoch_end()
    logits = module.model(batch["image"]).detach()
    expected = _cross_entropy(logits, batch["label"])
    assert module.test_results["loss_cross_entropy"] == pytest.approx(expected)


def test_an_unknown_loss_term_is_not_logged() -> None:
    module = _module()
    batch = _batch()
    logits = module.model(batch["image"])
    terms = {"cross_entropy": torch.tensor(2.0), "other": torch.tensor(5.0)}
    module._update("val", terms, logits, batch["label"])
    result = module._compute("val")
    assert result["loss_cross_entropy"] == 2.0 and "loss_other" not in result


# ------------------------------------------------------------------------------ epoch end
def test_the_epoch_record_and_the_kept_best_weights() -> None:
    seen = []
    module = _module(epoch=1, keep_epoch="best", on_epoch_end=lambda h: seen.append(len(h)))
    module.training_step(_batch(), 0)
    module._val_results = {"balanced_accuracy": 0.5, "loss_cross_entropy": 1.0}
    module.on_train_epoch_end()
    record = module.history[-1]
    assert (record["phase"], record["phase_train"], record["epoch"]) == (1, "all", 2)
    assert record["global_epoch"] == 1 and record["lr"] == 0.25
    assert record["val"] == {"balanced_accuracy": 0.5, "loss_cross_entropy": 1.0}
    assert set(record["train"]) >= {"accuracy", "balanced_accuracy", "loss_cross_entropy"}
    assert module._batches_done == 0 and seen == [1] and module.best_epoch == 1
    kept = {k: v.clone() for k, v in module.model.state_dict().items()}
    with torch.no_grad():
        module.model[1].weight.add_(1.0)  # the kept copy is not the live tensor
    assert torch.equal(module._best_state["1.weight"], kept["1.weight"])
    # a worse second epoch keeps epoch 1; restoring puts its weights back
    module.training_step(_batch(), 0)
    module._val_results = {"balanced_accuracy": 0.4, "loss_cross_entropy": 0.5}
    module.on_train_epoch_end()
    assert module.best_epoch == 1 and seen == [1, 2]
    chosen = module.restore_selected_epoch()
    assert torch.equal(module.model[1].weight, kept["1.weight"])
    assert chosen["global_epoch"] == 1 and chosen["value"] == 0.5 and chosen["of_epochs"] == 2


def test_keep_last_leaves_the_weights_and_keeps_no_copy() -> None:
    module = _module()
    assert module.selected_epoch() is None
    for value in (0.5, 0.9, 0.7):
        module.training_step(_batch(), 0)
        module._val_results = {"balanced_accuracy": value}
        module.on_train_epoch_end()
    weight = module.model[1].weight.clone()
    chosen = module.restore_selected_epoch()
    assert module._best_state is None and torch.equal(module.model[1].weight, weight)
    assert chosen["keep_epoch"] == "last" and chosen["global_epoch"] == 3
    assert chosen["value"] == 0.7


def _record(epoch: int, **val: float) -> dict:
    return {"global_epoch": epoch, "phase": 1, "epoch": epoch, "val": val}


def _best(module: ClassifierModule, records: list[dict]) -> int | None:
    for record in records:
        module.history.append(record)
        if module._improves(record):
            module.best_epoch = record["global_epoch"]
    return module.best_epoch


def test_the_loss_selection_reads_the_total_loss_else_the_cross_entropy() -> None:
    by_loss = _module(keep_epoch="best", select_metric="loss")
    records = [_record(1, loss_total=0.9, loss_cross_entropy=0.1)]
    records += [_record(2, loss_total=0.5, loss_cross_entropy=0.8)]
    assert _best(by_loss, records) == 2
    assert by_loss.selected_epoch()["value"] == 0.5
    plain = _module(keep_epoch="best", select_metric="loss")
    records = [_record(1, loss_cross_entropy=0.4), _record(2, loss_cross_entropy=0.3)]
    assert _best(plain, records) == 2 and plain.selected_epoch()["value"] == 0.3
    by_ce = _module(keep_epoch="best", select_metric="cross_entropy")
    records = [_record(1, loss_total=0.9, loss_cross_entropy=0.2)]
    records += [_record(2, loss_total=0.1, loss_cross_entropy=0.3)]
    assert _best(by_ce, records) == 1 and by_ce.selected_epoch()["value"] == 0.2


def test_undefined_validation_values_never_win_and_never_block() -> None:
    """The first epoch is kept whatever; an epoch without a finite value does not replace the
    kept one; a finite value replaces a kept epoch that had none; a tie keeps the earlier."""
    module = _module(keep_epoch="best", select_metric="accuracy")
    records = [_record(1, accuracy=math.nan), _record(2, accuracy=0.4)]
    records += [_record(3), _record(4, accuracy=math.inf), _record(5, accuracy=0.4)]
    assert _best(module, records) == 2
    ties = _module(keep_epoch="best", select_metric="accuracy")
    records = [_record(1, accuracy=0.5, loss_cross_entropy=0.7)]
    records += [_record(2, accuracy=0.5, loss_cross_entropy=0.6), _record(3, accuracy=0.5)]
    assert _best(ties, records) == 2  # lower cross-entropy breaks the tie; none: infinite


def test_bad_selection_settings_and_objectives_are_refused() -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"select_metric must be one of .*, got 'f1'"):
        ClassifierModule(model, 2, None, [], 0, select_metric="f1")
    with pytest.raises(TypeError, match=r"objective must be .*, got str"):
        ClassifierModule(model, 2, "ce", [], 0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- phases, checkpoints
def test_set_phase_refuses_an_index_outside_the_phases() -> None:
    module = _module(phases=[PhaseConfig(1), PhaseConfig(2)])
    for index in (-1, 2):
        with pytest.raises(ValueError, match=r"phase index must be in \[0, 1\], got"):
            module.set_phase(index)
    module.set_phase(1)
    assert module.phase.epochs == 2


def test_set_trainable_refuses_what_is_not_a_module_or_a_phase() -> None:
    with pytest.raises(TypeError, match=r"model must be an nn\.Module, got str"):
        set_trainable("net", PhaseConfig(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="phase must be a PhaseConfig, got dict"):
        set_trainable(nn.Linear(2, 2), {"train": "all"})  # type: ignore[arg-type]


def test_the_checkpoint_state_round_trips_and_a_foreign_one_is_refused() -> None:
    module = _module(keep_epoch="best")
    module.training_step(_batch(), 0)
    module.training_step(_batch(), 1)
    module._val_results = {"balanced_accuracy": 0.5}
    module.on_train_epoch_end()
    module.training_step(_batch(), 0)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    fresh = _module(keep_epoch="best")
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.history == module.history and fresh.best_epoch == 1
    assert fresh._batches_done == 1 and fresh._resume_skip == 1
    assert torch.equal(fresh._best_state["1.weight"], module._best_state["1.weight"])
    with pytest.raises(ValueError, match="not written by torchlap train"):
        fresh.on_load_checkpoint({})
    other = _module(phases=[PhaseConfig(1), PhaseConfig(1)])
    other.set_phase(1)
    with pytest.raises(ValueError, match="belongs to phase 1, not to phase 2"):
        other.on_load_checkpoint(checkpoint)


def test_loaders_get_the_split_phase_rank_and_the_resume_skip_once() -> None:
    calls = []
    module = _module(make_loader=lambda *a: calls.append(a) or len(calls))
    module._resume_skip = 3
    module.train_dataloader()
    module.train_dataloader()
    module.val_dataloader()
    module.test_dataloader()
    assert calls == [("train", 0, 0, 1, 3), ("train", 0, 0, 1, 0), ("val", 0, 0, 1, 0),
                     ("test", 0, 0, 1, 0)]  # fmt: skip
    with pytest.raises(RuntimeError, match="without make_loader"):
        _module().val_dataloader()


# ------------------------------------------------------------------------------ optimizers
@pytest.mark.parametrize(
    ("name", "kind"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_adam_optimizers_get_the_phase_lr_and_decay(name: str, kind: type) -> None:
    phase = PhaseConfig(1, 0.03, "all", name, 0.002, "constant")
    optimizer = _module(phases=[phase]).configure_optimizers()
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.03, 0.002)


def test_the_cosine_schedule_decays_per_step_to_zero_over_the_run() -> None:
    """lr(step) = lr * (1 + cos(pi * min(step, total) / total)) / 2, total = 8 steps."""
    module = _module(phases=[PhaseConfig(1, lr=0.1)])
    config = module.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "step"
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.1 * (1 + math.cos(math.pi * min(s, 8) / 8)) / 2 for s in range(10)]
    assert rates == pytest.approx(expected, abs=1e-12)
    for steps in (0, 1):  # a run of one step (or none counted): 0.1, then 0 after it
        module.trainer.estimated_stepping_batches = steps
        config = module.configure_optimizers()
        optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------- rates
def test_per_class_rates_by_hand() -> None:
    """Rows (tp, fp, tn, fn, support): recall tp/(tp+fn), specificity tn/(tn+fp)."""
    stats = torch.tensor([[3, 1, 4, 2, 5], [0, 0, 10, 0, 0], [2, 3, 0, 0, 2], [1, 0, 1, 0, 1]])
    recall, specificity = per_class_rates(stats)
    expected_recall = torch.tensor([0.6, math.nan, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(recall, expected_recall, equal_nan=True)
    expected_specificity = torch.tensor([0.8, 1.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(specificity, expected_specificity)
    _, none = per_class_rates(torch.tensor([[4, 0, 0, 1, 5]]))
    assert math.isnan(float(none[0]))


def test_the_summary_of_three_classes_averages_the_defined_rates() -> None:
    recall = torch.tensor([0.5, math.nan, 1.0])
    specificity = torch.tensor([0.2, 0.4, math.nan])
    out = classification_summary(torch.tensor(0.6), recall, specificity)
    assert out == pytest.approx(
        {"accuracy": 0.6, "sensitivity": 0.75, "specificity": 0.3, "balanced_accuracy": 0.75}
    )


def test_a_fresh_module_skips_nothing_and_checkpoints_its_metric_states() -> None:
    calls = []
    module = _module(make_loader=lambda *a: calls.append(a))
    module.train_dataloader()
    assert calls == [("train", 0, 0, 1, 0)]
    keys = set(module.state_dict())
    for stage in ("train", "val", "test"):  # a resumed epoch reports the same numbers
        assert any(k.startswith(f"stage_metrics.{stage}_metrics.") for k in keys), stage
        assert any(k.startswith(f"stage_losses.{stage}_losses.cross_entropy") for k in keys)


def test_trained_batch_norm_stays_in_training_mode() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    module = ClassifierModule(model, 3, None, [PhaseConfig(1, train="all")], seed=0)
    module.set_phase(0)
    module.on_train_batch_start(None, 0)
    assert module.model[1].training and module._frozen_bn == []
