"""The audit's verdict in the ONNX file: read ``audit.json``, check that it is of the exported model,
and carry its verdict, reasons, figures and date in the file's metadata (and back out for ``/model/info``).

``python -m sb3_crypto.audit`` writes ``audit.json`` into ``<run dir>/audit/`` (for ``--run``) or
``<model dir>/<model stem>_audit/`` (for ``--model``); :func:`find_audit` looks in both, beside the model
being exported. The fields used here (schema 1):

* ``schema``: ``1``;
* ``verdict``: one of :data:`VERDICTS`;
* ``reasons``: a list of strings;
* ``figures``: a flat object, name -> number or ``null``;
* ``created``: ISO 8601 date and time of the audit;
* ``model``: the path of the audited model file;
* ``model_sha256`` (optional): SHA-256 of the audited model file.

An audit is *of the exported model* when its ``model_sha256`` equals the model file's (when the audit
recorded it), else when its ``model`` path names the same file; and in both cases only if the model
file has not been changed since the audit was made. :func:`audit_metadata` builds the metadata
entries, under :data:`METADATA_KEYS`; :func:`audit_from_metadata` reads them back.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sb3_crypto.files import to_strict_json

#: The audit verdicts of schema 1.
VERDICTS = ("edge", "no_evidence", "leak_found", "untestable")
#: The ``audit.json`` schema this module reads.
SCHEMA = 1
#: Field of the audit -> key of its ONNX metadata entry (lists and objects as JSON).
METADATA_KEYS = {
    "verdict": "sb3_crypto.audit.verdict",
    "reasons": "sb3_crypto.audit.reasons",
    "figures": "sb3_crypto.audit.figures",
    "created": "sb3_crypto.audit.created",
    "model": "sb3_crypto.audit.model",
    "mismatch": "sb3_crypto.audit.mismatch",
}
_JSON_FIELDS = ("reasons", "figures")


class AuditError(ValueError):
    """An ``audit.json`` that cannot be used: unreadable, of another schema, a field missing or wrong,
    or of another model than the one exported."""


@dataclass
class Audit:
    """The fields of an ``audit.json`` that travel with an exported model."""

    path: Path
    verdict: str
    reasons: list[str]
    figures: dict[str, float | None]
    created: str
    model: str
    model_sha256: str | None = None
    #: Why the audit may not be of the exported model (set by :func:`check_audit_matches`), else None.
    mismatch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``/model/info`` and the export's report show."""
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "figures": self.figures,
            "created": self.created,
            "model": self.model,
        }
        if self.mismatch is not None:
            out["mismatch"] = self.mismatch
        return out


def _field(payload: Mapping[str, Any], name: str, path: Path) -> Any:
    if name not in payload:
        raise AuditError(f"{path}: field {name!r} is missing")
    return payload[name]


