"""``_AdamSteps`` (the kept-list Adam step of the fast SAC and Rainbow) is ``torch.optim.Adam``'s
fused step, bit for bit, through each of its paths: the kernel called on the kept lists, the
functional ``adam`` (lists of mixed dtypes), and ``optimizer.step()`` when anything changed."""

from __future__ import annotations

import pytest
import torch as th

from sb3_crypto.common import optim
from sb3_crypto.common.optim import _AdamSteps


def _pair(dtypes: tuple[th.dtype, ...], **options) -> tuple[list[th.nn.Parameter], list[th.nn.Parameter]]:
    generator = th.Generator().manual_seed(0)
    shapes = [(7, 5), (5,), (3, 2, 4)]
    base = [th.randn(*shape, generator=generator).to(dtype) for shape, dtype in zip(shapes, dtypes)]
    return [th.nn.Parameter(t.clone()) for t in base], [th.nn.Parameter(t.clone()) for t in base]


def _grads(params: list[th.nn.Parameter], seed: int) -> None:
    generator = th.Generator().manual_seed(seed)
    for p in params:
        noise = th.randn(p.shape, generator=generator).to(p.dtype)
        if p.grad is None:
            p.grad = noise
        else:
            p.grad.copy_(noise)  # in place: the kept lists hold these gradient tensors


@pytest.mark.parametrize(
    "dtypes, direct",
    [((th.float32,) * 3, True), ((th.float32, th.float64, th.float32), False)],
    ids=["kernel-on-kept-lists", "functional-adam"],
)
@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.01, "maximize": True}], ids=["plain", "options"])
def test_kept_list_steps_are_the_optimizer_steps(dtypes, direct: bool, options: dict) -> None:
    ours, theirs = _pair(dtypes)
    opt_ours = th.optim.Adam(ours, lr=3e-3, fused=True, **options)
    opt_theirs = th.optim.Adam(theirs, lr=3e-3, fused=True, **options)
    steps = _AdamSteps(opt_ours)
    for seed in range(6):
        _grads(ours, seed)
        _grads(theirs, seed)
        steps.step(check=seed % 2 == 0)
        opt_theirs.step()
        for a, b in zip(ours, theirs):
            assert th.equal(a, b), seed
    assert steps.lists is not None and bool(steps.lists[8]) is direct
    for p_a, p_b in zip(ours, theirs):
        state_a, state_b = opt_ours.state[p_a], opt_theirs.state[p_b]
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert th.equal(state_a[key], state_b[key]), key


def test_a_learning_rate_change_reaches_the_kernel(monkeypatch) -> None:
    ours, theirs = _pair((th.float32,) * 3)
    opt_ours, opt_theirs = th.optim.Adam(ours, lr=1e-3, fused=True), th.optim.Adam(theirs, lr=1e-3, fused=True)
    steps = _AdamSteps(opt_ours)
    calls = []
    kernel = optim._FUSED_ADAM
    monkeypatch.setattr(optim, "_FUSED_ADAM", lambda *a, **k: (calls.append(k["lr"]), kernel(*a, **k)))
    for seed, lr in enumerate((1e-3, 1e-3, 5e-4, 5e-4)):
        for opt in (opt_ours, opt_theirs):
            opt.param_groups[0]["lr"] = lr
        _grads(ours, seed)
        _grads(theirs, seed)
        steps.step(check=True)
        opt_theirs.step()
    assert calls == [1e-3, 5e-4, 5e-4]  # the first step goes through optimizer.step() (collects)
    for a, b in zip(ours, theirs):
        assert th.equal(a, b)
