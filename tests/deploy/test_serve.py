"""The HTTP prediction service, tested over real HTTP against servers started on localhost."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make

import sb3_crypto
from sb3_crypto.deploy.app import predictor_max_body_bytes
from sb3_crypto.deploy.onnx import export_onnx
from sb3_crypto.deploy.parity import record_observations
from sb3_crypto.deploy.predictor import Predictor

LIMIT = 64 * (230 + 4 + 1) * 40 + 65536  # the default body limit of `served`: --max-batch 64, 230 numbers, 4 actions


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


def post(
    port: int, body: bytes | Iterable[bytes], content_type: str | None = "application/json", timeout: float = 60
) -> tuple[int, Any]:
    """``(status, parsed JSON)`` of ``POST /predict`` over http.client: ``bytes`` go with a
    Content-Length, an iterable of chunks goes chunked (no Content-Length); no Content-Type when
    ``content_type`` is None."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {} if content_type is None else {"Content-Type": content_type}
        connection.request("POST", "/predict", body=body, headers=headers, encode_chunked=not isinstance(body, bytes))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def chunks(data: bytes, size: int = 1 << 20) -> Iterator[memoryview]:
    view = memoryview(data)
    return (view[start : start + size] for start in range(0, len(data), size))


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


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
    assert info["max_body_bytes"] == LIMIT
    with urllib.request.urlopen(server.base + "/docs", timeout=30) as response:
        assert response.status == 200 and "swagger" in response.read().decode().lower()
    status, spec = call(server.base, "/openapi.json")
    assert status == 200 and {"/predict", "/act", "/model/info"} <= set(spec["paths"])


def test_act_without_an_observation_spec_is_a_409_that_says_why(served) -> None:
    """The served export was made from a model saved without an observation spec: /predict only."""
    server, _, _ = served
    assert call(server.base, "/model/info")[1]["observation_spec"] is None
    status, answer = call(server.base, "/act", {"bars": [{"timestamp": "2024-01-01", "close": 1.0}]})
    assert status == 409 and "carries no observation spec" in answer["detail"]
    assert "save_observation_spec" in answer["detail"]


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
    server = Server(run / f"{env_id}.zip", "--max-body-bytes", "200000")
    try:
        status, info = call(server.base, "/model/info")
        assert status == 200 and info["kind"] == "recurrent" and info["backend"] == "sb3"
        # --max-body-bytes sets the limit; the default would count the recurrent state and the mask of each row.
        assert info["max_body_bytes"] == 200000
        assert post(server.port, b" " * 200001)[0] == 413
        layers, _, hidden = info["lstm_state_shape"]
        row = int(np.prod(info["observation_space"]["shape"])) + info["action_space"].get("n", 0) + 2 * layers * hidden
        assert predictor_max_body_bytes(Predictor(info, None, max_batch=1024)) == 1024 * (row + 1) * 40 + 65536
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


def test_a_declared_oversized_body_is_refused_before_it_is_read(served) -> None:
    """Content-Length of 1 GB and not a byte of body sent: the 413 comes back at once."""
    server, _, _ = served
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10**9}\r\n\r\n"
    )
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    elapsed = time.perf_counter() - start
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413", answer
    detail = json.loads(rest.partition(b"\r\n\r\n")[2])["detail"]
    assert detail.startswith(f"request body of {10**9} bytes exceeds the limit of {LIMIT} bytes"), detail
    assert "--max-body-bytes" in detail
    assert elapsed < 5.0, elapsed
    # ... and one byte over the limit, sent with its length, is refused as well.
    status, answer = post(server.port, b" " * (LIMIT + 1))
    assert status == 413 and f"request body of {LIMIT + 1} bytes" in answer["detail"], answer


