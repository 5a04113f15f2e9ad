"""``--devices``: one parser (:func:`torchlap.launch.parse_devices`) for ``train`` and for
``evaluate``/``compare``; what it takes and what it refuses, with the accepted forms named."""

from __future__ import annotations

import pytest

from torchlap.launch import parse_devices, usable_cpu_cores


@pytest.mark.parametrize(
    ("devices", "allow_auto", "expected"),
    [
        ("2", False, 2),
        (" 2 ", False, 2),
        (3, False, 3),
        ("0,1", False, [0, 1]),
        ("1", True, 1),
        ("auto", True, "auto"),
        ("3,0", True, [3, 0]),
    ],
)
def test_devices_taken(devices, allow_auto, expected):
    assert parse_devices(devices, allow_auto) == expected


@pytest.mark.parametrize(
    ("devices", "allow_auto", "message"),
    [
        ("auto", False, r"must be a count \(2\) or a comma list of device ids \(0,1\), got 'auto'"),
        ("", True, r"must be 'auto', a count \(2\) or a comma list of device ids \(0,1\), got ''"),
        ("0,", False, r"comma list of device ids \(0,1\), got '0,'"),
        ("0,,1", False, r"comma list of device ids \(0,1\), got '0,,1'"),
        ("two", True, r"got 'two'"),
        ("1.5", False, r"got '1.5'"),
        ("0", False, r"--devices '0' selects no process; pass a count \(2\)"),
        (0, True, r"--devices 0 selects no process; pass 'auto', a count"),
        ("-1", False, r"'-1' names a device twice or a negative id; pass a count"),
        (-2, False, r"-2 names a device twice or a negative id"),
        ("1,1", True, r"'1,1' names a device twice or a negative id; pass 'auto'"),
    ],
)
def test_devices_refused(devices, allow_auto, message):
    with pytest.raises(ValueError, match=message):
        parse_devices(devices, allow_auto)


@pytest.mark.parametrize("devices", [True, None, 2.0, [0, 1]])
def test_devices_of_another_type_refused(devices):
    with pytest.raises(TypeError, match=r"--devices must be a count \(2\) or a comma list"):
        parse_devices(devices)


def test_usable_cpu_cores_is_a_positive_count():
    cores = usable_cpu_cores()
    assert isinstance(cores, int) and 1 <= cores <= 4096
