"""Optional compiled CPU kernels, built on first use (plain C + OpenMP, called with ctypes).

Why C and ctypes rather than a PyTorch C++ extension: the kernels need no PyTorch headers, so a
build takes about a second with the system C compiler (``$CC``, else ``cc``/``gcc``/``clang``)
instead of a minute, and nothing is compiled at ``pip install`` time. The shared library is
cached in ``$TORCHLAP_EXT_DIR`` (default ``~/.cache/torchlap/ext``), keyed by the source, the
compiler and the CPU's instruction-set flags, and written through
:func:`torchlap.io.atomic_path` (temp file, then a rename), so concurrent processes are safe;
the temporary file of a killed build is removed by the next one.
The library holds the weighted window sums of LAP's pooling and the fused LAP layer (scorer,
Eq. 4 and Eq. 1 in one call each way, ``lap_layer.c``, used by
:func:`torchlap.layers.fused.fused_lap_layer`).
When no compiler works the callers use their pure-PyTorch path; that is logged once.
``TORCHLAP_NO_EXT=1`` turns the kernels off. The fused layer's vectors are 64 bytes where the
compiler targets AVX-512 and 32 (AVX2) elsewhere; ``TORCHLAP_EXT_VECTOR_BYTES=32`` or ``64``
forces one (:func:`kernel_library` builds either, for tests and ``benchmarks/kernel_ab.py``).
CUDA (and any non-CPU) tensors always take the pure-PyTorch path.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from torchlap.io import atomic_path, clean_stale_temps

logger = logging.getLogger(__name__)

__all__ = [
    "LapGeometry",
    "LapLayerSpec",
    "cache_dir",
    "check_status",
    "declare",
    "kernel_library",
    "kernel_status",
    "kernel_work_peak",
    "lap_kernels",
    "pooling_path",
    "recorded_calls",
]

_SOURCE = Path(__file__).with_name("lap_cpu.c")
# included by lap_cpu.c (the fused LAP layer); part of the cache key
_HEADERS = (Path(__file__).with_name("lap_layer.c"),)
_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-fPIC", "-shared", "-std=c11"]
_ABI_VERSION = 7
VECTOR_BYTES = (32, 64)
_lock = threading.Lock()
_state: dict[str, object] = {}


class LapGeometry(ctypes.Structure):
    """The ``lap_geometry`` struct of ``lap_cpu.c``."""

    _fields_ = [
        (name, ctypes.c_int64)
        for name in ("B", "C", "H", "W", "Ho", "Wo", "kh", "kw", "sh", "sw", "ph", "pw")
    ]


class LapLayerSpec(ctypes.Structure):
    """The ``lap_layer_spec`` struct of ``lap_cpu.c`` (the scorer of a fused LAP layer)."""

    _fields_ = [
        ("hidden", ctypes.c_int64),
        ("concepts", ctypes.c_int64),
        ("aggregation", ctypes.c_int64),
        ("global_pool", ctypes.c_int64),
        ("tiles", ctypes.c_int64),
    ]


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    """The folder of the built kernel libraries: ``$TORCHLAP_EXT_DIR``, else
    ``$XDG_CACHE_HOME/torchlap/ext`` (``~/.cache/torchlap/ext``)."""
    configured = os.environ.get("TORCHLAP_EXT_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "torchlap" / "ext"


def _vector_bytes_flags(vector_bytes: int | None) -> list[str]:
    """The compiler flags of the fused layer's vector width (None: the target's own)."""
    if vector_bytes is None:
        return []
    if vector_bytes not in VECTOR_BYTES:
        raise ValueError(
            f"the kernels' vector width must be one of {VECTOR_BYTES} bytes (or unset: the "
            f"compiler's target decides), got {vector_bytes!r}"
        )
    return [f"-DLAP_VBYTES={vector_bytes}"]


def _env_vector_bytes() -> int | None:
    value = os.environ.get("TORCHLAP_EXT_VECTOR_BYTES", "").strip()
    if not value:
        return None
    if value not in {str(b) for b in VECTOR_BYTES}:
        raise ValueError(
            f"TORCHLAP_EXT_VECTOR_BYTES={value!r}: expected one of "
            f"{', '.join(str(b) for b in VECTOR_BYTES)}, or unset (the compiler's target decides)"
        )
    return int(value)


def _build(compiler: str, vector_bytes: int | None = None) -> Path:
    flags = [*_FLAGS, *_vector_bytes_flags(vector_bytes)]
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    source = b"\0".join(path.read_bytes() for path in (_SOURCE, *_HEADERS))
    key = hashlib.sha256(
        b"\0".join(
            [
                source,
                " ".join(flags).encode(),
                version.encode(),
                _cpu_flags().encode(),
                platform.machine().encode(),
            ]
        )
    ).hexdigest()[:16]
    folder = cache_dir()
    target = folder / f"lap_cpu_{key}.so"
    clean_stale_temps(folder, recursive=False)  # the temporaries of killed builds
    if target.exists():
        return target
    logger.info("torchlap: compiling the CPU LAP kernel with %s (once)", compiler)
    # the package's one atomic writer: concurrent processes each compile to their own
    # temporary file, the last rename wins, and a reader never sees a half-written library
    with atomic_path(target) as temporary:
        subprocess.run(
            [compiler, *flags, "-o", str(temporary), str(_SOURCE), "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    return target


def _load() -> ctypes.CDLL | None:
    if os.environ.get("TORCHLAP_NO_EXT", "") not in ("", "0"):
        _state["status"] = "disabled by TORCHLAP_NO_EXT"
        return None
    vector_bytes = _env_vector_bytes()  # a wrong value raises here, before any build
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc or clang)")
    return declare(ctypes.CDLL(str(_build(compiler, vector_bytes))))


def kernel_library(vector_bytes: int | None = None) -> ctypes.CDLL | None:
    """A kernel library whose fused layer uses vectors of ``vector_bytes`` (32: AVX2 width, 64:
    AVX-512; None: the compiler's target decides), built (once, cached like
    :func:`lap_kernels`'s) and loaded; None when no C compiler is found.

    For comparing the two widths on one machine (the tests run the slow references against
    both; ``benchmarks/kernel_ab.py --widths``): :func:`lap_kernels` is the library the
    layers use.
    """
    flags = _vector_bytes_flags(vector_bytes)  # a wrong width raises before any build
    compiler = _compiler()
    if compiler is None:
        return None
    key = ("width", tuple(flags))
    with _lock:
        if key not in _state:
            _state[key] = declare(ctypes.CDLL(str(_build(compiler, vector_bytes))))
    return _state[key]  # type: ignore[return-value]


def declare(library: ctypes.CDLL, accept: tuple[int, ...] = (_ABI_VERSION,)) -> ctypes.CDLL:
    """Check a loaded kernel library's ABI version and declare its functions' argument types.

    Used for the library :func:`lap_kernels` builds, and by ``benchmarks/kernel_ab.py`` for a
    build of another revision's source (compared head to head in one process), which also
    accepts version 3: the same functions, returning nothing instead of a status.
    """
    version = library.lap_abi_version()
    if version not in accept:
        raise RuntimeError(f"stale kernel library (ABI version {version}, expected {accept})")
    pointer, geometry = ctypes.c_void_p, ctypes.POINTER(LapGeometry)
    status = ctypes.c_int if version >= 4 else None
    if version >= 7:
        library.lap_work_peak.argtypes = [ctypes.c_int]
        library.lap_work_peak.restype = ctypes.c_int64
    if hasattr(library, "lap_vector_bytes"):
        library.lap_vector_bytes.restype = ctypes.c_int
    for suffix in ("f32", "f64"):
        forward = getattr(library, f"lap_forward_{suffix}")
        forward.argtypes = [pointer, pointer, pointer, geometry, ctypes.c_int]
        forward.restype = status
        backward = getattr(library, f"lap_backward_{suffix}")
        backward.argtypes = [pointer] * 5 + [geometry, ctypes.c_int64, ctypes.c_int]
        backward.restype = status
        size, threads = ctypes.c_int64, ctypes.c_int
        global_forward = getattr(library, f"lap_global_forward_{suffix}")
        global_forward.argtypes = [pointer] * 3 + [size] * 3 + [threads]
        global_forward.restype = None
        global_backward = getattr(library, f"lap_global_backward_{suffix}")
        global_backward.argtypes = [pointer] * 5 + [size] * 4 + [threads]
        global_backward.restype = None
        layer_spec = ctypes.POINTER(LapLayerSpec)
        layer_forward = getattr(library, f"lap_layer_forward_{suffix}")
        real = ctypes.c_double
        # the "conv" aggregation's weights come last (libraries before ABI 6 ignore them)
        layer_forward.argtypes = [pointer] * 10 + [geometry, layer_spec, real, real, threads]
        layer_forward.argtypes += [pointer]
        layer_forward.restype = status
        layer_backward = getattr(library, f"lap_layer_backward_{suffix}")
        layer_backward.argtypes = [pointer] * 12 + [geometry, layer_spec, real, real]
        layer_backward.argtypes += [threads, threads, pointer]
        layer_backward.restype = status
    return library


def kernel_work_peak(reset: bool = False) -> int:
    """The largest work-buffer bytes one compiled kernel call held since the last reset.

    The kernels allocate their buffers (phase planes, channel tiles, per-thread partial sums)
    with the C allocator, which PyTorch's memory profiler does not see; ``torchlap bench`` adds
    this to the profiler's peak. ``reset=True`` returns the value and starts counting again.
    0 when no kernel library is loaded (or one from before ABI version 7).
    """
    library = _state.get("library")
    if library is None or not hasattr(library, "lap_work_peak"):
        return 0
    return int(library.lap_work_peak(int(reset)))


def check_status(status: int | None, what: str, shape: Sequence[int]) -> None:
    """Raise MemoryError when a kernel call reports that it could not allocate its buffers.

    ``what`` names the call and ``shape`` its input, for the message (formatted only then: this
    runs after every kernel call).

    The windowed kernels allocate every work buffer before they compute anything and return 1
    when one allocation fails (so no output is half-written), 0 otherwise.
    """
    if status:  # 0, or None from a version-3 library (benchmarks/kernel_ab.py)
        raise MemoryError(
            f"torchlap: the CPU LAP kernel could not allocate the work buffers of {what} on "
            f"{tuple(shape)}; "
            "nothing was computed. Free memory or use a smaller batch (TORCHLAP_NO_EXT=1 "
            "selects the pure-PyTorch path)"
        )


def lap_kernels() -> ctypes.CDLL | None:
    """The compiled kernel library, or ``None`` (then use the pure-PyTorch path).

    Built and loaded on the first call; a failure is logged once and remembered.
    """
    if "library" in _state:
        return _state["library"]  # type: ignore[return-value]
    with _lock:
        if "library" not in _state:
            try:
                library = _load()
                if library is not None:
                    _state["status"] = "compiled CPU kernel"
            except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                detail = getattr(error, "stderr", "") or ""
                logger.warning(
                    "torchlap: the CPU LAP kernel is not available (%s%s); LAP uses its "
                    "pure-PyTorch path, which is slower on the CPU",
                    error,
                    f": {detail.strip()[:500]}" if detail else "",
                )
                _state["status"] = f"pure PyTorch ({error})"
                library = None
            _state["library"] = library
    return _state["library"]  # type: ignore[return-value]


def kernel_status() -> str:
    """Which path LAP's windowed pooling takes on the CPU, in words (for benchmarks and logs)."""
    library = lap_kernels()
    status = str(_state.get("status", "unknown"))
    if library is not None and hasattr(library, "lap_vector_bytes"):
        status += f" ({library.lap_vector_bytes()}-byte vectors)"
    return status


def pooling_path(device_type: str) -> str:
    """Which path LAP's windowed pooling takes on a device of type ``device_type`` (``"cpu"``,
    ``"cuda"``, ...): :func:`kernel_status` on the CPU, pure PyTorch elsewhere (the compiled
    kernels are CPU code)."""
    return kernel_status() if device_type == "cpu" else "pure PyTorch (non-CPU device)"


class _Recorder:
    """A kernel library that makes every call and keeps the arguments of each function's last
    call in ``calls`` (function name -> ctypes arguments)."""

    def __init__(self, library: ctypes.CDLL, calls: dict[str, tuple]) -> None:
        self.library, self.calls = library, calls

    def __getattr__(self, name: str):
        function = getattr(self.library, name)
        if not callable(function):
            return function

        def call(*args):
            self.calls[name] = args
            return function(*args)

        return call


@contextlib.contextmanager
def recorded_calls() -> Iterator[dict[str, tuple]]:
    """Within the block, the layers' calls into the kernel library are made as usual and the
    arguments of each function's last call kept in the yielded dict (name, e.g.
    ``lap_layer_forward_f32``, -> ctypes arguments), so that a benchmark can replay a layer's
    kernel calls alone. The library is put back when the block ends, also on an error. Nothing
    is recorded where no library is loaded (the pure-PyTorch path)."""
    library = lap_kernels()
    calls: dict[str, tuple] = {}
    if library is None:
        yield calls
        return
    _state["library"] = _Recorder(library, calls)
    try:
        yield calls
    finally:
        _state["library"] = library