def read_audit(path: str | os.PathLike) -> Audit:
    """Read and check ``audit.json``; every problem is an :class:`AuditError` naming the file and the field."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuditError(f"no audit file at {source}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AuditError(f"{source}: cannot be read ({error})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise AuditError(f"{source}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    if not isinstance(payload, dict):
        raise AuditError(f"{source}: expected a JSON object, got {type(payload).__name__}")
    schema = _field(payload, "schema", source)
    if schema != SCHEMA or isinstance(schema, bool):
        raise AuditError(f"{source}: field 'schema' is {schema!r}; this version reads schema {SCHEMA}")
    verdict = _field(payload, "verdict", source)
    if verdict not in VERDICTS:
        raise AuditError(f"{source}: field 'verdict' must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    reasons = _field(payload, "reasons", source)
    if not isinstance(reasons, list):
        raise AuditError(f"{source}: field 'reasons' must be a list of strings, got {type(reasons).__name__}")
    for k, reason in enumerate(reasons):
        if not isinstance(reason, str):
            raise AuditError(f"{source}: field 'reasons' item {k} must be a string, got {type(reason).__name__}")
    figures = _field(payload, "figures", source)
    if not isinstance(figures, dict):
        raise AuditError(f"{source}: field 'figures' must be an object (name -> number or null)")
    for name, value in figures.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (value is None or (number and math.isfinite(value))):
            raise AuditError(f"{source}: field 'figures' entry {name!r} must be a number or null, got {value!r}")
    created = _field(payload, "created", source)
    try:
        _parse_time(created)
    except (TypeError, ValueError):
        raise AuditError(f"{source}: field 'created' must be an ISO 8601 date and time, got {created!r}") from None
    model = _field(payload, "model", source)
    if not isinstance(model, str) or not model:
        raise AuditError(f"{source}: field 'model' must be the path of the audited model, got {model!r}")
    digest = payload.get("model_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise AuditError(f"{source}: field 'model_sha256' must be a SHA-256 hex digest, got {digest!r}")
    return Audit(source, verdict, list(reasons), dict(figures), created, model, digest)


def _parse_time(text: Any) -> datetime.datetime:
    if not isinstance(text, str):
        raise TypeError(text)
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.timezone.utc)


def audit_candidates(model_path: str | os.PathLike) -> list[Path]:
    """Where ``python -m sb3_crypto.audit`` puts the ``audit.json`` of the model at ``model_path``:
    ``<model dir>/<model stem>_audit/`` (an audit of this model file) first, then ``<run dir>/audit/``
    (an audit of the RL Zoo run the model is saved in)."""
    model = Path(model_path)
    return [model.parent / f"{model.stem}_audit" / "audit.json", model.parent / "audit" / "audit.json"]


def find_audit(model_path: str | os.PathLike) -> Path | None:
    """The first of :func:`audit_candidates` that exists, else None."""
    return next((path for path in audit_candidates(model_path) if path.is_file()), None)


def sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _same_file(audited: str, model: Path, audit_path: Path) -> bool:
    """Whether the path ``audited`` (as the audit wrote it) names the file ``model``. A relative path is
    tried from the working folder and from each folder above ``audit.json`` (the audit may have run
    from another folder)."""
    relative = Path(audited)
    candidates = (
        [relative]
        if relative.is_absolute()
        else [relative, *(base / relative for base in audit_path.resolve().parents)]
    )
    for candidate in candidates:
        try:
            if candidate.exists() and os.path.samefile(candidate, model):
                return True
        except OSError:
            continue
    return False


def check_audit_matches(audit: Audit, model_path: str | os.PathLike) -> str | None:
    """Why ``audit`` may not be of the model file at ``model_path`` (None when it is); also stored in
    ``audit.mismatch``. With ``model_sha256`` the file's content decides; without it, the audit's
    ``model`` path must name the file and the file must not have changed since the audit was made."""
    model = Path(model_path)
    reason: str | None = None
    if audit.model_sha256 is not None:
        if audit.model_sha256 != sha256(model):
            reason = f"the audited model's SHA-256 ({audit.model_sha256[:12]}...) is not that of {model}"
    elif not _same_file(audit.model, model, audit.path):
        reason = f"it audited {audit.model}, not {model}"
    else:
        changed = datetime.datetime.fromtimestamp(model.stat().st_mtime, datetime.timezone.utc)
        if changed > _parse_time(audit.created) + datetime.timedelta(seconds=1):
            reason = f"{model} was changed ({changed.isoformat(timespec='seconds')}) after the audit ({audit.created})"
    audit.mismatch = reason
    return reason


def load_audit_for(model_path: str | os.PathLike, explicit: str | os.PathLike | None = None) -> Audit | None:
    """The audit to embed in the export of the model at ``model_path``.

    Without ``explicit`` the audit is looked for beside the model (:func:`audit_candidates`); None when
    there is none. An audit that may be of another model (:func:`check_audit_matches`) is refused with
    an :class:`AuditError`, unless it was named explicitly (``explicit``, the export's ``--audit``):
    then it is used with the reason recorded as ``mismatch``, which travels with it into the metadata.
    """
    path = Path(explicit) if explicit is not None else find_audit(model_path)
    if path is None:
        return None
    audit = read_audit(path)
    reason = check_audit_matches(audit, model_path)
    if reason is not None and explicit is None:
        raise AuditError(
            f"{path} is not an audit of this model: {reason}; run the audit again, or pass --audit {path} to "
            "embed it anyway (the mismatch is then recorded with it), or --no-audit"
        )
    return audit


def audit_metadata(audit: Audit) -> dict[str, str]:
    """The ONNX metadata entries of ``audit`` (:data:`METADATA_KEYS`): strings, lists and objects as JSON."""
    entries = {
        METADATA_KEYS["verdict"]: audit.verdict,
        METADATA_KEYS["reasons"]: to_strict_json(audit.reasons, indent=None),
        METADATA_KEYS["figures"]: to_strict_json(audit.figures, indent=None),
        METADATA_KEYS["created"]: audit.created,
        METADATA_KEYS["model"]: audit.model,
    }
    if audit.mismatch is not None:
        entries[METADATA_KEYS["mismatch"]] = audit.mismatch
    return entries


def audit_from_metadata(metadata: Mapping[str, str], where: str = "the ONNX file") -> dict[str, Any] | None:
    """The audit carried in an ONNX file's metadata (as :meth:`Audit.to_dict`), or None without one."""
    if METADATA_KEYS["verdict"] not in metadata:
        return None
    out: dict[str, Any] = {}
    for field, key in METADATA_KEYS.items():
        if key not in metadata:
            continue
        value = metadata[key]
        if field in _JSON_FIELDS:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: metadata {key} is not JSON ({error.msg})") from None
        out[field] = value
    return out


__all__ = [
    "METADATA_KEYS",
    "SCHEMA",
    "VERDICTS",
    "Audit",
    "AuditError",
    "audit_candidates",
    "audit_from_metadata",
    "audit_metadata",
    "check_audit_matches",
    "find_audit",
    "load_audit_for",
    "read_audit",
    "sha256",
]
