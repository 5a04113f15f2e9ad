"""``--data-option`` values by the option's kind (:mod:`torchlap.train.data_options`): the
kinds read from a dataset's constructor, ``null``/``None`` only where the option may be
``None``, a callable refused, and a dataset taking ``**kwargs`` open to further keys (JSON
values). The built-ins have no float, string, callable or open-ended option, so a probe dataset
registered for the test has them. And ``--data`` as a run records it: a built-in's name stays
a name (what ``load_dataset`` builds) beside a folder of that name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from torchlap.data.builtin import BUILTINS
from torchlap.train.data_options import (
    check_data_options,
    data_option_kinds,
    parse_data_options,
    resolve_data_source,
)

FOLDER = "some/dataset-folder"  # an annotated folder's options (read from AnnotatedFolder)


class _Probe:
    """A dataset whose first keyword is a data option, with a float, a string, a callable, a
    JSON value and ``**kwargs``."""

    def __init__(
        self,
        level: float = 1.0,
        split: str = "train",
        name: str = "probe",
        hook: Callable[[int], int] | None = None,
        weights: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.level = level


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(BUILTINS, "probe", _Probe)
    return "probe"


def test_the_kinds_are_read_from_every_keyword_of_the_constructor(probe: str) -> None:
    kinds, open_ended = data_option_kinds(probe)
    assert kinds == {
        "level": ("float", False),
        "name": ("str", False),
        "hook": ("callable", True),
        "weights": ("any", True),
    }
    assert open_ended


def test_a_callable_option_is_refused(probe: str) -> None:
    message = r"^--data-option hook=\.\.\. is a Python callable, not a data option$"
    with pytest.raises(ValueError, match=message):
        parse_data_options(probe, {"hook": "print"})
    with pytest.raises(ValueError, match=message):
        check_data_options(probe, {"hook": print})


def test_an_open_ended_dataset_takes_further_keys_as_json(probe: str) -> None:
    parsed = parse_data_options(probe, {"extra": "[1, 2]", "text": "1,2", "gone": "None"})
    assert parsed == {"extra": [1, 2], "text": "1,2", "gone": None}  # "1,2": not JSON, text
    assert check_data_options(probe, {"extra": {"a": [1]}, "weights": None}) is None


def test_a_float_option_takes_finite_numbers_and_a_string_option_its_text(probe: str) -> None:
    parsed = parse_data_options(probe, {"level": "2", "name": "7"})
    assert parsed == {"level": 2.0, "name": "7"}
    assert type(parsed["level"]) is float and type(parsed["name"]) is str
    with pytest.raises(TypeError, match=r"^--data-option level: level takes a number, got 'NaN'$"):
        parse_data_options(probe, {"level": "NaN"})


def test_null_is_read_only_where_the_option_may_be_none() -> None:
    assert parse_data_options(FOLDER, {"channels": "3"}) == {"channels": 3}
    assert parse_data_options(FOLDER, {"channels": " None "}) == {"channels": None}
    with pytest.raises(TypeError, match=r"augment takes true or false, got 'null'$"):
        parse_data_options(FOLDER, {"augment": "null"})


def test_typed_values_are_checked_against_the_kind_and_nullability() -> None:
    assert check_data_options(FOLDER, {"channels": None, "mean": [0.5, 0.5, 0.5]}) is None
    with pytest.raises(TypeError, match=r"channels takes an int or null, got '3'$"):
        check_data_options(FOLDER, {"channels": "3"})
    with pytest.raises(TypeError, match=r"augment takes true or false, got None$"):
        check_data_options(FOLDER, {"augment": None})


@pytest.mark.parametrize("text", ["[0.5, NaN, 0.25]", "[0.5, Infinity, 0.25]"])
def test_a_list_with_a_non_finite_number_is_refused(text: str) -> None:
    with pytest.raises(
        TypeError, match=r"split_fractions takes a list of numbers .*, got '\[0\.5, "
    ):
        parse_data_options("lesions", {"split_fractions": text})
    with pytest.raises(
        TypeError, match=r"split_fractions takes a list of numbers .*, got \[0\.5, "
    ):
        check_data_options("lesions", {"split_fractions": [0.5, float("nan"), 0.5]})


@pytest.mark.parametrize(
    ("key", "message"),
    [("seed", r"seed has its own flag; use --seed"), ("split", r"split=\.\.\. is not a data")],
)
def test_parsing_refuses_the_keys_before_the_values(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_data_options("lesions", {key: "7"})


def test_a_builtin_name_stays_a_name_beside_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lesions").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_data_source("lesions") == "lesions"
    assert resolve_data_source(None) is None  # not a str: as given, for the loader to name
