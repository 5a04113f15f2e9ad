"""Atomic files: the one writer of everything torchlap writes.

A temporary file in the target's folder (named ``.<name>.<pid>.<random>.torchlap-tmp``), fsync,
the usual file mode (0666 minus the umask), then ``os.replace``. A process killed mid-write
leaves at most such a temporary file; :func:`clean_stale_temps` (called when a command starts
writing into a folder) removes those whose process is gone.

The bottom of the package: it imports nothing of torchlap, so ``data`` and ``report`` write
through it without depending on the run-folder module (:mod:`torchlap.runs` re-exports it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_SUFFIX",
    "PinnedPath",
    "as_path",
    "atomic_folder",
    "atomic_path",
    "atomic_write",
    "atomic_write_json",
    "check_folder_path",
    "clean_stale_temps",
    "fitting_path",
    "is_stale_temp",
    "loads_strict",
    "not_a_file",
    "read_file",
    "sha256_file",
]

logger = logging.getLogger(__name__)


def _check_flag(value: object, name: str) -> None:
    """``TypeError`` unless ``value`` is a bool (a text such as ``"no"`` would read as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def as_path(path: object, name: str = "path") -> Path:
    """``path`` (a ``str`` or an ``os.PathLike``, not empty) as a ``Path``, else ``TypeError``/
    ``ValueError`` naming ``name``: ``open`` takes an int as a file descriptor (``3`` would read
    whatever file the process has open there) and ``Path("")`` is the current folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (a str or os.PathLike), got {type(path).__name__}")
    if not os.fspath(path):
        raise ValueError(f"{name} must be a path, got an empty one")
    return Path(path)


TEMP_SUFFIX = ".torchlap-tmp"
# a temporary, or the side file ONNX writes next to one (its external weights, ".data")
_TEMP_PATTERN = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + r"(\.data)?$")


def _umask() -> int:
    """The process's umask, read from ``/proc/self/status`` where Linux has it: setting it to
    read it (the portable way) opens a moment in which another thread's files get mode 0666,
    and a KeyboardInterrupt there would leave it at 0."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)  # the fallback: the strictest mask while it is being read
    try:
        return mask
    finally:
        os.umask(mask)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem allows it
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced, given the usual mode
    (0666 minus the umask) and renamed onto ``path``; on error it is removed.

    ``replace=False`` publishes with a hard link instead, which never replaces a file: one
    that someone created at ``path`` while the temporary was written raises FileExistsError
    (the temporary is removed). On a file system without hard links: a last existence check,
    then the rename (a file created between the two would still be replaced).

    For writers that need a file name (``trainer.save_checkpoint``, ``figure.savefig``).
    """
    target = as_path(path)
    _check_flag(replace, "replace")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temp_name(target)
    try:
        yield temporary
        if not temporary.is_file():
            raise OSError(f"nothing was written to {temporary} for {target}")
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        if replace:
            os.replace(temporary, target)
        else:
            _publish_new(temporary, target)
        _fsync_dir(target.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _publish_new(temporary: Path, target: Path) -> None:
    """Give ``temporary`` the name ``target`` unless ``target`` exists (FileExistsError)."""
    appeared = FileExistsError(
        errno.EEXIST,
        "exists (made while torchlap wrote, or a link to nothing); torchlap left it as it is "
        "and did not publish its file: pass overwrite to replace it, or another path",
        str(target),
    )
    try:
        os.link(temporary, target)  # atomic, and never replaces an existing file
    except FileExistsError:
        raise appeared from None
    except (OSError, AttributeError, NotImplementedError):  # no hard links here
        if os.path.lexists(target):
            raise appeared from None
        os.replace(temporary, target)
        return
    temporary.unlink()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``path`` (the usual mode, a recognisable name); on
    success it is renamed to ``path`` (which must not exist, or be an empty folder), on error
    removed with its content. A folder then appears complete or not at all."""
    target = as_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _temp_name(target)
    staging.mkdir(mode=0o777)  # the umask applies, as for any new folder
    try:
        yield staging
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        os.replace(staging, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[IO[bytes]], None],
    replace: bool = True,
) -> Path:
    """Write ``data`` (bytes, UTF-8 text, or a function filling a binary handle) to ``path``
    atomically: every file torchlap writes goes through here. Returns ``path``.
    ``replace=False``: never replace an existing file, also one created while writing
    (FileExistsError; see :func:`atomic_path`)."""
    if not isinstance(data, (bytes, bytearray, str)) and not callable(data):
        raise TypeError(
            f"atomic_write takes bytes, str or a callable, got {type(data).__name__} as data"
        )
    target = as_path(path)
    with atomic_path(target, replace) as temporary, open(temporary, "wb") as handle:
        if isinstance(data, str):
            handle.write(data.encode("utf-8"))
        elif isinstance(data, (bytes, bytearray)):
            handle.write(data)
        else:
            data(handle)
        handle.flush()
    return target


