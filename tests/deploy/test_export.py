"""ONNX export: parity with PyTorch and SB3's predict for every policy kind, quantisation, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch as th
from helpers import KINDS, make

import sb3_crypto
from sb3_crypto.deploy.model_info import METADATA_KEY
from sb3_crypto.deploy.modules import export_module
from sb3_crypto.deploy.onnx import export_onnx
from sb3_crypto.deploy.parity import ATOL, check_parity, record_observations
from sb3_crypto.deploy.quantize import quantization_report, quantize
from sb3_crypto.export import main


@pytest.mark.parametrize("name", KINDS)
def test_export_parity_for_every_policy_kind(name: str, tmp_path: Path, trained) -> None:
    model, env_id = trained(name)
    path = tmp_path / f"{name}.onnx"
    info = export_onnx(model, path, env_id=env_id)
    observations = record_observations(model, make(env_id), n=200)
    report = check_parity(model, path, observations)
    assert report.ok, report.to_dict()
    assert report.actions_identical and report.sb3_actions_identical
    assert all(diff <= ATOL for diff in report.max_abs_diff.values())
    # The description travels inside the file.
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta[METADATA_KEY]) == info
    assert info["env_id"] == env_id and info["observation_layout"]["window_size"] > 0
    assert info["package_version"] == sb3_crypto.__version__


def test_recorded_parity_is_not_vacuous(tmp_path: Path, trained) -> None:
    """The greedy actions on the recorded observations differ (so 'identical' means something), and a
    model with other weights fails the check."""
    model, env_id = trained("dqn")
    path = tmp_path / "dqn.onnx"
    export_onnx(model, path, env_id=env_id)
    observations = record_observations(model, make(env_id), n=200)
    actions, _ = model.predict(observations, deterministic=True)
    assert len(np.unique(actions)) >= 2
    with th.no_grad():
        for parameter in model.policy.q_net.parameters():
            parameter.add_(0.05 * th.randn_like(parameter))
    report = check_parity(model, path, observations)
    assert not report.ok
    assert report.max_abs_diff["q_values"] > ATOL


def test_c51_export_outputs_the_distribution(tmp_path: Path, trained) -> None:
    model, env_id = trained("rainbow_c51_conv")
    info = export_onnx(model, tmp_path / "r.onnx", env_id=env_id)
    assert info["outputs"] == ["action", "q_values", "distribution"]
    assert info["action_meanings"] == ["hold", "long", "short", "close"]
    import onnxruntime as ort

    obs = record_observations(model, make(env_id), n=16)
    action, q_values, distribution = ort.InferenceSession(str(tmp_path / "r.onnx")).run(None, {"obs": obs})
    assert distribution.shape == (16, 4, model.policy.q_net.n_atoms)
    np.testing.assert_allclose(distribution.sum(axis=2), 1.0, atol=1e-5)
    support = model.policy.q_net.support.numpy()
    np.testing.assert_allclose((distribution * support).sum(axis=2), q_values, atol=1e-5)
    np.testing.assert_array_equal(action, q_values.argmax(axis=1))


def test_masked_export_respects_masks(tmp_path: Path, trained) -> None:
    import onnxruntime as ort

    model, env_id = trained("ppo_mask")
    export_onnx(model, tmp_path / "m.onnx", env_id=env_id)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    obs = record_observations(model, make(env_id), n=64)
    for only in range(4):
        masks = np.zeros((64, 4), dtype=bool)
        masks[:, only] = True
        actions, _ = session.run(None, {"obs": obs, "action_masks": masks})
        assert np.all(actions == only)


def test_int8_quantisation_report(tmp_path: Path, trained) -> None:
    model, env_id = trained("sac_gsde")
    fp32 = tmp_path / "sac.onnx"
    export_onnx(model, fp32, env_id=env_id)
    int8 = quantize(fp32, tmp_path / "sac.int8.onnx")
    observations = record_observations(model, make(env_id), n=128)
    report = quantization_report(model, fp32, int8, observations, repeats=5)
    assert report["size_bytes"]["int8"] < report["size_bytes"]["fp32"]
    assert report["action_agreement"] >= 0.9
    assert 0 < report["max_abs_value_diff"]["action"] < 0.2  # quantised, so not identical, yet close
    assert report["speedup_single"] > 0 and report["speedup_batch"] > 0
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}
    meta = {p.key for p in onnx.load(str(int8)).metadata_props}
    assert METADATA_KEY in meta


def test_export_cli_on_an_rl_zoo_run(tmp_path: Path, capsys: pytest.CaptureFixture, trained) -> None:
    model, env_id = trained("d3qn")
    run = tmp_path / "logs" / "d3qn" / f"{env_id}_1"
    run.mkdir(parents=True)
    model.save(run / f"{env_id}.zip")
    out = tmp_path / "exported" / "agent.onnx"
    summary = main(["--model", str(run / f"{env_id}.zip"), "--out", str(out), "--n-obs", "128", "--quantize"])
    assert out.is_file() and out.with_suffix(".int8.onnx").is_file()
    written = json.loads(Path(f"{out}.json").read_text())
    assert written["ok"] and summary["ok"]
    assert written["info"]["algorithm"] == "d3qn" and written["info"]["env_id"] == env_id
    assert "validation split" in written["observations"]
    assert 0.0 <= written["quantized"]["action_agreement"] <= 1.0
    printed = capsys.readouterr().out
    assert "parity on 128 recorded observations: actions identical=True" in printed
    assert "int8:" in printed


def test_export_cli_infers_the_algorithm_from_the_file(tmp_path: Path, trained) -> None:
    model, env_id = trained("ppo_lstm")
    model.save(tmp_path / "agent.zip")
    argv = ["--model", str(tmp_path / "agent.zip"), "--out", str(tmp_path / "a.onnx"), "--env", env_id]
    with pytest.raises(SystemExit, match="pass the training env's settings with --env-kwargs"):
        main(argv)  # the default window is longer than the one the model was trained on
    summary = main([*argv, "--env-kwargs", "window_size:16", "episode_length:64"])
    assert summary["info"]["algorithm"] == "ppo_lstm" and summary["ok"]
    assert summary["info"]["lstm_state_shape"][0] == 1


def test_a_failed_export_leaves_the_previous_one_untouched(
    tmp_path: Path, trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The ONNX file, its int8 copy and its report are built and checked in temporary files; they
    replace the targets only when every check passes. An existing export is refused without
    --overwrite."""
    from sb3_crypto.deploy import parity

    good, env_id = trained("d3qn")
    good.save(tmp_path / "good.zip")
    other, _ = trained("dqn")
    other.save(tmp_path / "other.zip")
    out = tmp_path / "exported" / "agent.onnx"

    def export(model: str, *extra: str) -> dict:
        return main(["--model", str(tmp_path / model), "--out", str(out), "--env", env_id, "--n-obs", "64", *extra])

    export("good.zip")
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert set(before) == {"agent.onnx", "agent.onnx.json"}

    def unchanged() -> bool:
        return {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # and no temporary files

    with pytest.raises(SystemExit) as refused:
        export("other.zip")
    assert refused.value.code == 2 and "agent.onnx" in str(refused.value) and "--overwrite" in str(refused.value)
    assert unchanged()

    real = parity.check_parity

    def failing(*args, **kwargs):
        report = real(*args, **kwargs)
        report.actions_identical = False
        return report

    monkeypatch.setattr(parity, "check_parity", failing)
    with pytest.raises(SystemExit, match="parity check failed, nothing written"):
        export("other.zip", "--overwrite", "--quantize")
    assert unchanged()
    monkeypatch.undo()

    lstm, lstm_env = trained("ppo_lstm")  # trained on a 16-bar window; the env's default is longer
    lstm.save(tmp_path / "lstm.zip")
    argv = ["--model", str(tmp_path / "lstm.zip"), "--out", str(out), "--env", lstm_env, "--overwrite"]
    with pytest.raises(SystemExit) as mismatch:
        main(argv)
    message = str(mismatch.value)
    assert mismatch.value.code == 2 and "pass the training env's settings with --env-kwargs" in message
    assert f"Box(shape={lstm.observation_space.shape}, dtype=float32)" in message and "no config.yml" in message
    assert unchanged()

    with pytest.raises(SystemExit) as missing:
        main(["--model", str(tmp_path / "nope.zip"), "--out", str(tmp_path / "x.onnx")])
    assert missing.value.code == 2 and str(missing.value) == f"no model file at {tmp_path / 'nope.zip'}"
    capsys.readouterr()

    (out.with_suffix(".int8.onnx")).write_bytes(b"an int8 copy of the good model")
    summary = export("other.zip", "--overwrite")
    assert summary["ok"] and summary["info"]["algorithm"] == "dqn"
    assert out.read_bytes() != before["agent.onnx"]
    written = json.loads(Path(f"{out}.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert written["onnx"] == str(out) and written["info"]["algorithm"] == "dqn"
    assert sorted(p.name for p in out.parent.iterdir()) == ["agent.onnx", "agent.onnx.json"]  # stale int8 gone
    assert "removed" in capsys.readouterr().out


def test_unsupported_spaces_are_refused_by_name() -> None:
    import gymnasium as gym

    class DictModel:
        policy = None
        observation_space = gym.spaces.Dict({"prices": gym.spaces.Box(-1, 1, (3,))})

    with pytest.raises(TypeError, match="supports Box observation spaces"):
        export_module(DictModel())
