"""``python -m sb3_crypto.serve --model PATH [--host 127.0.0.1] [--port 8000] [--max-batch 1024]
[--max-bars 10000] [--max-body-bytes N] [--limit-concurrency 64]``.

A FastAPI app (:mod:`sb3_crypto.deploy.app`) over :class:`~sb3_crypto.deploy.predictor.Predictor`
(an SB3 ``.zip`` or an ONNX export):

* ``GET /health`` — ``{"status": "ok"}`` once the model is loaded;
* ``GET /model/info`` — algorithm, env id, observation layout and space, action space and meanings,
  inputs and outputs, package version, backend, ``max_batch`` and ``max_body_bytes``;
* ``POST /predict`` — ``{"observations": [[...], ...], "action_masks": [[...]]?, "state": {"h": ..., "c": ...}?,
  "episode_start": [...]?}`` answers ``{"actions": [...], "q_values": [...]?, "state": {...}?}``;
* ``POST /act`` — ``{"bars": [{"timestamp": "2022-11-06", "open": ..., "high": ..., "low": ..., "close": ...,
  "volume": ...}, ...], "account": {...}?}``: recent raw bars (oldest first) and the account state
  answer the action, its ``meaning``, ``decided_on_close_of`` (the last bar) and ``fills_at_open_of``
  (the next bar); models with an observation spec (every model ``sb3_crypto.train`` saves and its ONNX
  export), 409 otherwise;
* OpenAPI docs at ``/docs``.

Before anything is parsed, a ``POST /predict`` or ``/act`` that is not ``Content-Type: application/json``
gets 415, and a body over ``--max-body-bytes`` gets 413: refused from its ``Content-Length`` before it is
read, or counted while a chunked body streams in, so an oversized body costs at most the limit in
memory. The default limit is
``max_batch x (observation size + number of actions + recurrent state size + 1) x 40 bytes + 64 KiB``
(about 9.7 MB for ``--max-batch 1024`` on the session envs), or for a model that can act at least
``max_bars x 8 x 40 bytes + 64 KiB`` (3.3 MB for 10,000 bars); ``GET /model/info`` reports it.

Bad requests get a 4xx whose ``detail`` names the problem — malformed JSON (400), missing fields or
wrong types (422), wrong observation shape, non-finite or out-of-space values, empty batches (422),
batches over ``--max-batch`` or more than ``--max-bars`` bars (413), bodies over ``--max-body-bytes``
(413), bodies that are not JSON (415), bars out of order, repeated, with a gap, NaN or non-positive
prices, too few for the window plus the feature lookback, or wrong account fields (422, naming
``bars[k]`` or the field) — and the service keeps serving. Requests beyond ``--limit-concurrency`` in flight are refused
with 503 instead of queueing without bound.

A missing model file, or an SB3 model that does not fit its env (see
:class:`~sb3_crypto.deploy.predictor.Predictor`), stops the command before it serves, with one line
and exit status 2.
"""

from __future__ import annotations

import argparse
import json

from sb3_crypto._aliases import moved_names

__getattr__ = moved_names(
    __name__,
    {
        name: "sb3_crypto.deploy.app"
        for name in ("LstmState", "PredictRequest", "PredictResponse", "create_app", "SERVE_EXTRA")
    },
)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: load the model and serve it with uvicorn."""
    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.algorithms.model_io import ModelEnvMismatch
    from sb3_crypto.common.cli import int_in, usage_errors
    from sb3_crypto.common.threads import configure_threads
    from sb3_crypto.deploy.app import create_app, require_fastapi
    from sb3_crypto.deploy.predictor import Predictor

    parser = argparse.ArgumentParser(
        prog="python -m sb3_crypto.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="SB3 model .zip or ONNX export .onnx")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int_in(0, 65535), default=8000)
    parser.add_argument("--algo", default=None, help="algorithm of a .zip (default: inferred)")
    parser.add_argument("--env", default=None, help="env id (default: from the RL Zoo path or the ONNX metadata)")
    parser.add_argument("--max-batch", type=int_in(1), default=1024, help="largest batch /predict accepts")
    parser.add_argument("--max-bars", type=int_in(1), default=10_000, help="most bars /act accepts")
    parser.add_argument(
        "--max-body-bytes",
        type=int_in(1),
        default=None,
        help="largest request body in bytes, refused with 413 before it is read or parsed (default: "
        "max_batch x (observation size + number of actions + recurrent state size + 1) x 40 + 65536, or "
        "max_bars x 8 x 40 + 65536 when larger for a model that can act)",
    )
    parser.add_argument("--limit-concurrency", type=int_in(1), default=64, help="requests in flight before 503")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_threads()
    require_fastapi()
    import uvicorn

    with usage_errors(parser, FileNotFoundError, ModelEnvMismatch):
        predictor = Predictor.load(
            args.model, algo=args.algo, env_id=args.env, max_batch=args.max_batch, max_bars=args.max_bars
        )
    summary = {k: predictor.info[k] for k in ("algorithm", "env_id", "kind", "backend")}
    print(json.dumps({**summary, "act": predictor.can_act}), flush=True)
    uvicorn.run(
        create_app(predictor, max_body_bytes=args.max_body_bytes),
        host=args.host,
        port=args.port,
        limit_concurrency=args.limit_concurrency,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