def loads_strict(text: str, what: str, keys: str = "key") -> Any:
    """JSON a user wrote (an option, a file they pass), parsed without the two liberties of
    ``json.loads``: a key repeated in one object (json keeps the last value without a word) and
    NaN/Infinity (not JSON numbers) raise a ValueError naming ``what`` (e.g. ``--ratios``);
    ``keys`` says what the keys are (``"method and option"``). Malformed JSON raises
    ``json.JSONDecodeError`` (a ValueError) as usual, and so does JSON nested deeper than
    Python's parser goes (its RecursionError)."""

    if not isinstance(text, (str, bytes, bytearray)):
        raise TypeError(f"{what} must be JSON text (a str), got {type(text).__name__}")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [key for key, _ in items]
        repeated = sorted({key for key in names if names.count(key) > 1})
        if repeated:
            raise ValueError(
                f"{what} names {', '.join(map(repr, repeated))} twice in one object; give "
                f"each {keys} once"
            )
        return dict(items)

    def constant(name: str) -> Any:
        raise ValueError(
            f"{what} holds {name}; option values take finite numbers only (NaN and Infinity "
            "are refused)"
        )

    try:
        return json.loads(text, parse_constant=constant, object_pairs_hook=pairs)
    except RecursionError:
        raise json.JSONDecodeError(
            f"{what} is nested deeper than JSON can be read here", str(text[:40]), 0
        ) from None


def atomic_write_json(path: str | os.PathLike[str], data: Any, allow_nan: bool = True) -> Path:
    """Write ``data`` as indented JSON, atomically (``allow_nan=False`` refuses NaN/inf)."""
    _check_flag(allow_nan, "allow_nan")  # json.dumps reads any value as a flag
    as_path(path)
    return atomic_write(path, json.dumps(data, indent=2, allow_nan=allow_nan) + "\n")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


#: the largest pid (``pid_t`` is a 32-bit int): a larger number is no process's
_MAX_PID = 2**31 - 1


def is_stale_temp(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named as :func:`atomic_write`'s temporary files (or the ``.data``
    side file an ONNX export writes next to one) by a process that is gone: what
    :func:`clean_stale_temps` removes. A name whose number no process can have (above
    2**31 - 1) is not torchlap's: it is not stale (``os.kill`` raised OverflowError on it)."""
    match = _TEMP_PATTERN.match(as_path(path).name)
    if match is None or int(match.group(1)) > _MAX_PID:
        return False
    return not _pid_alive(int(match.group(1)))


