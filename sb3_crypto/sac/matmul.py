"""Matrix products for the fast SAC: oneDNN's on the CPU when it is there, torch's otherwise.

PyTorch's CPU ``mm`` / ``addmm`` call MKL, which on the project's AMD EPYC machine runs these sizes
(batch 256, widths 84-256) at ~60 GFLOP/s with one thread; oneDNN, which PyTorch also ships (it
dispatches on the CPU's own instruction set, AVX-512 there), ran the same products 1.5-1.9x
faster in paired timings, and its forward results were bitwise those of ``addmm``. PyTorch reaches
it for dense float32 tensors through ``torch.ops.mkldnn._linear_pointwise`` (the op Inductor's CPU
backend uses; it also fuses the ReLU). Each call costs ~17 us of set-up, so small products (and
outer products) stay with torch. :func:`onednn_usable` checks the op against ``addmm`` once before
it is used; any failure keeps torch's products.
"""

from __future__ import annotations

import torch as th

_POINTWISE = getattr(getattr(th.ops, "mkldnn", None), "_linear_pointwise", None)

#: Products with fewer multiply-adds than this (``m * n * k``) use torch: oneDNN's fixed cost per
#: call (~17 us) outweighs its faster kernel below roughly this size.
ONEDNN_MIN_SIZE = 1 << 20

_usable: bool | None = None


def onednn_usable() -> bool:
    """Whether oneDNN's linear op exists and gives ``addmm``'s results (checked once, on small
    products with strided and transposed operands as the fast SAC passes them)."""
    global _usable
    if _usable is None:
        _usable = _check()
    return _usable


def _check() -> bool:
    if _POINTWISE is None or not th.backends.mkldnn.is_available():
        return False
    try:
        generator = th.Generator().manual_seed(0)
        a = th.randn(64, 40, generator=generator)
        b = th.randn(32, 30, generator=generator)
        c = th.randn(30, 32, generator=generator)
        bias = th.randn(32, generator=generator)
        x = a[:, :30]  # row-strided input
        checks = (
            (_POINTWISE.default(x, b, bias, "none", [], ""), th.addmm(bias, x, b.t())),
            (_POINTWISE.default(x, b, bias, "relu", [], ""), th.addmm(bias, x, b.t()).relu()),
            (_POINTWISE.default(x, c.t(), None, "none", [], ""), x @ c),  # transposed weight
            (_POINTWISE.default(a[:, :32].t(), x.t(), None, "none", [], ""), a[:, :32].t() @ x),  # both transposed
        )
        return all(
            got.shape == want.shape and not got.is_mkldnn and th.allclose(got, want, rtol=1e-5, atol=1e-5)
            for got, want in checks
        )
    except (RuntimeError, TypeError, AttributeError):
        return False


def _dense(t: th.Tensor) -> bool:
    return t.is_contiguous() or t.t().is_contiguous()


def _fast_layout(x: th.Tensor, weight: th.Tensor) -> bool:
    """Operand layouts oneDNN's op runs with its fast kernels: a dense weight (row- or column-major
    without padding) and an input that is row-major (padded rows are fine) or dense. Measured: a
    padded weight, or a padded column-major input, sends it to a reference kernel ~1,000x slower."""
    return _dense(weight) and (x.stride(1) == 1 or _dense(x))


class Matmul:
    """``linear`` (``x @ weight.T + bias``, optionally ReLU) and ``mm`` through oneDNN for large
    products when ``onednn``, else torch.

    :param onednn: use oneDNN where it pays (CPU tensors only; see :func:`onednn_usable`).
    """

    def __init__(self, onednn: bool) -> None:
        self.onednn = onednn and onednn_usable()
        self._op = _POINTWISE.default if self.onednn and _POINTWISE is not None else None

    def linear(self, x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None = None, relu: bool = False) -> th.Tensor:
        """``x @ weight.T (+ bias)``, then ReLU if ``relu``."""
        op = self._op
        if (
            op is not None
            and x.shape[0] * weight.shape[0] * weight.shape[1] >= ONEDNN_MIN_SIZE
            and _fast_layout(x, weight)
        ):
            return op(x, weight, bias, "relu" if relu else "none", [], "")
        out = th.mm(x, weight.t()) if bias is None else th.addmm(bias, x, weight.t())
        return out.relu_() if relu else out

    def mm(self, a: th.Tensor, b: th.Tensor, out: th.Tensor | None = None) -> th.Tensor:
        """``a @ b`` (into ``out`` if given); outer products (inner size 1) as a broadcast product;
        products with a narrow result as :func:`narrow_mm`."""
        if a.shape[1] == 1:
            return th.mul(a, b, out=out) if out is not None else a * b
        if _narrow(a, b):
            return narrow_mm(a, b, out)
        op = self._op
        if op is not None and a.shape[0] * a.shape[1] * b.shape[1] >= ONEDNN_MIN_SIZE and _fast_layout(a, b.t()):
            result = op(a, b.t(), None, "none", [], "")
            return out.copy_(result) if out is not None else result
        return th.mm(a, b, out=out) if out is not None else th.mm(a, b)


#: Widest result (columns) that :func:`narrow_mm` hands to MKL with a column-major right operand.
NARROW_MAX = 16


def _narrow(a: th.Tensor, b: th.Tensor) -> bool:
    return a.device.type == "cpu" and 1 < b.shape[1] <= NARROW_MAX


def narrow_mm(a: th.Tensor, b: th.Tensor, out: th.Tensor | None = None) -> th.Tensor:
    """``a @ b`` for a narrow ``b`` (an action head's 2-16 columns: the gSDE noise and variance, the
    critics' gradient with respect to the action). On the CPU MKL multiplies by a row-major
    ``(k, n)`` right operand with small ``n`` through a slow kernel (30 us for 256x128 @ 128x5 here)
    and by a column-major one through its fast one (10 us), so ``b`` is given column-major (a copy
    of at most 16 columns). The rounding differs from ``th.mm(a, b)`` in the last bits; one column
    (the trading env's action) keeps ``th.mm`` and SB3's numbers exactly."""
    if _narrow(a, b) and not b.t().is_contiguous():
        b = b.t().contiguous().t()
    return th.mm(a, b, out=out) if out is not None else th.mm(a, b)
