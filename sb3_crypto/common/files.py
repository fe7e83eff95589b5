"""Files written so that nothing is ever torn or silently replaced.

Every file the package writes goes through :func:`atomic_path` (or one of the helpers over it): the
content is written to a temporary file in the target's own folder, flushed to disk, and renamed
over the target only once it is complete. A kill at any moment leaves either the old file or the
new one, never a partial one, and a write that fails leaves the old file untouched.
:func:`claim_output_dir` refuses to write into a folder that already holds results unless the
caller says ``overwrite``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    The temporary file keeps ``path``'s suffix (or ``suffix``), so writers that choose a format by
    the file name (``model.save``, ``to_parquet``) behave as they would on ``path``. On an error the
    temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".partial" + (target.suffix if suffix is None else suffix), dir=target.parent
    )
    os.close(fd)
    temporary = Path(name)
    try:
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


def save_model(model: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``model.save`` (any SB3 model) made atomic; ``.zip`` is added when missing, as SB3 does."""
    target = Path(path)
    if target.suffix != ".zip":
        target = target.with_name(target.name + ".zip")
    with atomic_path(target) as temporary:
        model.save(temporary, **kwargs)
    return target


class OutputExistsError(FileExistsError):
    """An output folder already holds results and ``overwrite`` was not given."""


def claim_output_dir(
    folder: str | os.PathLike, names: Iterable[str], *, overwrite: bool, flag: str = "--overwrite"
) -> Path:
    """Make ``folder`` ready to receive the files ``names``; refuse when any of them exists already
    and ``overwrite`` is false, naming them and the flag that allows replacing them."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    present = sorted(name for name in names if (out / name).exists())
    if present and not overwrite:
        raise OutputExistsError(
            f"{out} already holds results ({', '.join(present)}); choose another folder or pass {flag} to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out
