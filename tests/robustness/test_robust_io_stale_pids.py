"""A file named as torchlap's temporary but with a number no process can have (a pid is a
32-bit int): before, ``os.kill`` raised OverflowError out of ``clean_stale_temps``, which every
writing command calls on its output folder first, so such a file stopped the command with a
traceback. Now it is not taken for torchlap's temporary: left alone, and the command goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchlap.io import clean_stale_temps, is_stale_temp


@pytest.mark.parametrize("number", [2**31, 10**20])
def test_a_temporary_name_with_a_number_no_process_has_is_left_alone(
    tmp_path: Path, number: int
) -> None:
    odd = tmp_path / f".results.json.{number}.0123abcd.torchlap-tmp"
    odd.write_text("not torchlap's")
    dead = tmp_path / f".results.json.{2**31 - 1}.0123abcd.torchlap-tmp"  # a pid, of no one
    dead.write_text("{")
    assert not is_stale_temp(odd) and is_stale_temp(dead)
    assert clean_stale_temps(tmp_path) == [dead]
    assert odd.read_text() == "not torchlap's"
