"""The result tables' layout decisions, each checked against the rule written out by hand:
the order of Table I's model columns, when a wide table is shown one group per table (more
than 10 value columns), the captions and notes that depend on the options, the order of the
stability noise levels and which tables ``all_tables`` keeps."""

from __future__ import annotations

from typing import Any

import pytest
from report_synthetic import metric, results_by_run

from torchlap.report.tables import (
    all_tables,
    faithfulness_table,
    lime_table,
    model_and_lap_table,
    runs_table,
    stability_table,
)

LEGEND = "'-': not computed; 'n/a': undefined (no usable sample)."


def _labels(table: Any) -> list[str]:
    return [column.label for column in table.columns]


# -------------------------------------------------------------------------------- Table I


def test_model_columns_binary_first_then_top_k_by_k_then_the_rest_as_first_seen() -> None:
    runs = {
        "a": {
            "model": {
                "auc": metric(0.5),
                "top10_accuracy": metric(0.9),
                "top2_accuracy": metric(0.7),
                "accuracy": metric(0.6),
            }
        },
        "b": {"model": {"x_score": metric(0.1), "balanced_accuracy": metric(0.6)}},
    }
    # _BINARY's order (Acc., Sens., Spec., BA) for the present ones; Top-k by the number k
    # (2 before 10, which text order would reverse); other keys last, as first seen
    assert _labels(model_and_lap_table(runs)) == [
        "Acc.",
        "BA",
        "Top-2 Acc.",
        "Top-10 Acc.",
        "auc",
        "x_score",
    ]


def test_no_runs_give_the_binary_columns_and_no_row() -> None:
    table = model_and_lap_table({})
    assert _labels(table) == ["Acc.", "Sens.", "Spec.", "BA"]  # no LAP column
    assert table.rows == ()


def test_table_one_notes_name_the_layers_and_give_the_legend() -> None:
    notes = model_and_lap_table(results_by_run()).notes
    assert notes[1] == "Accuracies in %; unique best per column in bold; " + LEGEND
    assert notes[0] == "WS-LAP: LAP_1 = layer2.pool (binary), LAP_2 = layer3.pool (binary), " + (
        "LAP_3 = avgpool (binary)."
    )


def test_table_one_is_split_from_eleven_value_columns() -> None:
    """4 model columns + 3 LAP layers x 2 = 10 columns: one table; one more key: split."""
    runs = results_by_run()
    assert len(model_and_lap_table(runs).columns) == 10
    assert not model_and_lap_table(runs).split_groups
    runs["vanilla"]["model"]["top1_accuracy"] = metric(0.9)
    assert len(model_and_lap_table(runs).columns) == 11
    assert model_and_lap_table(runs).split_groups


# -------------------------------------------------------------------------- faithfulness


def _with_ks(n: int) -> dict[str, Any]:
    """One run, one method, keep-k% agreements for the n values k = 1 .. n."""
    keep = {str(k): {"top1_vs_prediction": metric(k / 100)} for k in range(1, n + 1)}
    return {"r": {"faithfulness": {"gradcam": {"keep_top_k": keep, "drop": metric(5.0)}}}}


def test_faithfulness_is_split_from_eleven_value_columns() -> None:
    """n keep-k% columns + Drop, Increase, Win: 7 values of k make 10 columns, 8 make 11."""
    assert len(faithfulness_table(_with_ks(7)).columns) == 10
    assert not faithfulness_table(_with_ks(7)).split_groups
    assert len(faithfulness_table(_with_ks(8)).columns) == 11
    assert faithfulness_table(_with_ks(8)).split_groups


