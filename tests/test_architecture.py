"""The one-way architecture (ARCHITECTURE.md): layers, no cycles, moved paths that keep working.

``scripts/test.sh`` runs ``lint-imports`` on the contracts in ``pyproject.toml``; the tests here
check that the contracts have teeth, that old import paths and YAML dotted names still resolve
(with a ``DeprecationWarning``) without importing upward eagerly, and that no code decides the
kind of an env from its id string.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sb3_crypto"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: Old path -> new path of every name that moved (import paths of earlier versions and the README).
MOVED = {
    "sb3_crypto.callbacks.RiskMetricsCallback": "sb3_crypto.evaluation.callbacks.RiskMetricsCallback",
    "sb3_crypto.callbacks.EarlyStoppingCallback": "sb3_crypto.evaluation.callbacks.EarlyStoppingCallback",
    "sb3_crypto.callbacks.CurriculumCallback": "sb3_crypto.evaluation.callbacks.CurriculumCallback",
    "sb3_crypto.predictor.Predictor": "sb3_crypto.deploy.predictor.Predictor",
    "sb3_crypto.predictor.infer_algo": "sb3_crypto.algorithms.model_io.infer_algo",
    "sb3_crypto.session_backtest.backtest_sessions": "sb3_crypto.evaluation.sessions.backtest_sessions",
    "sb3_crypto.strategy.QStrategy": "sb3_crypto.evaluation.q_strategy.QStrategy",
    "sb3_crypto.ensemble.EnsemblePolicy": "sb3_crypto.policies.ensemble.EnsemblePolicy",
    "sb3_crypto.walk_forward.walk_forward": "sb3_crypto.evaluation.walk_forward.walk_forward",
    "sb3_crypto.registration.ENV_IDS": "sb3_crypto.envs.registration.ENV_IDS",
    "sb3_crypto.utils.configure_threads": "sb3_crypto.common.threads.configure_threads",
    "sb3_crypto.backtest.compare_with_baselines": "sb3_crypto.evaluation.baselines.compare_with_baselines",
    "sb3_crypto.backtest.format_table": "sb3_crypto.evaluation.reports.format_table",
    "sb3_crypto.backtest.run_policy": "sb3_crypto.evaluation.rollout.run_policy",
    "sb3_crypto.backtest.load_model": "sb3_crypto.algorithms.model_io.load_model",
    "sb3_crypto.backtest.deflated_sharpe_ratio": "sb3_crypto.metrics.deflated_sharpe_ratio",
    "sb3_crypto.export.export_onnx": "sb3_crypto.deploy.onnx.export_onnx",
    "sb3_crypto.export.check_parity": "sb3_crypto.deploy.parity.check_parity",
    "sb3_crypto.serve.create_app": "sb3_crypto.deploy.app.create_app",
    "sb3_crypto.envs.futures.run_sessions": "sb3_crypto.evaluation.sessions.run_sessions",
    "sb3_crypto.envs.futures.evaluate_sessions": "sb3_crypto.evaluation.sessions.evaluate_sessions",
    "sb3_crypto.envs.dca.evaluate_dca": "sb3_crypto.evaluation.dca.evaluate_dca",
}


def _resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_moved_names_resolve_to_the_new_objects_with_a_deprecation_warning(old: str) -> None:
    with pytest.warns(DeprecationWarning, match=re.escape(MOVED[old].rpartition(".")[0])):
        found = _resolve(old)
    assert found is _resolve(MOVED[old])


def test_unknown_names_of_an_alias_module_still_raise_attribute_error() -> None:
    import sb3_crypto.callbacks
    import sb3_crypto.envs.futures

    with pytest.raises(AttributeError):
        sb3_crypto.envs.futures.no_such_name  # noqa: B018
    with warnings.catch_warnings(), pytest.raises(AttributeError):
        warnings.simplefilter("ignore", DeprecationWarning)
        sb3_crypto.callbacks.NoSuchCallback  # noqa: B018


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_aliases_and_model_loading_import_nothing_upward_and_leave_rl_zoo_alone() -> None:
    """Importing an old path imports no layer above it; loading a model neither imports RL Zoo nor
    changes its tables (only train / enjoy / optimize patch RL Zoo)."""
    saved = ROOT / "tests" / "fixtures" / "saved_models" / "rainbow.zip"
    result = _python(
        "import sys\n"
        "import sb3_crypto, sb3_crypto.callbacks, sb3_crypto.envs.futures, sb3_crypto.predictor, sb3_crypto.backtest\n"
        "upward = [m for m in ('sb3_crypto.evaluation', 'sb3_crypto.deploy', 'sb3_crypto.zoo') if m in sys.modules]\n"
        "assert not upward, upward\n"
        "from sb3_crypto.algorithms.model_io import load_model\n"
        f"model = load_model({str(saved)!r})\n"
        "assert type(model).__name__ == 'RainbowDQN'\n"
        "assert 'rl_zoo3' not in sys.modules, 'loading a model imported RL Zoo'\n"
        "from rl_zoo3.utils import ALGOS\n"
        "assert 'rainbow' not in ALGOS and 'ppo_mask' not in ALGOS\n"
        "print('ok')\n"
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def _string_constants(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_code_decides_the_kind_of_an_env_from_its_id() -> None:
    """Env ids appear as code only where they are registered; everything else reads the env class
    (``evaluation``, ``sequential_evaluation``)."""
    from sb3_crypto.envs.registration import ENV_IDS

    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "envs" / "registration.py":
            continue
        for line, value in _string_constants(ast.parse(path.read_text())):
            if any(env_id in value for env_id in ENV_IDS):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    # The backtest command's default env (for model files outside an RL Zoo run) is the one exception.
    assert offenders == [f"sb3_crypto{os.sep}backtest.py:{_default_env_line()}: 'CryptoTrading-v0'"], offenders


def _default_env_line() -> int:
    source = (PACKAGE / "backtest.py").read_text().splitlines()
    return next(k for k, line in enumerate(source, start=1) if 'or "CryptoTrading-v0"' in line)


def test_every_env_states_how_it_is_evaluated() -> None:
    from sb3_crypto.envs.registration import ENV_IDS, env_class, evaluation_kwargs
    from sb3_crypto.evaluation.backtest import BACKTESTS

    for env_id in ENV_IDS:
        cls = env_class(env_id)
        assert cls is not None and cls.evaluation in BACKTESTS, env_id
        kwargs = evaluation_kwargs(env_id, {"fee": 0.001}, whole_split=True)
        assert kwargs["split"] == "validation" and kwargs["fee"] == 0.001
        assert kwargs.get("sequential", False) is cls.sequential_evaluation
        assert ("episode_length" in kwargs) is (not cls.sequential_evaluation)
    assert evaluation_kwargs("CartPole-v1", {"x": 1}) == {"x": 1}  # not a package env: unchanged


def test_the_layer_contract_fails_on_an_upward_import_and_on_a_cycle(tmp_path: Path) -> None:
    """The contracts in pyproject.toml hold for the package, and break when a lower layer imports a
    higher one or when two modules import each other."""
    shutil.copytree(PACKAGE, tmp_path / "sb3_crypto", ignore=shutil.ignore_patterns("__pycache__", "hyperparams"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def lint() -> subprocess.CompletedProcess:
        command = [str(LINT_IMPORTS), "--no-cache"]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    clean = lint()
    assert clean.returncode == 0, clean.stdout[-3000:]
    loaders = tmp_path / "sb3_crypto" / "data" / "loaders.py"
    original = loaders.read_text()
    loaders.write_text(original + "\n\ndef _upward():\n    from sb3_crypto.evaluation import rollout  # noqa\n")
    upward = lint()
    assert upward.returncode != 0 and "sb3_crypto.data.loaders -> sb3_crypto.evaluation.rollout" in upward.stdout
    loaders.write_text(original)
    reports = tmp_path / "sb3_crypto" / "evaluation" / "reports.py"
    reports.write_text(
        reports.read_text() + "\n\ndef _cycle():\n    from sb3_crypto.evaluation import sessions  # noqa\n"
    )
    sessions = tmp_path / "sb3_crypto" / "evaluation" / "sessions.py"
    sessions.write_text(
        sessions.read_text() + "\n\ndef _cycle():\n    from sb3_crypto.evaluation import reports  # noqa\n"
    )
    cycle = lint()
    assert cycle.returncode != 0 and "BROKEN" in cycle.stdout.upper()


def test_readme_imports_work() -> None:
    """Every ``from sb3_crypto... import ...`` line shown in the README runs, from its current path
    (no deprecated alias)."""
    lines = re.findall(r"^\s*(from sb3_crypto[\w.]* import [\w, ]+)$", (ROOT / "README.md").read_text(), re.M)
    assert lines, "the README shows no imports"
    for line in lines:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*has moved to", category=DeprecationWarning)
            exec(line, {})


def test_package_ships_its_type_marker_and_hyperparameters() -> None:
    """``py.typed`` and every ``hyperparams/*.yml`` are inside the package (as setup.cfg ships them),
    each config parses, names a known algorithm and only registered env ids."""
    import gymnasium as gym
    import yaml

    from sb3_crypto.algorithms import ALGORITHMS
    from sb3_crypto.envs.registration import ENV_IDS
    from sb3_crypto.zoo.config import HYPERPARAMS_DIR, default_config

    assert (PACKAGE / "py.typed").is_file()
    assert "hyperparams/*.yml" in (ROOT / "setup.cfg").read_text() and "py.typed" in (ROOT / "setup.cfg").read_text()
    configs = sorted(HYPERPARAMS_DIR.glob("*.yml"))
    assert {path.stem for path in configs} >= {"sac", "dqn", "qrdqn", "ppo_mask", "ppo_lstm", "rainbow", "d3qn"}
    for path in configs:
        assert path.stem in ALGORITHMS, path.name
        assert default_config(path.stem) == str(path)
        entries = yaml.safe_load(path.read_text())
        assert entries and set(entries) & set(ENV_IDS), (path.name, sorted(entries))
        assert all(env_id in gym.envs.registry for env_id in entries), (path.name, sorted(entries))
    assert default_config("no_such_algo") is None
    # a shipped file without an entry for the env leaves RL Zoo its own file for the algorithm
    assert default_config("ppo", "CryptoPortfolio-v0") == str(HYPERPARAMS_DIR / "ppo.yml")
    assert default_config("ppo", "CryptoTrading-v0") is None
