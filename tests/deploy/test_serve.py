"""The HTTP prediction service, tested over real HTTP against servers started on localhost."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make

import sb3_crypto
from sb3_crypto.deploy.onnx import export_onnx
from sb3_crypto.deploy.parity import record_observations
from sb3_crypto.deploy.predictor import Predictor


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(base: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """``(status, parsed JSON)`` of a GET (no body) or a JSON POST."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Server:
    """``python -m sb3_crypto.serve`` in a subprocess on a free port."""

    def __init__(self, model: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "sb3_crypto.serve", "--model", str(model), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--log-level", "warning", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read()}")
            try:
                if call(self.base, "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not come up within 120 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, trained) -> Iterator[tuple[Server, Predictor, np.ndarray]]:
    """An ONNX-exported D3QN on the session env behind the service, with a batch limit of 64."""
    folder = tmp_path_factory.mktemp("serve")
    model, env_id = trained("d3qn")
    export_onnx(model, folder / "agent.onnx", env_id=env_id)
    observations = record_observations(model, make(env_id), n=128)
    server = Server(folder / "agent.onnx", "--max-batch", "64")
    yield server, Predictor.load(folder / "agent.onnx"), observations
    server.stop()


def test_health_info_and_docs(served) -> None:
    server, _, _ = served
    assert call(server.base, "/health") == (200, {"status": "ok"})
    status, info = call(server.base, "/model/info")
    assert status == 200
    assert info["algorithm"] == "d3qn" and info["env_id"] == "CryptoFuturesSession-v0"
    assert info["action_meanings"] == ["hold", "long", "short", "close"]
    assert info["observation_layout"]["window_size"] == 30 and info["observation_space"]["shape"] == [230]
    assert info["package_version"] == sb3_crypto.__version__ and info["max_batch"] == 64
    with urllib.request.urlopen(server.base + "/docs", timeout=30) as response:
        assert response.status == 200 and "swagger" in response.read().decode().lower()
    status, spec = call(server.base, "/openapi.json")
    assert status == 200 and "/predict" in spec["paths"] and "/model/info" in spec["paths"]


def test_predict_matches_the_predictor(served) -> None:
    server, predictor, obs = served
    status, answer = call(server.base, "/predict", {"observations": obs[:32].tolist()})
    assert status == 200
    expected = predictor.predict(obs[:32])
    assert answer["actions"] == expected.actions.tolist()
    np.testing.assert_allclose(answer["q_values"], expected.q_values, atol=1e-6)
    masks = np.zeros((32, 4), dtype=bool)
    masks[:, 3] = True
    status, answer = call(server.base, "/predict", {"observations": obs[:32].tolist(), "action_masks": masks.tolist()})
    assert status == 200 and set(answer["actions"]) == {3}


def nan_body(obs: np.ndarray) -> bytes:
    rows = obs[:2].tolist()
    rows[1][17] = float("nan")
    return json.dumps({"observations": rows}).encode()  # Python writes the NaN literal JSON clients send


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (lambda o: b'{"observations": [[1, 2]', 400, "malformed JSON body at character"),
        (lambda o: b"[1, 2, 3]", 422, "Input should be a valid dictionary"),
        (lambda o: {"obs": o[:1].tolist()}, 422, "observations: Field required; obs: Extra inputs are not permitted"),
        (lambda o: {"observations": []}, 422, "observations is empty"),
        (lambda o: {"observations": o[:2, :100].tolist()}, 422, r"shape \[2, 100\]; expected \[batch, 230\]"),
        (nan_body, 422, "observation 1: value at index 17 is nan"),
        (lambda o: {"observations": (o[:2] * 1e6).tolist()}, 422, "outside the observation space"),
        (lambda o: {"observations": o[:65].tolist()}, 413, "batch of 65 observations exceeds the limit of 64"),
        (lambda o: {"observations": o[:2].tolist(), "action_masks": [[True] * 4]}, 422, r"action_masks must be"),
        (lambda o: {"observations": o[:1].tolist(), "action_masks": [[0.5] * 4]}, 422, "action_masks.0.0"),
        (lambda o: {"observations": o[:1].tolist(), "state": {"h": [[[0.0]]], "c": [[[0.0]]]}}, 422, "not recurrent"),
    ],
)
def test_bad_requests_get_a_4xx_that_names_the_problem(served, body, status: int, message: str) -> None:
    server, _, obs = served
    payload = body(obs)
    got, answer = call(
        server.base, "/predict", raw=payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    )
    assert got == status, answer
    assert re.search(message, answer["detail"]), answer["detail"]
    # ... and the service keeps serving.
    assert call(server.base, "/predict", {"observations": obs[:1].tolist()})[0] == 200


def test_bounded_concurrent_load(served) -> None:
    """16 clients, 320 requests of 8 observations each: every answer right, latency bounded, no errors."""
    server, predictor, obs = served
    rng = np.random.default_rng(0)
    batches = [obs[rng.choice(len(obs), 8, replace=False)] for _ in range(320)]

    def one(batch: np.ndarray) -> tuple[int, list[int], float]:
        start = time.perf_counter()
        status, answer = call(server.base, "/predict", {"observations": batch.tolist()})
        return status, answer.get("actions"), time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, batches))
    elapsed = time.perf_counter() - start
    assert [status for status, _, _ in results] == [200] * len(batches)
    for batch, (_, actions, _) in zip(batches, results):
        assert actions == predictor.predict(batch).actions.tolist()
    latencies = np.array([latency for _, _, latency in results])
    assert np.percentile(latencies, 95) < 5.0, np.percentile(latencies, 95)
    assert len(batches) / elapsed > 10  # requests per second, with a wide margin for a busy CI machine
    assert call(server.base, "/health") == (200, {"status": "ok"})


def test_recurrent_zip_over_http(tmp_path: Path, trained) -> None:
    """A RecurrentPPO zip served directly: the state goes out and comes back in."""
    model, env_id = trained("ppo_lstm")
    run = tmp_path / "logs" / "ppo_lstm" / f"{env_id}_1"
    (run / env_id).mkdir(parents=True)
    # The run's settings (a 16-bar window), which serve checks the model against.
    (run / env_id / "config.yml").write_text("env_kwargs:\n  window_size: 16\n  episode_length: 64\n")
    model.save(run / f"{env_id}.zip")
    obs = record_observations(model, make(env_id), n=4)
    server = Server(run / f"{env_id}.zip")
    try:
        status, info = call(server.base, "/model/info")
        assert status == 200 and info["kind"] == "recurrent" and info["backend"] == "sb3"
        state, sb3_state = None, None
        for k in range(4):
            body: dict[str, Any] = {"observations": obs[k : k + 1].tolist(), "episode_start": [k == 0]}
            if state is not None:
                body["state"] = state
            status, answer = call(server.base, "/predict", body)
            assert status == 200, answer
            want, sb3_state = model.predict(
                obs[k : k + 1], state=sb3_state, episode_start=np.array([k == 0]), deterministic=True
            )
            np.testing.assert_allclose(answer["actions"], want, atol=1e-5)
            np.testing.assert_allclose(answer["state"]["h"], sb3_state[0], atol=1e-5)
            state = answer["state"]
    finally:
        server.stop()
