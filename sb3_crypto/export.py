"""``python -m sb3_crypto.export``: ONNX export of a trained policy, with a parity check and optional int8 quantisation.

``python -m sb3_crypto.export --model PATH --out FILE.onnx`` exports the deterministic policy of a
saved model (reference system S1 ships its agent as ONNX; S0 quantises for inference):

The inputs and outputs of each algorithm's graph are listed below (:mod:`sb3_crypto.deploy.modules`).
Every input and output has a dynamic batch dimension (for RecurrentPPO the state is
``(lstm_layers, batch, hidden)`` as in SB3). The file carries a JSON description of the model
(algorithm, env id, observation layout and bounds, action space and meanings, package version, and
the observation spec saved in the model's zip, so that the ONNX file acts on raw bars too) in its
metadata under ``sb3_crypto``, which :class:`sb3_crypto.deploy.predictor.Predictor` reads.

The export is checked before the command succeeds: on observations recorded by running the policy in
its environment, onnxruntime must give the same greedy actions as the PyTorch policy (SB3's own
``predict``) and values within ``1e-5``. ``--quantize`` also writes an int8 dynamically-quantised
copy of the linear layers and reports its action agreement rate and speed-up.

When the model has been audited (``python -m sb3_crypto.audit``), the audit's verdict, reasons,
figures and date travel in the metadata too (keys ``sb3_crypto.audit.*``) and ``/model/info`` shows
them. The ``audit.json`` is looked for in ``<model dir>/<model stem>_audit/`` and ``<model dir>/audit/``
(the audit's own output folders) or given with ``--audit PATH``. One found beside the model that may
be of another model (another file's SHA-256, another path, or a model file changed after the audit)
is refused; one named with ``--audit`` is embedded with the mismatch recorded beside it, and a
warning. ``--no-audit`` leaves the audit out.

Nothing is written unless every check passes: the ONNX file, its int8 copy and ``OUT.json`` are
built in temporary files beside their targets and renamed into place at the end, so a failed export
leaves a previous export untouched. An existing ``OUT`` (or its ``.json`` / int8 copy) is replaced
only with ``--overwrite``. A missing model file, an occupied ``OUT`` and a model whose spaces differ
from its env's (made with the run's ``config.yml`` and ``--env-kwargs``) are reported in one line
with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from sb3_crypto._aliases import moved_names

_DEPLOY = "sb3_crypto.deploy"
__getattr__ = moved_names(
    __name__,
    {
        **{
            name: f"{_DEPLOY}.modules"
            for name in ("ExportSignature", "export_module", "example_inputs", "run_module", "torch_outputs")
        },
        **{
            name: f"{_DEPLOY}.model_info"
            for name in ("METADATA_KEY", "algorithm_name", "action_meanings", "describe_space", "describe_model")
        },
        **{name: f"{_DEPLOY}.onnx" for name in ("export_onnx", "onnx_session")},
        **{
            name: f"{_DEPLOY}.parity"
            for name in ("ATOL", "ParityReport", "model_inputs", "sb3_actions", "check_parity", "record_observations")
        },
        **{name: f"{_DEPLOY}.quantize" for name in ("quantize", "quantization_report")},
    },
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point: export, check parity, optionally quantise; writes ``OUT`` and ``OUT.json``."""
    import gymnasium as gym
    from rl_zoo3.utils import StoreDict

    import sb3_crypto
    from sb3_crypto.algorithms.model_io import (
        ModelEnvMismatch,
        check_model_fits_env,
        infer_env_id,
        load_model,
        load_observation_spec,
        model_file,
        refuse_vecnormalize,
        saved_env_kwargs,
        settings_source,
    )
    from sb3_crypto.common.cli import int_in, usage_errors
    from sb3_crypto.common.threads import configure_threads
    from sb3_crypto.data import DataError
    from sb3_crypto.deploy import modules as export_modules
    from sb3_crypto.deploy.audit_info import AuditError, audit_metadata, load_audit_for
    from sb3_crypto.deploy.onnx import export_onnx
    from sb3_crypto.deploy.parity import check_parity, record_observations
    from sb3_crypto.deploy.quantize import quantization_report, quantize
    from sb3_crypto.files import OutputExistsError, atomic_path, refuse_existing, to_strict_json

    parser = argparse.ArgumentParser(
        prog="python -m sb3_crypto.export",
        description=f"{__doc__}\n{export_modules.__doc__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="saved SB3 model (.zip)")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--algo", default=None, help="algorithm (default: read from the RL Zoo path or the file)")
    parser.add_argument("--env", default=None, help="env id (default: from the RL Zoo path)")
    parser.add_argument(
        "--env-kwargs",
        type=str,
        nargs="+",
        action=StoreDict,
        default={},
        help="env keyword arguments as RL Zoo takes them (key:value ...), over the run's config.yml",
    )
    parser.add_argument(
        "--audit",
        default=None,
        help="audit.json to embed (default: the model's own audit folder, <stem>_audit/ or audit/, when present)",
    )
    parser.add_argument("--no-audit", action="store_true", help="embed no audit even when one is found")
    parser.add_argument("--n-obs", type=int_in(1), default=512, help="recorded observations for the parity check")
    parser.add_argument("--quantize", action="store_true", help="also write an int8 copy (OUT with .int8.onnx)")
    parser.add_argument("--opset", type=int_in(18, 30), default=18, help="ONNX opset (18 or newer)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT, OUT.json and int8 copy (a stale int8 copy is removed without --quantize)",
    )
    args = parser.parse_args(argv)
    configure_threads()
    out = Path(args.out)
    int8_path, report_path = out.with_suffix(".int8.onnx"), Path(f"{out}.json")
    user_errors = (FileNotFoundError, OutputExistsError, ModelEnvMismatch, DataError, AuditError)
    with usage_errors(parser, *user_errors):
        if args.audit is not None and args.no_audit:
            raise AuditError("--audit and --no-audit exclude each other")
        refuse_existing([out, report_path, int8_path], overwrite=args.overwrite)
        model_path = model_file(args.model)
        audit = None if args.no_audit else load_audit_for(model_path, args.audit)
    if audit is not None and audit.mismatch is not None:
        print(f"warning: embedding {audit.path} although it may not be of this model: {audit.mismatch}")
    refuse_vecnormalize(model_path)
    with usage_errors(parser, *user_errors):
        model = load_model(model_path, args.algo)
        env_id = args.env or infer_env_id(model_path)
        if env_id is not None:
            kwargs = {**saved_env_kwargs(model_path), **args.env_kwargs, "split": "validation"}
            settings = settings_source(model_path) + (", with --env-kwargs" if args.env_kwargs else "")
            check_model_fits_env(model, env_id, kwargs, source=settings, hint="--env-kwargs")

    # Everything is built and checked in temporary files beside the targets; they replace the targets
    # only when the checks pass, the ONNX file first and its report last. A failure changes nothing.
    with contextlib.ExitStack() as files:
        json_file = files.enter_context(atomic_path(report_path))
        int8_file = files.enter_context(atomic_path(int8_path)) if args.quantize else None
        onnx_file = files.enter_context(atomic_path(out))
        spec = load_observation_spec(model_path)
        info = export_onnx(
            model,
            onnx_file,
            env_id=env_id,
            opset=args.opset,
            observation_spec=spec,
            extra_metadata=audit_metadata(audit) if audit is not None else None,
        )
        if env_id is not None:
            observations = record_observations(model, lambda: gym.make(env_id, **kwargs), n=args.n_obs)
            source = f"{env_id} (validation split)" if env_id in sb3_crypto.ENV_IDS else env_id
        else:
            space = model.observation_space
            observations = np.stack([space.sample() for _ in range(args.n_obs)]).astype(np.float32)
            source = "samples of the observation space (no env id known)"
        report = check_parity(model, onnx_file, observations)
        if int8_file is not None:
            quantize(onnx_file, int8_file)
            report.quantized = {
                "path": str(int8_path),
                **quantization_report(model, onnx_file, int8_file, observations),
            }
        summary = {"model": str(model_path), "onnx": str(out), "observations": source, "info": info, **report.to_dict()}
        summary["audit"] = None if audit is None else {"path": str(audit.path), **audit.to_dict()}
        print(
            f"parity on {report.n_observations} recorded observations: actions identical={report.actions_identical} "
            f"(SB3 predict: {report.sb3_actions_identical}), max |diff| "
            + ", ".join(f"{k}={v:.2e}" for k, v in report.max_abs_diff.items())
        )
        if report.quantized:
            q = report.quantized
            print(
                f"int8: {q['path']}, action agreement {100 * q['action_agreement']:.1f}%, speed-up "
                f"{q['speedup_single']:.2f}x (single) / {q['speedup_batch']:.2f}x (batch), "
                f"{q['size_bytes']['int8'] / 1024:.0f} KiB vs {q['size_bytes']['fp32'] / 1024:.0f} KiB"
            )
        if not report.ok:
            raise SystemExit(
                f"parity check failed, nothing written to {out}: {to_strict_json(report.to_dict(), indent=None)}"
            )
        json_file.write_text(to_strict_json(summary) + "\n")
    print(f"exported {info['algorithm']} ({info['kind']}) to {out}: inputs {info['inputs']}, outputs {info['outputs']}")
    if audit is not None:
        print(f"embedded the audit's verdict {audit.verdict!r} of {audit.created} ({audit.path})")
    if not args.quantize and int8_path.exists():  # --overwrite: an int8 copy of the previous model
        int8_path.unlink()
        print(f"removed {int8_path}, the int8 copy of the model this export replaced (pass --quantize for a new one)")
    return summary


if __name__ == "__main__":
    main()
