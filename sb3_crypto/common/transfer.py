"""Shape-aware weight loading for any SB3 model ("smart loading" of S0, transfer learning of S2).

``load_weights(model, "old_model.zip")`` compares the saved policy parameters with the model's.
When every name and shape matches it loads them. Otherwise, by default, it raises an error that
names **every** mismatched layer with both shapes (and every missing or unexpected one) instead of
torch's first-failure message; with ``partial=True`` it copies what fits, leaves the rest as
initialised and returns a :class:`TransferReport` saying which is which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file


@dataclass
class TransferReport:
    """What :func:`load_weights` did."""

    copied: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  #: in the model, not in the saved weights
    unexpected: list[str] = field(default_factory=list)  #: saved, but not in the model

    @property
    def complete(self) -> bool:
        """Every parameter matched."""
        return not (self.mismatched or self.missing or self.unexpected)

    def describe(self) -> str:
        """One line per problem, for error messages and logs."""
        lines = [f"  {name}: saved {tuple(a)} vs model {tuple(b)}" for name, a, b in self.mismatched]
        lines += [f"  {name}: missing from the saved weights" for name in self.missing]
        lines += [f"  {name}: saved but not in the model" for name in self.unexpected]
        return "\n".join(lines)


def _policy_state(source: str | os.PathLike | BaseAlgorithm | dict[str, th.Tensor]) -> dict[str, th.Tensor]:
    if isinstance(source, BaseAlgorithm):
        return source.policy.state_dict()
    if isinstance(source, dict):
        return source
    _, params, _ = load_from_zip_file(source, device="cpu")
    if params is None or "policy" not in params:
        raise ValueError(f"{source}: no policy parameters in this file")
    return params["policy"]


def load_weights(
    model: BaseAlgorithm, source: str | os.PathLike | BaseAlgorithm | dict[str, Any], *, partial: bool = False
) -> TransferReport:
    """Load policy weights from a saved model (path), another model or a state dict.

    :param partial: copy shape-compatible parameters and skip the rest (transfer learning); without
        it any difference raises ``ValueError`` listing every mismatched layer.
    :return: the report of copied, mismatched, missing and unexpected parameters.
    """
    saved = _policy_state(source)
    target = model.policy.state_dict()
    report = TransferReport()
    for name, tensor in target.items():
        if name not in saved:
            report.missing.append(name)
        elif tuple(saved[name].shape) != tuple(tensor.shape):
            report.mismatched.append((name, tuple(saved[name].shape), tuple(tensor.shape)))
        else:
            report.copied.append(name)
    report.unexpected = [name for name in saved if name not in target]
    if not report.complete and not partial:
        raise ValueError(
            f"saved weights do not fit this {type(model).__name__} (pass partial=True to copy what fits):\n"
            + report.describe()
        )
    merged = dict(target)
    for name in report.copied:
        merged[name] = saved[name].to(target[name].device)
    model.policy.load_state_dict(merged)
    return report