def clean_stale_temps(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` when its process
    was killed (only torchlap's own temp names, and the ``.data`` side file an ONNX export
    writes next to one; only when that process is gone).
    Returns the removed paths; one that cannot be removed (permissions) is logged, not counted."""
    root = as_path(folder, "folder")
    _check_flag(recursive, "recursive")
    if not root.is_dir():
        return []
    pattern = f"*{TEMP_SUFFIX}*"  # (the regular expression below keeps torchlap's names)
    candidates = root.rglob(pattern) if recursive else root.glob(pattern)
    removed = []
    for candidate in list(candidates):
        if not is_stale_temp(candidate):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        elif candidate.is_file():
            with contextlib.suppress(OSError):  # said below, as a folder that stays
                candidate.unlink(missing_ok=True)
        else:
            continue
        if os.path.lexists(candidate):
            logger.warning("could not remove %s, left by a killed process", candidate)
            continue
        removed.append(candidate)
    if removed:
        logger.info(
            "removed %d temporary file(s) left by a killed process in %s", len(removed), root
        )
    return removed


def check_folder_path(path: str | os.PathLike[str], option: str = "--out") -> None:
    """``ValueError`` naming ``option`` when ``path`` cannot become a folder because an entry
    above it is a file (creating it said only ``[Errno 20] Not a directory``, after work)."""
    path = as_path(path, option)
    above = next((p for p in path.parents if p.exists() or p.is_symlink()), None)
    if above is not None and not above.is_dir():
        raise ValueError(
            f"{option} {path} is inside {above}, which is not a folder; pass a folder path"
        )


#: the longest file or folder name, and the longest path, the usual file systems take (bytes)
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096


def fitting_path(path: str | os.PathLike[str], option: str) -> str:
    """``path`` as text, refused (``ValueError`` naming ``option``) when one of its names is
    longer than 255 bytes or the whole is longer than 4096: the file system would refuse it
    (``File name too long``) once the command is under way."""
    text = os.fspath(as_path(path, option)) if path != "" else ""
    longest = max((len(os.fsencode(name)) for name in Path(text).parts), default=0)
    if longest > MAX_NAME_BYTES or len(os.fsencode(text)) > MAX_PATH_BYTES:
        raise ValueError(
            f"{option} {text!r} is too long for a path: file and folder names take at most "
            f"{MAX_NAME_BYTES} bytes each, a path {MAX_PATH_BYTES}"
        )
    return text


def not_a_file(path: str | os.PathLike[str]) -> str | None:
    """What stands at ``path`` instead of a readable file (``"a folder"``, ``"a link to nothing
    or a link loop"``, ``"not a regular file (a pipe, socket or device)"``), for a message
    naming it; ``None`` when it is a file or nothing is there (a missing file, said otherwise).
    """
    path = as_path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "a folder"
    if path.is_symlink():
        return "a link to nothing or a link loop"
    return "not a regular file (a pipe, socket or device)" if os.path.lexists(path) else None


class PinnedPath(str):
    """A file's path (a ``str``, usable wherever one is) that also holds the SHA-256 digests
    its bytes were checked to have.

    :func:`read_file` refuses a pinned file whose bytes have another digest, so a reader that
    takes the path after a check (``build_model(pretrained=...)`` after
    :func:`torchlap.runs.pretrained_weights` checked a run's weights) loads what was checked or
    nothing: a file swapped in between is refused, not loaded. ``sha256``: one or more
    lowercase hex digests (64 characters each).
    """

    sha256: frozenset[str]

    def __new__(cls, path: str | os.PathLike[str], sha256: str | Iterable[str]) -> PinnedPath:
        try:
            digests = frozenset([sha256] if isinstance(sha256, str) else sha256)
        except TypeError:
            raise TypeError(
                "PinnedPath's sha256 must be a digest or an iterable of digests, got "
                f"{type(sha256).__name__}"
            ) from None
        bad = [d for d in digests if not isinstance(d, str) or not _SHA256.fullmatch(d)]
        if not digests or bad:
            raise ValueError(
                "PinnedPath's sha256 must be one or more SHA-256 digests (64 lowercase hex "
                "characters each), "
                f"got {sorted(map(repr, bad)) or 'none'}"
            )
        pinned = super().__new__(cls, os.fspath(as_path(path)))
        pinned.sha256 = digests
        return pinned

    def __reduce__(self) -> tuple[Any, ...]:
        return PinnedPath, (str(self), sorted(self.sha256))


_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_file(path: str | os.PathLike[str], what: str = "it") -> bytes:
    """The bytes of the file ``path``. A file that is there but cannot be read (permission
    denied, an I/O error) raises the same ``OSError`` subclass (``PermissionError``...) with a
    message naming the file and saying it cannot be read and why (``what``: what torchlap
    needs read access to, for the message); a missing file, or a folder in its place, raises
    Python's own error, which names the path. A :class:`PinnedPath` whose bytes have none of
    its digests raises ``ValueError`` (the file changed after it was checked)."""
    file = as_path(path)
    try:
        data = file.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise
    except OSError as error:
        raise type(error)(
            f"{file} cannot be read ({error.strerror or error}); torchlap needs read access to "
            f"{what}: fix the file's permissions (or restore it)"
        ) from None
    if isinstance(path, PinnedPath):
        actual = hashlib.sha256(data).hexdigest()
        if actual not in path.sha256:
            raise ValueError(
                f"{file} changed after it was checked: its SHA-256 is now {actual[:16]}..., "
                f"the checked file's was {', '.join(sorted(d[:16] for d in path.sha256))}...; "
                "nothing was loaded from it: restore the file (or check it again)"
            )
    return data


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(as_path(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
