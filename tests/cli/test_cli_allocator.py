"""The torchlap command lets glibc's malloc keep freed memory; the library does not on import."""

import ctypes
import os
import platform
import subprocess
import sys

import pytest

from torchlap import allocator, cli

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return result.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_sets_glibc_mallopt_in_a_fresh_process():
    code = "from torchlap.allocator import keep_freed_memory; print(keep_freed_memory())"
    assert run_python(code) == "True"
    assert run_python(code, TORCHLAP_KEEP_FREED_MEMORY="0") == "False"


def test_the_opt_out_calls_no_mallopt(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("mallopt must not be looked up")

    monkeypatch.setenv(allocator.KEEP_FREED_MEMORY_ENV, "0")
    monkeypatch.setattr(ctypes, "CDLL", refuse)
    assert allocator.keep_freed_memory() is False


def test_the_mmap_threshold_comes_first_and_a_refusal_stops_there(monkeypatch):
    calls = []

    class Mallopt:  # a foreign function: takes argtypes/restype, returns 1 or 0 (refused)
        def __call__(self, parameter, value):
            calls.append((parameter, value))
            return 0

    class Libc:
        mallopt = Mallopt()

    monkeypatch.delenv(allocator.KEEP_FREED_MEMORY_ENV, raising=False)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: Libc())
    assert allocator.keep_freed_memory() is False
    assert calls == [(-3, 2**31 - 1)]  # no trim threshold without the mmap threshold


def test_importing_torchlap_leaves_malloc_alone_and_the_command_sets_it(monkeypatch):
    spy = (
        "import ctypes\n"
        "opened = []\n"
        "class Spy(ctypes.CDLL):\n"
        "    def __init__(self, name, *args, **kwargs):\n"
        "        opened.append(name)\n"
        "        super().__init__(name, *args, **kwargs)\n"
        "ctypes.CDLL = Spy\n"
        "import torchlap, torchlap.explainers, torchlap.cli\n"
        "print(None in opened)\n"
    )
    assert run_python(spy) == "False"  # no CDLL(None), so no mallopt, on import
    called = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: called.append("malloc"))
    monkeypatch.setattr(cli, "app", lambda: called.append("app"))
    cli.main()
    assert called == ["malloc", "app"]