def padded(observations: np.ndarray, size: int) -> bytes:
    """A valid /predict body padded with trailing whitespace (still valid JSON) to exactly ``size`` bytes."""
    body = json.dumps({"observations": observations.tolist()}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def test_body_limit_counts_chunked_bodies_and_lets_the_limit_itself_through(served) -> None:
    server, predictor, obs = served
    # A chunked body without Content-Length, 4 MB of it: counted while it streams, refused at the limit.
    status, answer = post(server.port, chunks(b"x" * (4 << 20), 64 * 1024))
    assert status == 413, answer
    assert answer["detail"].startswith(f"request body of more than {LIMIT} bytes exceeds the limit"), answer
    assert "--max-body-bytes" in answer["detail"]
    # A valid batch of the largest size, padded to exactly the limit: predicts, with a length or chunked.
    body = padded(obs[:64], LIMIT)
    expected = predictor.predict(obs[:64]).actions.tolist()
    for sent in (body, chunks(body, 10_000)):
        status, answer = post(server.port, sent)
        assert status == 200, answer
        assert answer["actions"] == expected
    # One byte more is refused, with a length or chunked.
    for sent in (body + b" ", chunks(body + b" ", 10_000)):
        assert post(server.port, sent)[0] == 413
    # The batch limit after parsing is unchanged: 65 observations fit in the body limit, and get its 413.
    status, answer = post(server.port, padded(obs[:65], LIMIT))
    assert status == 413 and "batch of 65 observations exceeds the limit of 64" in answer["detail"], answer


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_a_body_that_is_not_json_gets_415(served, content_type: str | None) -> None:
    server, _, obs = served
    status, answer = post(server.port, json.dumps({"observations": obs[:1].tolist()}).encode(), content_type)
    assert status == 415, answer
    got = "no Content-Type" if content_type is None else repr(content_type)
    assert answer["detail"] == f"send the body as JSON with Content-Type: application/json (got {got})"
    status, answer = post(
        server.port, json.dumps({"observations": obs[:1].tolist()}).encode(), "application/json; charset=utf-8"
    )
    assert status == 200, answer


def test_a_burst_of_oversized_bodies_keeps_memory_bounded(served) -> None:
    """8 clients x 3 bodies of 32 MB (768 MB in all), half with a Content-Length and half chunked: every one
    gets 413, the server's resident memory stays within 100 MB of where it was, and it keeps serving."""
    server, predictor, obs = served
    assert post(server.port, json.dumps({"observations": obs[:8].tolist()}).encode())[0] == 200  # warm
    pid = server.process.pid
    before = rss_mb(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, rss_mb(pid))

    big = b"[" + b"0.123456789012345678," * (32 * 1024 * 1024 // 21) + b"0]"

    def one(k: int) -> int:
        return post(server.port, big if k % 2 else chunks(big), timeout=60)[0]

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(one, range(24)))
    finally:
        done.set()
        sampler.join(timeout=5)
    elapsed = time.perf_counter() - start
    after = rss_mb(pid)
    print(
        f"24 bodies of {len(big) / 1e6:.1f} MB ({24 * len(big) / 1e6:.0f} MB) in {elapsed:.1f} s; server RSS "
        f"{before:.1f} MB before, peak {peak:.1f} MB, {after:.1f} MB after"
    )
    assert statuses == [413] * 24
    assert peak - before < 100, (before, peak)
    assert after - before < 100, (before, after)
    assert call(server.base, "/health") == (200, {"status": "ok"})
    status, answer = call(server.base, "/predict", {"observations": obs[:8].tolist()})
    assert status == 200 and answer["actions"] == predictor.predict(obs[:8]).actions.tolist()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-batch", "0", "argument --max-batch: must be >= 1, got 0"),
        ("--max-body-bytes", "-5", "argument --max-body-bytes: must be >= 1, got -5"),
        ("--limit-concurrency", "many", "argument --limit-concurrency: expected a whole number, got 'many'"),
        ("--port", "70000", "argument --port: must be [0, 65535], got 70000"),
    ],
)
def test_command_options_are_checked_by_name(option: str, value: str, message: str) -> None:
    command = [sys.executable, "-m", "sb3_crypto.serve", "--model", "missing.zip", option, value]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr
