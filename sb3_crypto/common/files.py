"""Atomic, strict and non-clobbering file writes, for the models layer and everything above it.

The implementation is the leaf module :mod:`sb3_crypto.files` (standard library only), so that the
data layer below can write its files the same way; this module is the same functions under the
path the upper layers import.
"""

from __future__ import annotations

from sb3_crypto.files import (
    OutputExistsError,
    atomic_path,
    check_output_dir,
    claim_output_dir,
    refuse_existing,
    save_model,
    stale_partials,
    to_strict_json,
    write_bytes,
    write_json,
    write_text,
)

__all__ = [
    "OutputExistsError",
    "atomic_path",
    "check_output_dir",
    "claim_output_dir",
    "refuse_existing",
    "save_model",
    "stale_partials",
    "to_strict_json",
    "write_bytes",
    "write_json",
    "write_text",
]
