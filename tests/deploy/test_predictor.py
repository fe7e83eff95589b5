"""Predictor: one interface over SB3 zips and ONNX exports, with input validation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import make

from sb3_crypto.algorithms.model_io import infer_algo, infer_env_id
from sb3_crypto.deploy.onnx import export_onnx
from sb3_crypto.deploy.parity import record_observations
from sb3_crypto.deploy.predictor import PredictionInputError, Predictor


@pytest.fixture(scope="module")
def d3qn(tmp_path_factory: pytest.TempPathFactory, trained):
    """A D3QN on the session env saved as an RL Zoo run, its ONNX export and recorded observations."""
    folder = tmp_path_factory.mktemp("d3qn")
    model, env_id = trained("d3qn")
    run = folder / "logs" / "d3qn" / f"{env_id}_1"
    run.mkdir(parents=True)
    model.save(run / "best_model.zip")
    export_onnx(model, folder / "d3qn.onnx", env_id=env_id)
    observations = record_observations(model, make(env_id), n=64)
    return model, run / "best_model.zip", folder / "d3qn.onnx", observations


def test_zip_and_onnx_answer_the_same(d3qn) -> None:
    model, zip_path, onnx_path, obs = d3qn
    from_zip, from_onnx = Predictor.load(zip_path), Predictor.load(onnx_path)
    a, b = from_zip.predict(obs), from_onnx.predict(obs)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_allclose(a.q_values, b.q_values, atol=1e-5)
    np.testing.assert_array_equal(a.actions, model.predict(obs, deterministic=True)[0])
    assert from_zip.info["backend"] == "sb3" and from_onnx.info["backend"] == "onnx"
    for key in ("algorithm", "env_id", "observation_layout", "action_meanings", "kind", "outputs"):
        assert from_zip.info[key] == from_onnx.info[key], key
    assert from_zip.info["algorithm"] == "d3qn" and from_zip.info["env_id"] == "CryptoFuturesSession-v0"
    single = from_onnx.predict(obs[0])
    assert single.actions.shape == (1,) and single.actions[0] == b.actions[0]


def test_masks_choose_the_best_allowed_action(d3qn) -> None:
    _, _, onnx_path, obs = d3qn
    predictor = Predictor.load(onnx_path)
    free = predictor.predict(obs)
    masks = np.ones((len(obs), 4), dtype=bool)
    masks[np.arange(len(obs)), free.actions] = False  # forbid the greedy action
    masked = predictor.predict(obs, action_masks=masks)
    assert not np.any(masked.actions == free.actions)
    expected = np.where(masks, free.q_values, -np.inf).argmax(axis=1)
    np.testing.assert_array_equal(masked.actions, expected)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o[:, :-1], r"shape \[64, 229\]; expected \[batch, 230\]"),
        (lambda o: o[:0], "observations is empty"),
        (
            lambda o: np.where(np.arange(o.size).reshape(o.shape) == 230 * 3 + 7, np.nan, o),
            "observation 3: value at index 7 is nan",
        ),
        (
            lambda o: np.where(np.arange(o.size).reshape(o.shape) == 5, np.inf, o),
            "observation 0: value at index 5 is inf",
        ),
        (
            lambda o: o * 0 + 50_000.0,
            r"index 0 \(window bar 0, channel 'open_return'\) is outside the observation space",
        ),
        (lambda o: [list(row) for row in o[:2]] + [[1.0, 2.0]], "ragged or non-numeric"),
        (lambda o: [["a"] * 230], "ragged or non-numeric"),
    ],
)
def test_bad_observations_are_named(d3qn, mutate, message: str) -> None:
    _, _, onnx_path, obs = d3qn
    with pytest.raises(PredictionInputError, match=message):
        Predictor.load(onnx_path).predict(mutate(obs.copy()))


def test_bad_masks_states_and_batches_are_named(d3qn) -> None:
    _, _, onnx_path, obs = d3qn
    predictor = Predictor.load(onnx_path, max_batch=16)
    with pytest.raises(PredictionInputError, match="batch of 64 observations exceeds the limit of 16"):
        predictor.predict(obs)
    with pytest.raises(PredictionInputError, match=r"action_masks must be booleans of shape \[2, 4\]"):
        predictor.predict(obs[:2], action_masks=np.ones((2, 3), bool))
    with pytest.raises(PredictionInputError, match="action_masks row 1 allows no action"):
        predictor.predict(obs[:2], action_masks=np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool))
    with pytest.raises(PredictionInputError, match="not recurrent"):
        predictor.predict(obs[:2], state=(np.zeros((1, 2, 8)), np.zeros((1, 2, 8))))


def test_recurrent_predictor_carries_the_state(tmp_path: Path, trained) -> None:
    model, env_id = trained("ppo_lstm")
    model.save(tmp_path / "lstm.zip")
    export_onnx(model, tmp_path / "lstm.onnx", env_id=env_id)
    obs = record_observations(model, make(env_id), n=12)
    for path in (tmp_path / "lstm.zip", tmp_path / "lstm.onnx"):
        predictor = Predictor.load(path, algo="ppo_lstm" if path.suffix == ".zip" else None)
        state, sb3_state = None, None
        for k in range(len(obs)):
            first = np.array([k == 0])
            got = predictor.predict(obs[k : k + 1], state=state, episode_start=first)
            want, sb3_state = model.predict(obs[k : k + 1], state=sb3_state, episode_start=first, deterministic=True)
            np.testing.assert_allclose(got.actions, want, atol=1e-5)
            np.testing.assert_allclose(got.state[0], sb3_state[0], atol=1e-5)
            state = got.state
        with pytest.raises(PredictionInputError, match=r"state h has shape \[1, 3, 256\]; expected \[1, 1, 256\]"):
            predictor.predict(obs[:1], state=(np.zeros((1, 3, 256)), np.zeros((1, 3, 256))))
        with pytest.raises(PredictionInputError, match="not Discrete"):
            predictor.predict(obs[:1], action_masks=[[True]])


def test_loading_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no model file"):
        Predictor.load(tmp_path / "missing.zip")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a Stable-Baselines3 model file"):
        Predictor.load(tmp_path / "junk.zip")
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(
        helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)]),
        str(tmp_path / "plain.onnx"),
    )
    (tmp_path / "broken.onnx").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="onnxruntime cannot load this file"):
        Predictor.load(tmp_path / "broken.onnx")
    with pytest.raises(ValueError, match="without sb3_crypto metadata"):
        Predictor.load(tmp_path / "plain.onnx")


def test_missing_files_and_models_of_other_envs_are_named(d3qn, tmp_path: Path, trained) -> None:
    """Missing files are reported as missing (also by ``serve``, in one line with status 2); a
    model that does not fit its known env is refused naming both spaces and its settings."""
    import shutil

    from sb3_crypto.algorithms.model_io import ModelEnvMismatch
    from sb3_crypto.serve import main as serve_main

    for missing in (tmp_path / "nope.zip", tmp_path / "nope", tmp_path / "nope.onnx"):
        with pytest.raises(FileNotFoundError, match=f"^no model file at {re.escape(str(missing))}$"):
            Predictor.load(missing)
    with pytest.raises(SystemExit) as exit_:
        serve_main(["--model", str(tmp_path / "nope.zip")])
    assert exit_.value.code == 2 and str(exit_.value) == f"no model file at {tmp_path / 'nope.zip'}"

    _, zip_path, _, _ = d3qn
    shutil.copy(zip_path, tmp_path / "agent.zip")
    assert Predictor.load(tmp_path / "agent").info["path"] == str(tmp_path / "agent.zip")  # .zip added, as SB3 does
    with pytest.raises(ModelEnvMismatch, match=r"the model's observations are Box\(shape=\(\d+,\).* has Box"):
        Predictor.load(tmp_path / "agent.zip", env_id="CryptoTrading-v0")  # a session model
    with pytest.raises(SystemExit) as exit_:
        serve_main(["--model", str(tmp_path / "agent.zip"), "--env", "CryptoTrading-v0"])
    assert exit_.value.code == 2 and "no config.yml beside agent.zip" in str(exit_.value)

    # A zoo run trained on a 16-bar window is fine beside its config.yml and refused when copied away.
    model, env_id = trained("ppo_lstm")
    run = tmp_path / "logs" / "ppo_lstm" / f"{env_id}_1"
    (run / env_id).mkdir(parents=True)
    (run / env_id / "config.yml").write_text("env_kwargs:\n  window_size: 16\n  episode_length: 64\n")
    model.save(run / "best_model.zip")
    assert Predictor.load(run / "best_model.zip").info["env_id"] == env_id
    shutil.copy(run / "best_model.zip", tmp_path / "copied.zip")
    with pytest.raises(ModelEnvMismatch, match=r"no config\.yml beside copied\.zip"):
        Predictor.load(tmp_path / "copied.zip", env_id=env_id)


def test_runs_normalised_with_vecnormalize_are_refused(d3qn, tmp_path: Path) -> None:
    """RL Zoo keeps VecNormalize statistics beside the model; serving the policy without them is wrong."""
    import shutil

    from sb3_crypto.export import main as export_main

    _, zip_path, _, _ = d3qn
    run = tmp_path / "logs" / "d3qn" / "CryptoFuturesSession-v0_1"
    (run / "CryptoFuturesSession-v0").mkdir(parents=True)
    shutil.copy(zip_path, run / "best_model.zip")
    Predictor.load(run / "best_model.zip")  # fine without statistics
    (run / "CryptoFuturesSession-v0" / "vecnormalize.pkl").write_bytes(b"stats")
    with pytest.raises(ValueError, match="normalised observations with VecNormalize"):
        Predictor.load(run / "best_model.zip")
    with pytest.raises(ValueError, match="normalised observations with VecNormalize"):
        export_main(["--model", str(run / "best_model.zip"), "--out", str(tmp_path / "x.onnx")])


def test_algorithm_and_env_inference(tmp_path: Path, trained) -> None:
    model, _ = trained("sac_gsde")
    model.save(tmp_path / "agent.zip")
    assert infer_algo(tmp_path / "agent.zip") == "sac"
    assert infer_algo(Path("logs/ppo_mask/x_1/x.zip")) == "ppo_mask"
    assert infer_env_id(Path("logs/sac/CryptoTrading-v0_3/best_model.zip")) == "CryptoTrading-v0"
    assert infer_env_id(Path("elsewhere/agent.zip")) is None
