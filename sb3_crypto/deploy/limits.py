"""Request limits the prediction service checks before any parsing: a pure ASGI middleware.

:class:`RequestLimits` sits between the server (uvicorn) and the FastAPI app and answers on its own,
so FastAPI and pydantic never see a request it refuses:

* **415** — a ``POST`` to a JSON path (``/predict``, ``/act``) whose ``Content-Type`` is not
  ``application/json`` (``text/plain``, form data, missing); decided from the headers alone.
* **413** — a body over ``max_body_bytes``. A declared ``Content-Length`` over the limit is refused
  before a byte of the body is read; a chunked body (or one without a length) is counted while it
  streams in and refused as soon as the count passes the limit. The body of a request within the
  limit is buffered (at most ``max_body_bytes``) and replayed to the app unchanged.

Whatever the client still sends after a refusal is discarded by the server, not kept, so an
oversized body costs at most ``max_body_bytes`` of memory however large it is.

:func:`default_max_body_bytes` is the service's default limit: ``max_batch x numbers per row x``
:data:`BYTES_PER_NUMBER` ``+`` :data:`BODY_OVERHEAD`, where a row is one observation with its
action mask, recurrent state and ``episode_start`` flag. A model that can act on raw bars gets at
least :func:`default_act_body_bytes`: ``max_bars x`` :data:`NUMBERS_PER_BAR` ``x``
:data:`BYTES_PER_NUMBER` plus its recurrent state and :data:`BODY_OVERHEAD`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BYTES_PER_NUMBER = 40
"""Generous JSON size of one number: ``repr`` of a float64 is at most 24 characters
(``-2.2250738585072014e-308``), plus separator and the indentation of pretty-printed JSON."""

BODY_OVERHEAD = 64 * 1024
"""Bytes allowed on top of the numbers: field names, brackets, whitespace."""

NUMBERS_PER_BAR = 8
"""Values of one bar in a ``/act`` request: timestamp, open, high, low, close, volume, vwap, trades."""

JSON_MEDIA_TYPE = "application/json"


def default_max_body_bytes(max_batch: int, observation_size: int, n_actions: int = 0, state_size: int = 0) -> int:
    """``max_batch x (observation_size + n_actions + state_size + 1) x BYTES_PER_NUMBER + BODY_OVERHEAD``.

    A row of a request is one observation (``observation_size`` numbers), its action mask
    (``n_actions`` booleans, for Discrete actions), its recurrent state (``state_size`` numbers:
    ``h`` and ``c``, for LSTM policies) and its ``episode_start`` flag. With ``--max-batch 1024`` and
    the 230-number observation of the session envs with 4 actions that is about 9.7 MB.
    """
    row = int(observation_size) + int(n_actions) + int(state_size) + 1
    return int(max_batch) * row * BYTES_PER_NUMBER + BODY_OVERHEAD


def default_act_body_bytes(max_bars: int, state_size: int = 0) -> int:
    """``(max_bars x NUMBERS_PER_BAR + state_size) x BYTES_PER_NUMBER + BODY_OVERHEAD``: a ``/act``
    request of ``max_bars`` bars with every field, the account and a recurrent state (``state_size``
    numbers) fits. With the default 10,000 bars that is about 3.3 MB."""
    return (int(max_bars) * NUMBERS_PER_BAR + int(state_size)) * BYTES_PER_NUMBER + BODY_OVERHEAD


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json"))


class RequestLimits:
    """Pure ASGI middleware: 415 for non-JSON ``POST`` bodies on ``json_paths``, 413 for bodies over
    ``max_body_bytes`` (declared or counted while streaming), before the app reads anything.

    :param app: the ASGI app to protect.
    :param max_body_bytes: largest request body passed on, in bytes.
    :param json_paths: paths whose ``POST`` requests must be ``Content-Type: application/json``.
    :param how_to_raise: what the 413 ``detail`` tells the client about raising the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        json_paths: Iterable[str] = (),
        how_to_raise: str = "raise the server's max_body_bytes",
    ) -> None:
        if int(max_body_bytes) < 1:
            raise ValueError(f"max_body_bytes must be a positive number of bytes, got {max_body_bytes}")
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.json_paths = frozenset(json_paths)
        self.how_to_raise = how_to_raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"] in self.json_paths:
            content_type = _header(scope, b"content-type")
            if not _is_json(content_type):
                got = "no Content-Type" if content_type is None else repr(content_type)
                detail = f"send the body as JSON with Content-Type: {JSON_MEDIA_TYPE} (got {got})"
                await _answer(send, 415, detail)
                return
        length = _header(scope, b"content-length")
        if length is not None and _header(scope, b"transfer-encoding") is None:
            try:
                declared = int(length)
            except ValueError:
                await _answer(send, 400, f"invalid Content-Length {length!r}")
                return
            if declared > self.max_body_bytes:
                await _answer(send, 413, self._too_large(f"request body of {declared} bytes"))
                return
        messages: deque[Message] = deque()
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                messages.clear()
                await _answer(send, 413, self._too_large(f"request body of more than {self.max_body_bytes} bytes"))
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.popleft() if messages else await receive()

        await self.app(scope, replay, send)

    def _too_large(self, what: str) -> str:
        return f"{what} exceeds the limit of {self.max_body_bytes} bytes; send smaller batches or {self.how_to_raise}"


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
