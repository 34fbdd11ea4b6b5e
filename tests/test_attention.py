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


def reference_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> tuple:
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    lse = scores.logsumexp(-1)  # (B, H, Lq); -inf for rows without keys
    weights = torch.nan_to_num(scores.softmax(-1))
    return torch.einsum("bhqk,bkhd->bqhd", weights, v), lse.transpose(1, 2)


@pytest.mark.parametrize("name", ["guidance", "scattered", "empty row", "many"])
def test_attention_with_log_sum_exp_and_its_gradients(name: str) -> None:
    """attend_lse: output and log-sum-exp equal the written-out softmax, and so do the gradients of both."""
    from fulldit.attention import attend_lse, key_mask

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
