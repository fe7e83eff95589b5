"""Atomic, strict and non-clobbering file writes (``sb3_crypto.files``)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sb3_crypto.files import (
    OutputExistsError,
    atomic_path,
    claim_output_dir,
    to_strict_json,
    write_bytes,
    write_json,
    write_text,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("the check after writing failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_text(target, "new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_the_temporary_file_keeps_the_suffix_and_folder(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "deep" / "model.zip") as temporary:
        assert temporary.parent == tmp_path / "deep" and temporary.suffix == ".zip"
        temporary.write_bytes(b"zip")
    assert (tmp_path / "deep" / "model.zip").read_bytes() == b"zip"


def test_json_is_strict_with_null_for_undefined_numbers(tmp_path: Path) -> None:
    payload = {"sharpe": float("nan"), "calmar": np.float64("inf"), "n": np.int64(3), "x": [1.5, -math.inf]}
    text = to_strict_json(payload)
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict constant {name}"))
    assert parsed == {"sharpe": None, "calmar": None, "n": 3, "x": [1.5, None]}
    write_json(tmp_path / "m.json", payload)
    assert json.loads((tmp_path / "m.json").read_text())["sharpe"] is None


def test_output_folders_with_results_are_not_overwritten_silently(tmp_path: Path) -> None:
    out = claim_output_dir(tmp_path / "bt", ["metrics.json"], overwrite=False)
    (out / "metrics.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"metrics\.json.*--overwrite"):
        claim_output_dir(out, ["metrics.json", "equity.csv"], overwrite=False)
    assert claim_output_dir(out, ["equity.csv"], overwrite=False) == out  # unrelated files are fine
    assert claim_output_dir(out, ["metrics.json"], overwrite=True) == out
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        claim_output_dir(tmp_path / "file", ["metrics.json"], overwrite=True)


ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "sb3_crypto" / "files.py"

#: Child process: write ``target`` again and again with versions ``start, start + 1, ...`` (each a
#: full file of its 8-digit version number repeated), printing each version once it is in place;
#: with ``stall``, write half of a new version and wait to be killed.
WRITER = """
import importlib.util, itertools, sys, time
spec = importlib.util.spec_from_file_location("files", sys.argv[5])  # the leaf alone: no torch import
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
atomic_path, write_bytes = files.atomic_path, files.write_bytes
target, size, start, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print("ready", flush=True)
if mode == "stall":
    with atomic_path(target) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(b"%08d" % start * (size // 16))
            handle.flush()
            print("half", flush=True)
            time.sleep(600)
for version in itertools.count(start):
    write_bytes(target, b"%08d" % version * (size // 8))
    print(version, flush=True)
"""


def _child(code: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def _version(path: Path, size: int) -> int:
    """The version a complete file holds; fails on a torn or mixed one."""
    data = path.read_bytes()
    assert len(data) == size, f"torn file: {len(data)} of {size} bytes"
    assert data == data[:8] * (size // 8), "file mixes two versions"
    return int(data[:8])


def test_a_killed_writer_leaves_the_old_or_the_new_file_never_a_torn_one(tmp_path: Path) -> None:
    """SIGKILL a process that rewrites a 16 MiB file in a loop, at random moments, many times: the
    target is always one complete version, never older than the last one seen, and at most the
    temporary file of the write that was killed remains (the next write removes it)."""
    size = 16 << 20
    target = tmp_path / "big.bin"
    write_bytes(target, b"%08d" % 0 * (size // 8))
    rng = random.Random(0)
    last = 0
    for round_ in range(1, 13):
        child = _child(WRITER, target, size, round_ * 1000, "loop", FILES)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        child.kill()
        child.wait()
        version = _version(target, size)
        assert version >= last
        last = version
        assert len(_partials(tmp_path)) <= 1, _partials(tmp_path)
    # A kill in the middle of a write, for certain: the old file stays, the half-written temporary
    # file is all that is left, and the next write of the same target clears it away.
    child = _child(WRITER, target, size, 99_000, "stall", FILES)
    assert child.stdout is not None and [child.stdout.readline().strip() for _ in range(2)] == ["ready", "half"]
    child.kill()
    child.wait()
    assert _version(target, size) == last
    assert len(_partials(tmp_path)) == 1
    write_bytes(target, b"%08d" % 100_000 * (size // 8))
    assert _version(target, size) == 100_000 and _partials(tmp_path) == []


SAVER = """
import sys
import numpy as np
from stable_baselines3 import PPO
from sb3_crypto.files import save_model
model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [1024, 1024]}, device="cpu", n_steps=64)
print("ready", flush=True)
for version in range(1_000_000):
    model.num_timesteps = version
    save_model(model, sys.argv[1])
"""


def test_a_killed_model_save_leaves_a_loadable_model(tmp_path: Path) -> None:
    """``save_model`` under SIGKILL at random moments: the zip is always a complete model."""
    import zipfile

    from stable_baselines3 import PPO

    target = tmp_path / "model.zip"
    rng = random.Random(1)
    for _ in range(3):
        child = _child(SAVER, target)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 1.5))
        child.kill()
        child.wait()
        if target.exists():
            with zipfile.ZipFile(target) as archive:
                assert archive.testzip() is None and "policy.pth" in archive.namelist()
        assert len(_partials(tmp_path)) <= 1, _partials(tmp_path)
    assert target.exists(), "no save finished in 0.2 - 1.5 s; the test proves nothing"
    assert PPO.load(target, device="cpu").num_timesteps >= 0


def test_stale_partials_of_dead_writers_only_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = tmp_path / f".m.json.{child.pid}.abc123.partial.json"
    alive = tmp_path / f".m.json.{os.getpid()}.zzz999.partial.json"
    other = tmp_path / f".m.json.x.{child.pid}.abc.partial.json"  # the temporary file of "m.json.x"
    for path in (dead, alive, other):
        path.write_text("{")
    write_text(target, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name, "m.json"])


def test_atomic_files_get_the_usual_permissions(tmp_path: Path) -> None:
    write_text(tmp_path / "new.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    assert (tmp_path / "new.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode
    (tmp_path / "new.txt").chmod(0o640)
    write_text(tmp_path / "new.txt", "y")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
