"""attend(): masks split into dense calls must give masked attention's result, forward and backward."""

from __future__ import annotations

import pytest
import torch

from fulldit import attention
from fulldit.attention import attend


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked softmax attention written out; rows without a real key give zeros."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    weights = torch.nan_to_num(scores.softmax(-1))
    return torch.einsum("bhqk,bkhd->bqhd", weights, v)


def qkv(b: int, lq: int = 7, lk: int = 11, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, n, 2, 8, generator=g, requires_grad=True) for n in (lq, lk, lk)]


MASKS = {
    # guidance branches: two rows with every key, one row with the video keys only (a prefix)
    "guidance": [[1] * 11, [1] * 11, [1] * 6 + [0] * 5],
    # rows sharing a pattern are not neighbours, and a pattern that is not a contiguous range
    "scattered": [[1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1], [1] * 11, [1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1]],
    # a row without any real key
    "empty row": [[1] * 11, [0] * 11, [1] * 3 + [0] * 8],
    # more patterns than MAX_DENSE_GROUPS: one masked call
    "many": [[1] * (i + 1) + [0] * (10 - i) for i in range(6)],
}


@pytest.mark.parametrize("name", list(MASKS))
def test_split_mask_equals_masked_attention(name: str) -> None:
    mask = torch.tensor(MASKS[name], dtype=torch.bool)
    q, k, v = qkv(len(mask))
    out = attend(q, k, v, mask)
    want = reference(q, k, v, mask)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    want_grads = torch.autograd.grad(want.square().sum(), (q, k, v))
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_patterns_run_as_dense_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guidance batch runs two dense calls over only the real keys (no mask reaches SDPA)."""
    calls = []
    real = attention.sdpa

    def spy(q, k, v, mask=None):
        calls.append((q.shape[0], k.shape[1], mask is None))
        return real(q, k, v, mask)

    monkeypatch.setattr(attention, "sdpa", spy)
    q, k, v = qkv(3)
    attend(q, k, v, torch.tensor(MASKS["guidance"], dtype=torch.bool))
    assert sorted(calls) == [(1, 6, True), (2, 11, True)]
    calls.clear()
    attend(q, k, v, torch.ones(3, 11, dtype=torch.bool))
    assert calls == [(3, 11, True)]


def test_mask_groups_index_on_the_device_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyMask's scattered rows and keys are index tensors made once: the calls that reuse it copy nothing from
    the host (on a GPU each such copy waits for the queue to drain)."""
    km = attention.key_mask(torch.tensor(MASKS["scattered"], dtype=torch.bool))
    for rows, keys in km.groups:
        assert all(isinstance(i, (slice, torch.Tensor)) for i in (rows, keys))
    assert any(isinstance(i, torch.Tensor) for group in km.groups for i in group)  # the case is one with gathers
    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **kw: made.append(a) or real(*a, **kw))
    q, k, v = qkv(3)
    out = attend(q, k, v, km)
    torch.testing.assert_close(out, reference(q, k, v, km.mask), atol=1e-5, rtol=1e-5)
    assert made == []


def reference_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> tuple:
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    lse = scores.logsumexp(-1)  # (B, H, Lq); -inf for rows without keys
    weights = torch.nan_to_num(scores.softmax(-1))
    return torch.einsum("bhqk,bkhd->bqhd", weights, v), lse.transpose(1, 2)


