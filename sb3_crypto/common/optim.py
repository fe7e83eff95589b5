"""Adam steps over tensor lists kept between steps: :class:`_AdamSteps`, the fused ``th.optim.Adam``
update through the functional ``torch.optim.adam.adam``, with the checks (optimizer state, parameter
group, gradients, step hooks) that decide whether the kept lists still apply.

Shared by the models that write their gradients straight into ``.grad`` (Rainbow's fused C51 loss,
the fast SAC's hand-written backward); ``sb3_crypto.rainbow.optim`` re-exports it.
"""

from __future__ import annotations

import torch as th
from torch.optim import optimizer as torch_optimizer
from torch.optim.adam import adam

#: The fused Adam kernel ``torch.optim.adam`` calls (``None`` if this torch has none).
_FUSED_ADAM = getattr(th, "_fused_adam_", None)


class _AdamSteps:
    """``optimizer.step()`` for a plain fused ``th.optim.Adam``, through the functional
    ``torch.optim.adam.adam`` over tensor lists kept between steps.

    ``Adam.step`` re-collects the parameters, gradients and state on every call and enters
    profiler and hook wrappers (measured ~5 % of a Rainbow training step on the CPU); the update
    itself is the same call. The lists are used only while nothing they depend on changed: the
    optimizer's state and parameter group objects (a ``load_state_dict`` replaces them), each
    parameter's gradient tensor, the group's options, and no step hooks anywhere; otherwise
    :meth:`step` calls ``optimizer.step()`` and collects the lists again.
    """

    _OPTIONS = ("amsgrad", "fused", "capturable", "differentiable", "foreach")

    def __init__(self, optimizer: th.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.lists: tuple | None = None

    def _collect(self) -> tuple | None:
        optimizer = self.optimizer
        if type(optimizer) is not th.optim.Adam or len(optimizer.param_groups) != 1 or self._hooked():
            return None
        group = optimizer.param_groups[0]
        if not group["fused"] or group["amsgrad"] or group["capturable"] or group["differentiable"]:
            return None
        params = list(group["params"])
        states = [optimizer.state.get(p, {}) for p in params]
        if any(p.grad is None or "exp_avg" not in state for p, state in zip(params, states)):
            return None
        grads = [p.grad for p in params]
        tensors = (params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states])
        steps = [s["step"] for s in states]
        options = tuple(group.get(k) for k in self._OPTIONS)
        # The kernel straight from the kept lists when they need no grouping: one device and dtype
        # for every tensor (steps: the device's float32), Adam's coupled weight decay.
        first = params[0]
        direct = (
            _FUSED_ADAM is not None
            and not group.get("decoupled_weight_decay", False)
            and all(t.device == first.device and t.dtype == first.dtype for group_ in tensors for t in group_)
            and all(t.device == first.device and t.dtype == th.float32 for t in steps)
        )
        return (optimizer.state, group, options, *tensors, steps, direct)

    def _hooked(self) -> bool:
        hooks = [
            getattr(self.optimizer, "_optimizer_step_pre_hooks", None),
            getattr(self.optimizer, "_optimizer_step_post_hooks", None),
            getattr(torch_optimizer, "_global_optimizer_pre_hooks", None),
            getattr(torch_optimizer, "_global_optimizer_post_hooks", None),
        ]
        return any(h is None or len(h) > 0 for h in hooks)  # unknown (another torch) counts as hooked

    def _valid(self, lists: tuple) -> bool:
        state, group, options, params, grads = lists[:5]
        optimizer = self.optimizer
        return (
            optimizer.state is state
            and optimizer.param_groups[0] is group
            and len(optimizer.param_groups) == 1
            and tuple(group.get(k) for k in self._OPTIONS) == options
            and all(p.grad is g for p, g in zip(params, grads))
            and not self._hooked()
        )

    def step(self, check: bool = True) -> None:
        """One Adam step. ``check=False`` skips re-validating the kept lists (for the further steps of
        one training call, when nothing outside the step can have touched the optimizer since the
        checked one); they must have been collected already."""
        lists = self.lists
        if lists is None or (check and not self._valid(lists)):
            self.optimizer.step()
            self.lists = self._collect()
            return
        group = lists[1]
        beta1, beta2 = group["betas"]
        if lists[8] and isinstance(group["lr"], float):
            # What torch.optim.adam's fused path runs for one device and dtype, without its grouping.
            with th.no_grad():
                th._foreach_add_(lists[7], 1)
                _FUSED_ADAM(  # type: ignore[misc]
                    *lists[3:7],
                    [],
                    lists[7],
                    amsgrad=False,
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=group["maximize"],
                    grad_scale=None,
                    found_inf=None,
                )
            return
        extra = {"decoupled_weight_decay": group["decoupled_weight_decay"]} if "decoupled_weight_decay" in group else {}
        with th.no_grad():
            adam(
                *lists[3:7],
                [],
                lists[7],
                foreach=group["foreach"],
                fused=True,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                **extra,
            )
