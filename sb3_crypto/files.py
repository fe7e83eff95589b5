"""Files written so that nothing is ever torn or silently replaced.

Every file the package writes goes through :func:`atomic_path` (or one of the helpers over it): the
content is written to a temporary file in the target's own folder, flushed to disk, and renamed
over the target only once it is complete. A kill at any moment leaves either the old file or the
new one, never a partial one, and a write that fails leaves the old file untouched.
:func:`claim_output_dir` refuses to write into a folder that already holds results unless the
caller says ``overwrite``.

A process killed in the middle of a write (``SIGKILL``, power loss) leaves its temporary file
behind: ``.<name>.<pid>.<random>.partial<suffix>`` next to the target. It is harmless (nothing reads
it) and the next write of the same target removes it once the process that made it is gone.

This module is a leaf (standard library only), so every layer can write files through it, down to
``data``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

PARTIAL = ".partial"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask (read without changing it where Linux allows)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(target: Path) -> int:
    """The mode the target would get from a plain ``open(..., "w")``: its own when it exists,
    else ``0o666`` under the umask (``mkstemp`` alone would make every file private)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(target.stat().st_mode)
    return 0o666 & ~_umask()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def stale_partials(path: str | os.PathLike) -> list[Path]:
    """Temporary files of earlier writes of ``path`` whose writing process no longer runs (left by a
    kill in the middle of a write)."""
    target = Path(path)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[A-Za-z0-9_]+{re.escape(PARTIAL)}")
    if not target.parent.is_dir():
        return []
    stale = []
    for candidate in target.parent.iterdir():
        match = pattern.match(candidate.name)
        if match and not _pid_alive(int(match.group(1))):
            stale.append(candidate)
    return stale


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    The temporary file keeps ``path``'s suffix (or ``suffix``), so writers that choose a format by
    the file name (``model.save``, ``to_parquet``) behave as they would on ``path``. On an error the
    temporary file is removed and ``path`` is left as it was. Temporary files that killed writers
    left for ``path`` are removed first (see the module docstring).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_partials(target):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.",
        suffix=PARTIAL + (target.suffix if suffix is None else suffix),
        dir=target.parent,
    )
    temporary = Path(name)
    try:
        if hasattr(os, "fchmod"):
            with contextlib.suppress(OSError):
                os.fchmod(fd, _new_file_mode(target))
        os.close(fd)
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def _strict(value: Any) -> Any:
    """``value`` with NaN / inf floats (also numpy scalars) replaced by ``None`` (JSON ``null``)."""
    if isinstance(value, dict):
        return {str(key): _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalar
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def to_strict_json(payload: Any, *, indent: int | None = 2, default: Any = None) -> str:
    """Strict JSON (RFC 8259): undefined numbers (NaN, inf) become ``null`` instead of the
    ``NaN`` / ``Infinity`` literals that strict parsers refuse."""

    def convert(value: Any) -> Any:
        if hasattr(value, "tolist"):  # numpy scalars and arrays
            return value.tolist()
        if default is not None:
            return default(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(payload, default=convert)  # exotic objects first, then NaN / inf -> null
    return json.dumps(_strict(json.loads(text)), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, payload: Any, *, default: Any = None) -> Path:
    """Write ``payload`` as strict JSON to ``path`` atomically (see :func:`to_strict_json`)."""
    return write_text(path, to_strict_json(payload, default=default) + "\n")


def save_model(
    model: Any, path: str | os.PathLike, *, extra_files: Mapping[str, bytes] | None = None, **kwargs: Any
) -> Path:
    """``model.save`` (any SB3 model) made atomic; ``.zip`` is added when missing, as SB3 does.

    :param extra_files: more entries for the zip (name -> content), written with the model in the
        same atomic write; SB3's loader reads only the entries it knows and ignores them.
    """
    target = Path(path)
    if target.suffix != ".zip":
        target = target.with_name(target.name + ".zip")
    with atomic_path(target) as temporary:
        model.save(temporary, **kwargs)
        if extra_files:
            with zipfile.ZipFile(temporary, "a", compression=zipfile.ZIP_DEFLATED) as archive:
                for name, data in extra_files.items():
                    archive.writestr(name, data)
    return target


def replace_zip_entries(path: str | os.PathLike, entries: Mapping[str, bytes]) -> Path:
    """Rewrite the zip at ``path`` atomically with ``entries`` (name -> content) added, replacing
    entries of the same names; every other entry is copied unchanged."""
    source = Path(path)
    with atomic_path(source) as temporary:
        with zipfile.ZipFile(source) as old, zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as new:
            for item in old.infolist():
                if item.filename not in entries:
                    new.writestr(item, old.read(item.filename))
            for name, data in entries.items():
                new.writestr(name, data)
    return source


class OutputExistsError(FileExistsError):
    """An output folder already holds results and ``overwrite`` was not given."""


def refuse_existing(
    paths: Iterable[str | os.PathLike], *, overwrite: bool, flag: str = "--overwrite", where: str | None = None
) -> None:
    """Raise :class:`OutputExistsError` naming the files of ``paths`` that exist already, unless
    ``overwrite``; nothing is created or changed."""
    present = sorted(str(path) for path in paths if Path(path).exists())
    if present and not overwrite:
        place = f"{where} already holds results" if where else "the output exists already"
        names = [Path(path).name for path in present] if where else present
        raise OutputExistsError(
            f"{place} ({', '.join(names)}); choose another {'folder' if where else 'path'} or pass {flag} "
            "to replace them"
        )


def check_output_dir(
    folder: str | os.PathLike, names: Iterable[str], *, overwrite: bool, flag: str = "--overwrite"
) -> Path:
    """:func:`claim_output_dir` without creating the folder: refuse early, before the work whose
    results would go there."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    refuse_existing((out / name for name in names), overwrite=overwrite, flag=flag, where=str(out))
    return out


def claim_output_dir(
    folder: str | os.PathLike, names: Iterable[str], *, overwrite: bool, flag: str = "--overwrite"
) -> Path:
    """Make ``folder`` ready to receive the files ``names``; refuse when any of them exists already
    and ``overwrite`` is false, naming them and the flag that allows replacing them."""
    out = check_output_dir(folder, names, overwrite=overwrite, flag=flag)
    out.mkdir(parents=True, exist_ok=True)
    return out


__all__ = [
    "OutputExistsError",
    "atomic_path",
    "check_output_dir",
    "claim_output_dir",
    "refuse_existing",
    "replace_zip_entries",
    "save_model",
    "stale_partials",
    "to_strict_json",
    "write_bytes",
    "write_json",
    "write_text",
]
