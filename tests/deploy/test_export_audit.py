"""The audit's verdict in the ONNX export: audit.json checked field by field, refused when it may be
of another model, carried in the ONNX metadata and shown by /model/info."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import onnx
import pytest

from sb3_crypto.deploy.app import create_app
from sb3_crypto.deploy.audit_info import (
    METADATA_KEYS,
    AuditError,
    check_audit_matches,
    load_audit_for,
    read_audit,
    sha256,
)
from sb3_crypto.deploy.predictor import Predictor
from sb3_crypto.export import main as export_main


def _now(offset_seconds: float = 0.0) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return moment.isoformat(timespec="seconds")


def audit_payload(audited: str, **changes) -> dict:
    payload = {
        "schema": 1,
        "verdict": "no_evidence",
        "verdict_text": "no evidence of edge",  # fields this reader does not use are allowed
        "reasons": ["null p-value 0.41 over 8 runs", "fees ate 93 % of the PnL before costs <fee churn>"],
        "figures": {"test_sharpe": 0.31, "null_p_value": 0.41, "n_null_runs": 8, "pbo": None},
        "created": _now(5),
        "model": audited,
    }
    payload.update(changes)
    return payload


def write_audit(path: Path, payload: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema": 2}, "field 'schema' is 2; this version reads schema 1"),
        ({"verdict": "maybe"}, "field 'verdict' must be one of edge, no_evidence, leak_found, untestable, got 'maybe'"),
        ({"verdict": None}, "field 'verdict' must be one of"),
        ({"reasons": "one reason"}, "field 'reasons' must be a list of strings, got str"),
        ({"reasons": ["ok", 3]}, "field 'reasons' item 1 must be a string, got int"),
        ({"figures": [1, 2]}, "field 'figures' must be an object"),
        ({"figures": {"sharpe": {"nested": 1}}}, "field 'figures' entry 'sharpe' must be a number or null"),
        ({"figures": {"sharpe": True}}, "field 'figures' entry 'sharpe' must be a number or null, got True"),
        ({"created": "yesterday"}, "field 'created' must be an ISO 8601 date and time, got 'yesterday'"),
        ({"model": ""}, "field 'model' must be the path of the audited model"),
        ({"model_sha256": "abc"}, "field 'model_sha256' must be a SHA-256 hex digest"),
    ],
)
def test_a_bad_audit_is_refused_naming_the_field(tmp_path: Path, changes: dict, message: str) -> None:
    path = write_audit(tmp_path / "audit.json", audit_payload("m.zip", **changes))
    with pytest.raises(AuditError) as error:
        read_audit(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_missing_fields_non_json_and_non_finite_figures(tmp_path: Path) -> None:
    payload = audit_payload("m.zip")
    del payload["created"]
    with pytest.raises(AuditError, match="field 'created' is missing"):
        read_audit(write_audit(tmp_path / "a.json", payload))
    with pytest.raises(AuditError, match=r"a2.json: not JSON \(line 2, column 1"):
        read_audit(write_audit(tmp_path / "a2.json", '{"schema": 1,\n]'))
    with pytest.raises(AuditError, match="entry 'test_sharpe' must be a number or null, got nan"):
        read_audit(write_audit(tmp_path / "a3.json", json.dumps(audit_payload("m.zip")).replace("0.31", "NaN")))
    with pytest.raises(AuditError, match="expected a JSON object, got list"):
        read_audit(write_audit(tmp_path / "a4.json", "[]"))
    with pytest.raises(AuditError, match="no audit file at"):
        read_audit(tmp_path / "none.json")


def test_which_audits_are_of_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "logs" / "sac" / "CryptoTrading-v0_1"
    model = run / "CryptoTrading-v0.zip"
    run.mkdir(parents=True)
    model.write_bytes(b"model weights")
    audit_json = run / "audit" / "audit.json"

    # The same file by absolute path; by a path relative to where the audit ran (any folder above it).
    assert check_audit_matches(read_audit(write_audit(audit_json, audit_payload(str(model)))), model) is None
    monkeypatch.chdir(run)  # the export runs elsewhere than the audit did
    relative = audit_payload("logs/sac/CryptoTrading-v0_1/CryptoTrading-v0.zip")
    assert check_audit_matches(read_audit(write_audit(audit_json, relative)), model) is None
    # Another file.
    (run / "other.zip").write_bytes(b"other weights")
    audit = read_audit(write_audit(audit_json, audit_payload(str(run / "other.zip"))))
    assert check_audit_matches(audit, model) == f"it audited {run / 'other.zip'}, not {model}"
    # The model file was replaced after the audit (retrained in the same place).
    stale = read_audit(write_audit(audit_json, audit_payload(str(model), created=_now(-3600))))
    assert "was changed" in check_audit_matches(stale, model) and "after the audit" in stale.mismatch
    # The file's digest decides when the audit recorded it, wherever the model was moved.
    digest = sha256(model)
    moved = read_audit(write_audit(audit_json, audit_payload("/gone/x.zip", model_sha256=digest, created=_now(-3600))))
    assert check_audit_matches(moved, model) is None
    wrong = read_audit(write_audit(audit_json, audit_payload(str(model), model_sha256="0" * 64)))
    assert "SHA-256" in check_audit_matches(wrong, model)

    # Found beside the model, an audit of another model is refused; named explicitly, it is kept with the reason.
    write_audit(audit_json, audit_payload(str(run / "other.zip")))
    with pytest.raises(
        AuditError, match=r"is not an audit of this model: it audited .*other.zip.*--audit .*--no-audit"
    ):
        load_audit_for(model)
    assert load_audit_for(model, audit_json).mismatch.startswith("it audited")
    # The model's own audit folder (--model) comes before the run's (--run); none at all is fine.
    own = write_audit(run / "CryptoTrading-v0_audit" / "audit.json", audit_payload(str(model), verdict="edge"))
    assert load_audit_for(model).path == own
    assert load_audit_for(tmp_path / "lonely.zip") is None


def test_export_embeds_the_audit_and_model_info_shows_it(
    tmp_path: Path, trained, capsys: pytest.CaptureFixture
) -> None:
    model, env_id = trained("sac_gsde")
    run = tmp_path / "logs" / "sac" / f"{env_id}_1"
    (run / env_id).mkdir(parents=True)
    (run / env_id / "config.yml").write_text("env_kwargs:\n  window_size: 16\n  episode_length: 64\n")
    model_path = run / f"{env_id}.zip"
    model.save(model_path)
    write_audit(run / "audit" / "audit.json", audit_payload(str(model_path)))
    out = tmp_path / "agent.onnx"
    summary = export_main(["--model", str(model_path), "--out", str(out), "--n-obs", "32"])
    assert summary["ok"] and summary["audit"]["verdict"] == "no_evidence"
    assert "embedded the audit's verdict 'no_evidence'" in capsys.readouterr().out

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["sb3_crypto.audit.verdict"] == "no_evidence"
    assert json.loads(meta["sb3_crypto.audit.reasons"])[1].endswith("<fee churn>")
    assert json.loads(meta["sb3_crypto.audit.figures"]) == {
        "test_sharpe": 0.31,
        "null_p_value": 0.41,
        "n_null_runs": 8,
        "pbo": None,
    }
    assert meta["sb3_crypto.audit.created"] == read_audit(run / "audit" / "audit.json").created
    assert METADATA_KEYS["mismatch"] not in meta

    predictor = Predictor.load(out)
    app = create_app(predictor)
    endpoint = next(route.endpoint for route in app.routes if getattr(route, "path", None) == "/model/info")
    shown = endpoint()
    assert shown["audit"] == {
        "verdict": "no_evidence",
        "reasons": audit_payload("")["reasons"],
        "figures": {"test_sharpe": 0.31, "null_p_value": 0.41, "n_null_runs": 8, "pbo": None},
        "created": meta["sb3_crypto.audit.created"],
        "model": str(model_path),
    }
    assert shown["algorithm"] == "sac"  # the model description is unchanged beside it

    # An audit of another model beside it: refused before anything is exported, one line, status 2.
    write_audit(run / f"{env_id}_audit" / "audit.json", audit_payload(str(run / "retrained.zip")))
    again = tmp_path / "again.onnx"
    with pytest.raises(SystemExit) as refused:
        export_main(["--model", str(model_path), "--out", str(again), "--n-obs", "32"])
    assert refused.value.code == 2 and "is not an audit of this model" in str(refused.value)
    assert "\n" not in str(refused.value) and not again.exists()
    # --no-audit exports without it; --audit names it explicitly (the mismatch travels with it).
    explicit = run / f"{env_id}_audit" / "audit.json"
    with pytest.raises(SystemExit, match="exclude each other"):
        export_main(["--model", str(model_path), "--out", str(again), "--audit", str(explicit), "--no-audit"])
    summary = export_main(["--model", str(model_path), "--out", str(again), "--n-obs", "32", "--audit", str(explicit)])
    assert "warning: embedding" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(again)).metadata_props}
    assert (
        meta["sb3_crypto.audit.mismatch"].startswith("it audited") and "retrained.zip" in meta["sb3_crypto.audit.model"]
    )
    assert Predictor.load(again).info["audit"]["mismatch"] == summary["audit"]["mismatch"]
    os.remove(again)
    os.remove(f"{again}.json")
    export_main(["--model", str(model_path), "--out", str(again), "--n-obs", "32", "--no-audit"])
    assert not any(p.key.startswith("sb3_crypto.audit.") for p in onnx.load(str(again)).metadata_props)
    assert "audit" not in Predictor.load(again).info
