"""While a torchlap training bar (Lightning's RichProgressBar) is on screen, torchlap's log
lines print on the bar's console, above the bar; before it starts and once it stops, on
torchlap's own stderr console. Found through public attributes only (the bar's
``progress``, rich's ``Progress.live.is_started``), not rich's private live stack."""

from __future__ import annotations

import io
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn

from torchlap import logs


def _progress(stderr: bool) -> Progress:
    console = Console(stderr=stderr, file=io.StringIO(), force_terminal=True, width=80)
    return Progress(console=console, transient=True)


def test_the_bar_console_serves_only_while_its_display_runs() -> None:
    bar = logs._epoch_from_one_bar()
    own = logs._console()
    bar.progress = _progress(stderr=True)
    assert logs._console() is own  # created, not started
    bar.progress.start()
    try:
        assert logs._console() is bar.progress.console
    finally:
        bar.progress.stop()
    assert logs._console() is own


def test_a_bar_on_stdout_is_not_used_for_log_lines() -> None:
    """Log lines go to stderr: a bar whose console writes to stdout is left alone."""
    bar = logs._epoch_from_one_bar()
    own = logs._console()
    bar.progress = _progress(stderr=False)
    bar.progress.start()
    try:
        assert logs._console() is own
    finally:
        bar.progress.stop()


def test_log_lines_print_on_the_bar_console_during_training(rich_mode: None) -> None:
    import lightning.pytorch as pl

    seen: list[bool] = []

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(2, 1)

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            bar = trainer.progress_bar_callback
            seen.append(logs._console() is bar.progress.console)

    own = logs._console()
    callbacks, enabled = logs.lightning_progress_callbacks(True)
    assert enabled
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(8, 2)), 4)
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[*callbacks, Record()], logger=False, accelerator="cpu",
        enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    with logs.kept_rich_console():
        trainer.fit(Tiny(), data)
    assert seen == [True, True]
    assert logs._console() is own  # the bar stopped with the run
