"""Atomic, strict and non-clobbering file writes (``sb3_crypto.common.files``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sb3_crypto.common.files import (
    OutputExistsError,
    atomic_path,
    claim_output_dir,
    to_strict_json,
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