@pytest.mark.parametrize(
    ("agreement", "named"),
    [
        ("top1_vs_prediction", "top-1 agreement with the original prediction."),
        ("top5_vs_prediction", "top-5 agreement with the original prediction."),
        ("top3_vs_label", "top-3 agreement with the label."),
    ],
)
def test_the_faithfulness_caption_names_the_agreement(agreement: str, named: str) -> None:
    caption = faithfulness_table(results_by_run(), agreement).caption
    assert caption.startswith("Keeping the k% top-scored pixels (others zeroed): " + named)
    # Drop/Increase (paper 003) and Win (paper 004) measure different things: both named
    assert "Increase % (paper 003)" in caption and "Win % (paper 004)" in caption


# ----------------------------------------------------------------------------- stability


def _stability(levels: list[str], keys: tuple[str, ...] = ("change_drop",)) -> dict[str, Any]:
    entry = {level: {key: metric(1.0, False) for key in keys} for level in levels}
    return {"r": {"stability": {"gradcam": entry}}}


def test_noise_levels_in_numeric_order_then_named_ones_as_text() -> None:
    table = stability_table(_stability(["0.5", "heavy", "0.05", "1e-3", "0.1", "light"]))
    assert [column.group for column in table.columns] == [
        "Noise 1e-3",
        "Noise 0.05",
        "Noise 0.1",
        "Noise 0.5",
        "Noise heavy",
        "Noise light",
    ]


def test_stability_shows_the_known_changes_first_then_other_recorded_ones() -> None:
    runs = _stability(["0.1"], ("change_win", "change_inc"))
    runs["s"] = _stability(["0.1"], ("change_drop",))["r"]
    # only keys some entry holds; the labelled ones first (ΔDrop, ΔInc), then others as seen
    assert _labels(stability_table(runs)) == ["ΔDrop %", "ΔInc %", "change_win"]


def test_stability_is_split_from_eleven_value_columns() -> None:
    levels = [f"0.{i}" for i in range(1, 6)]  # 5 levels x (ΔDrop, ΔInc) = 10 columns
    table = stability_table(_stability(levels, ("change_drop", "change_inc")))
    assert len(table.columns) == 10 and not table.split_groups
    levels = [f"0.{i}" for i in range(1, 10)] + ["0.95", "0.99"]  # 11 levels x 1 key
    table = stability_table(_stability(levels))
    assert len(table.columns) == 11 and table.split_groups


# ---------------------------------------------------------------------- LIME, runs, all


def _lime(**changes: Any) -> dict[str, Any]:
    lime = {"bla": metric(0.5), "gradcam": metric(0.25), "patch": 8, "n_samples": 100}
    return {"r": {"lime_spearman": lime | changes}}


@pytest.mark.parametrize(
    ("grid", "cells"),
    [([4, 6], "4x6 cells of "), ([7, 7, 7], ""), (["4", "6"], ""), ([4], ""), ("4x6", "")],
)
def test_the_lime_note_names_a_grid_of_rows_by_columns(grid: Any, cells: str) -> None:
    notes = lime_table(_lime(grid=grid)).notes
    assert notes[0] == f"r: {cells}8-px patches, 100 LIME samples."


def test_the_lime_note_names_the_options_off_their_defaults() -> None:
    notes = lime_table(_lime(options={"n_segments": 9, "kernel": "x"})).notes
    assert notes[0] == "r: 8-px patches, 100 LIME samples, n_segments=9, kernel=x."


def test_the_runs_table_aligns_only_the_image_count_as_a_number() -> None:
    table = runs_table(results_by_run())
    assert [(c.label, c.numeric) for c in table.columns] == [
        ("Data", False),
        ("Split", False),
        ("Images", True),
        ("Run folder", False),
    ]
    assert "\n|:---|:---|:---|---:|:---|\n" in table.to_markdown()


def test_all_tables_leaves_out_a_table_of_dashes_only() -> None:
    """A method entry without any metric gives rows of '-' in Table II and the other
    localization table: both are left out, as a section that is absent."""
    runs = {"r": {"model": {"accuracy": metric(0.5)}, "localization": {"gradcam": {}}}}
    assert [table.id for table in all_tables(runs)] == ["table-runs", "table-model-lap"]