@pytest.mark.parametrize("name", ["guidance", "scattered", "empty row", "many"])
def test_attention_with_log_sum_exp_and_its_gradients(name: str) -> None:
    """attend_lse: output and log-sum-exp equal the written-out softmax, and so do the gradients of both."""
    from fulldit.attention import key_mask
    from fulldit.attention_lse import attend_lse

    mask = torch.tensor(MASKS[name], dtype=torch.bool)
    q, k, v = qkv(len(mask), seed=1)
    out, lse = attend_lse(q, k, v, key_mask(mask))
    want_out, want_lse = reference_lse(q, k, v, mask)
    torch.testing.assert_close(out, want_out, atol=1e-5, rtol=1e-5)
    real = torch.isfinite(want_lse)
    assert torch.equal(torch.isfinite(lse), real)  # rows without a key: -inf
    torch.testing.assert_close(lse[real], want_lse[real], atol=1e-5, rtol=1e-5)
    g = torch.Generator().manual_seed(2)
    g_out, g_lse = torch.randn(out.shape, generator=g), torch.randn(lse.shape, generator=g)
    loss = lambda o, l: (o * g_out).sum() + (torch.where(real, l, 0.0) * g_lse).sum()  # noqa: E731
    grads = torch.autograd.grad(loss(out, lse), (q, k, v))
    want = torch.autograd.grad(loss(want_out, want_lse), (q, k, v))
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def gated_reference(gate: torch.Tensor, qv, kv, vv, kc, vc, cond: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """One softmax over [video, conditions] written out, the condition keys' scores raised by log gate (per head)."""
    k, v = torch.cat([kv, kc], 1), torch.cat([vv, vc], 1)
    scores = torch.einsum("bqhd,bkhd->bhqk", qv, k) / qv.shape[-1] ** 0.5
    bias = (
        torch.cat([torch.zeros(kv.shape[1]), torch.ones(kc.shape[1])])[None, None, None, :]
        * gate.log()[None, :, None, None]
    )  # gate 0: -inf, the condition keys take no mass
    real = torch.cat([torch.ones(cond.shape[0], kv.shape[1], dtype=torch.bool), cond], 1)
    scores = (scores + torch.nan_to_num(bias, neginf=-1e30)).masked_fill(~real[:, None, None, :], float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)


@pytest.mark.parametrize("gate", [[0.3, 1.0], [0.0, 0.6], [0.0, 0.0]])
@pytest.mark.parametrize("name", ["guidance", "empty row", "many"])
def test_gated_merge_is_one_softmax_forward_and_backward(gate: list[float], name: str) -> None:
    """gated_merge's fused backward (the fused kernels given the merged output and log-sum-exp) equals the gradient
    of the written-out softmax over [video, conditions] with log g on the condition keys, gate's included (1e-5,
    float32), and so does the route that differentiates the log-sum-exps. Closed gates: exactly the video's
    attention, and exactly no gradient for the condition keys and values."""
    from fulldit.attention import key_mask
    from fulldit.attention_lse import _backward_kernel, _merge, attend_lse, gated_merge

    assert _backward_kernel("cpu", torch.float32) is not None  # the fused route runs here
    cond = torch.tensor(MASKS[name], dtype=torch.bool)
    g = torch.Generator().manual_seed(3)
    qv, kv, vv = (torch.randn(len(cond), 9, 2, 8, generator=g, requires_grad=True) for _ in range(3))
    kc, vc = (torch.randn(len(cond), 11, 2, 8, generator=g, requires_grad=True) for _ in range(2))
    gate_t = torch.tensor(gate, requires_grad=True)
    inputs = (gate_t, qv, kv, vv, kc, vc)
    out = gated_merge(gate_t, qv, kv, vv, kc, vc, key_mask(cond))
    want = gated_reference(gate_t, qv, kv, vv, kc, vc, cond)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    upstream = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad(out, inputs, upstream)
    o_v, l_v = attend_lse(qv, kv, vv, None)
    o_c, l_c = attend_lse(qv, kc, vc, key_mask(cond))
    differentiated = torch.autograd.grad(_merge(gate_t, o_v, l_v, o_c, l_c)[0], inputs, upstream)
    written_out = torch.autograd.grad(want, inputs[1:], upstream)  # log 0 has no gradient to compare at gate 0
    for a, b in zip(grads, differentiated):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[1:], written_out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if gate == [0.0, 0.0]:
        assert torch.equal(out, attend(qv, kv, vv, None))
        assert not grads[4].any() and not grads[5].any()
        assert grads[0].abs().min() > 0  # a closed gate still learns to open


def test_a_backward_kernel_that_ignores_the_merged_softmax_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe rejects a backward that recomputes its own output and log-sum-exp (right for one attention, wrong
    for a share of a merged one); with none left, gated_merge differentiates the log-sum-exps, same gradients."""
    from fulldit import attention_lse
    from fulldit.attention_lse import _cpu_flash, _cpu_flash_backward, gated_merge

    def own_softmax(grad_out, q, k, v, out, lse):  # noqa: ANN001, ANN202
        own_out, own_lse = _cpu_flash(q, k, v)
        return _cpu_flash_backward(grad_out, q, k, v, own_out, own_lse)

    g = torch.Generator().manual_seed(4)
    qv, kv, vv, kc, vc = (torch.randn(2, 6, 2, 8, generator=g, requires_grad=True) for _ in range(5))
    gate = torch.tensor([0.5, 0.8], requires_grad=True)
    fused = torch.autograd.grad(gated_merge(gate, qv, kv, vv, kc, vc, None).sum(), (gate, qv, kc))
    monkeypatch.setitem(attention_lse.BACKWARD, "cpu", [own_softmax])
    attention_lse._backward_kernel.cache_clear()
    try:
        assert attention_lse._backward_kernel("cpu", torch.float32) is None
        fallback = torch.autograd.grad(gated_merge(gate, qv, kv, vv, kc, vc, None).sum(), (gate, qv, kc))
    finally:
        monkeypatch.undo()
        attention_lse._backward_kernel.cache_clear()
    for a, b in zip(fused, fallback):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_the_fastest_passing_backward_kernel_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Of the backward kernels that pass the probe, `_backward_kernel` keeps the fastest (timed once), never one that
    fails the probe however fast."""
    import time

    from fulldit import attention_lse
    from fulldit.attention_lse import _cpu_flash, _cpu_flash_backward

    def slow(*args):  # noqa: ANN002, ANN202
        time.sleep(0.02)
        return _cpu_flash_backward(*args)

    def fast(*args):  # noqa: ANN002, ANN202
        return _cpu_flash_backward(*args)

    def wrong(grad_out, q, k, v, out, lse):  # noqa: ANN001, ANN202
        own_out, own_lse = _cpu_flash(q, k, v)
        return _cpu_flash_backward(grad_out, q, k, v, own_out, own_lse)

    monkeypatch.setattr(attention_lse, "TIMING_SHAPE", (1, 64, 2, 16))
    try:
        for kernels, want in (([slow, fast], fast), ([fast, slow], fast), ([wrong, slow], slow), ([slow], slow)):
            monkeypatch.setitem(attention_lse.BACKWARD, "cpu", kernels)
            attention_lse._backward_kernel.cache_clear()
            assert attention_lse._backward_kernel("cpu", torch.float32) is want
    finally:
        monkeypatch.undo()
        attention_lse._backward_kernel.cache_clear()
