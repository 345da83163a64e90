"""grpo.py against hand-written numpy references on small random tensors (float64 throughout)."""
import numpy as np
import pytest
import torch

from tooln1_min.grpo import (agg_loss, group_advantages, grpo_loss, kl_k3, loss_counts, masked_mean,
                             token_entropy, token_logprobs)

MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


# ----------------------------------------------------------------------------- numpy references

def np_advantages(r, n, eps=1e-6, scale_std=True):
    out = np.empty_like(r)
    for i in range(0, len(r), n):
        g = r[i:i + n]
        mean, std = (0.0, 1.0) if n == 1 else (g.mean(), g.std(ddof=1))
        out[i:i + n] = (g - mean) / (std + eps) if scale_std else g - mean
    return out


def np_agg(x, m, mode, num_tokens=None, num_seqs=None, max_len=None):
    m = m.astype(bool)
    if mode == "token-mean":
        return x[m].sum() / (m.sum() if num_tokens is None else num_tokens)
    seqs = []
    for row, mrow in zip(x, m):
        if not mrow.any():
            continue
        seqs.append(row[mrow].mean() if mode == "seq-mean-token-mean"
                    else row[mrow].sum() / (x.shape[1] if max_len is None else max_len))
    return sum(seqs) / (len(seqs) if num_seqs is None else num_seqs)


def np_k3(logp, ref):
    d = np.clip(ref - logp, -20, 20)
    return np.clip(np.exp(d) - d - 1, -10, 10)


def np_grpo(logp, old, ref, adv, m, clip_eps=0.2, clip_eps_high=None, kl_coef=1e-3, mode="token-mean",
            entropy=None, entropy_coef=0.0, **counts):
    hi = clip_eps if clip_eps_high is None else clip_eps_high
    ratio = np.exp(logp - old)
    a = adv[:, None]
    l1, l2 = -a * ratio, -a * np.clip(ratio, 1 - clip_eps, 1 + hi)
    pg = np.maximum(l1, l2)
    kl = np_k3(logp, ref)
    loss = np_agg(pg, m, mode, **counts) + kl_coef * np_agg(kl, m, mode, **counts)
    if entropy is not None:
        loss -= entropy_coef * np_agg(entropy, m, mode, **counts)
    mb = m.astype(bool)
    metrics = dict(pg_loss=pg[mb].mean(), kl=kl[mb].mean(), clip_frac=(l2 > l1)[mb].mean(),
                   approx_kl=(old - logp)[mb].mean(), ratio_mean=ratio[mb].mean(), ratio_max=ratio[mb].max())
    return loss, metrics


def make_batch(B=5, T=7, seed=0):
    g = np.random.default_rng(seed)
    logp = np.log(g.uniform(0.05, 0.95, (B, T)))
    old = logp + g.normal(0, 0.3, (B, T))         # ratios spread well past 1 +- 0.2: both clip sides fire
    ref = logp + g.normal(0, 0.5, (B, T))
    adv = g.normal(0, 1, B)
    lengths = g.integers(1, T + 1, B)
    lengths[0] = T
    m = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float64)
    ent = g.uniform(0, 3, (B, T))
    return logp, old, ref, adv, m, ent


def t(x):
    return torch.tensor(x, dtype=torch.float64)


# ----------------------------------------------------------------------------- group_advantages

@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("scale_std", [True, False])
def test_group_advantages_matches_numpy(n, scale_std):
    r = np.random.default_rng(n).integers(0, 2, 3 * n).astype(np.float64)   # binary rewards, as Tool-N1
    r[:n] = 1.0                                                              # an all-correct group: adv 0
    got = group_advantages(t(r), n, scale_std=scale_std)
    np.testing.assert_allclose(got.numpy(), np_advantages(r, n, scale_std=scale_std), rtol=1e-12, atol=1e-12)
    if n > 1:
        assert torch.all(got[:n] == 0)


def test_group_advantages_unbiased_std_and_size_one():
    adv = group_advantages(t([1.0, 0.0]), 2, eps=0.0)
    # mean 0.5, unbiased std sqrt(0.5): +-0.5/0.7071 (the biased std, 0.5, would give +-1)
    np.testing.assert_allclose(adv.numpy(), [0.5 / np.sqrt(0.5), -0.5 / np.sqrt(0.5)])
    np.testing.assert_allclose(group_advantages(t([1.0, 0.0, 3.0]), 1, eps=0.0).numpy(), [1.0, 0.0, 3.0])


def test_group_advantages_errors():
    with pytest.raises(ValueError, match="group_size=4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.zeros(2, 3), 3)


# ----------------------------------------------------------------------------- masked_mean, agg_loss, kl

def test_masked_mean_ignores_padding_values():
    x = t([[1.0, 2.0, float("inf")], [4.0, float("nan"), float("nan")], [9.0, 9.0, 9.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(masked_mean(x, m, dim=-1).numpy(), [1.5, 4.0, 0.0])
    assert masked_mean(x, m).item() == pytest.approx(7.0 / 3)


@pytest.mark.parametrize("mode", MODES)
def test_agg_loss_matches_numpy(mode):
    logp, _, _, _, m, x = make_batch(seed=1)
    m[2] = 0                                                  # an empty row: counted in no mode
    np.testing.assert_allclose(agg_loss(t(x), t(m), mode).item(), np_agg(x, m, mode), rtol=1e-12)
    np.testing.assert_allclose(agg_loss(t(x), t(m), mode, num_tokens=11.0, num_seqs=3.0, max_len=20).item(),
                               np_agg(x, m, mode, num_tokens=11.0, num_seqs=3.0, max_len=20), rtol=1e-12)
    with pytest.raises(ValueError, match="unknown loss_agg"):
        agg_loss(t(x), t(m), "seq-sum")


def test_kl_k3_and_its_clamps():
    logp = t([0.0, 0.0, 0.0, 0.0, -30.0])
    ref = t([-0.5, 0.3, 5.0, -30.0, 0.0])     # small both ways; exp(5)-6=142 -> 10; -30 -> 29; log-ratio 30 -> 20
    got = kl_k3(logp, ref).numpy()
    np.testing.assert_allclose(got, np_k3(logp.numpy(), ref.numpy()), rtol=1e-12)
    assert got[2] == 10.0 and got[4] == 10.0
    np.testing.assert_allclose(got[3], min(np.exp(-20) + 20 - 1, 10.0))
    assert np.all(got >= 0)


# ----------------------------------------------------------------------------- grpo_loss

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clip_eps_high", [None, 0.28])
def test_grpo_loss_matches_numpy(mode, clip_eps_high):
    logp, old, ref, adv, m, ent = make_batch(seed=2)
    kw = dict(clip_eps=0.2, clip_eps_high=clip_eps_high, kl_coef=0.05)
    loss, metrics = grpo_loss(t(logp), t(old), t(ref), t(adv), t(m), loss_agg=mode, entropy=t(ent),
                              entropy_coef=0.01, **kw)
    want, want_metrics = np_grpo(logp, old, ref, adv, m, mode=mode, entropy=ent, entropy_coef=0.01, **kw)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    for k, v in want_metrics.items():
        np.testing.assert_allclose(metrics[k].item(), v, rtol=1e-12, err_msg=k)
    assert metrics["entropy"].item() == pytest.approx(ent[m.astype(bool)].mean())
    assert 0 < metrics["clip_frac"].item() < 1
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())


def test_clip_both_sides_and_clip_high():
    # one token per case: ratio 1.5 and 0.5 with positive / negative advantage
    old = torch.zeros(4, 1, dtype=torch.float64)
    logp = torch.log(t([[1.5], [0.5], [1.5], [0.5]]))
    adv = t([1.0, 1.0, -1.0, -1.0])
    m = torch.ones(4, 1)
    pg = lambda **kw: grpo_loss(logp, old, None, adv, m, kl_coef=0.0, loss_agg="seq-mean-token-sum-norm",
                                max_len=1, num_seqs=1, **kw)
    # A>0, r=1.5: clipped to 1.2 (-1.2); A>0, r=0.5: unclipped -0.5 is larger; A<0, r=1.5: +1.5; A<0, r=0.5: 0.8
    loss, metrics = pg(clip_eps=0.2)
    assert loss.item() == pytest.approx(-1.2 - 0.5 + 1.5 + 0.8)
    assert metrics["clip_frac"].item() == pytest.approx(0.5)
    loss, _ = pg(clip_eps=0.2, clip_eps_high=0.28)             # only the upper bound moves: 1.2 -> 1.28
    assert loss.item() == pytest.approx(-1.28 - 0.5 + 1.5 + 0.8)


def test_gradient_is_policy_gradient_when_on_policy():
    logp, _, ref, adv, m, _ = make_batch(seed=3)
    lp = t(logp).requires_grad_()
    for mode in MODES:
        loss, metrics = grpo_loss(lp, lp.detach(), t(ref), t(adv), t(m), kl_coef=0.0, loss_agg=mode)
        (grad,) = torch.autograd.grad(loss, lp)
        if mode == "token-mean":
            want = -adv[:, None] * m / m.sum()               # REINFORCE: -A * mask / num_tokens
        elif mode == "seq-mean-token-mean":
            want = -adv[:, None] * m / m.sum(1, keepdims=True) / len(adv)
        else:
            want = -adv[:, None] * m / m.shape[1] / len(adv)
        np.testing.assert_allclose(grad.numpy(), want, rtol=1e-12, atol=1e-15, err_msg=mode)
        assert metrics["clip_frac"].item() == 0 and metrics["ratio_mean"].item() == 1


def test_padding_garbage_does_not_leak():
    logp, old, ref, adv, m, _ = make_batch(seed=4)
    pad = m == 0
    bad = t(logp).clone()
    bad[torch.from_numpy(pad)] = -1e4                         # padding log-probs that would overflow exp
    bad.requires_grad_()
    loss, metrics = grpo_loss(bad, t(old), t(ref), t(adv), t(m))
    loss.backward()
    want, _ = np_grpo(logp, old, ref, adv, m)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    assert torch.isfinite(bad.grad).all() and torch.all(bad.grad[torch.from_numpy(pad)] == 0)
    assert all(torch.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("mode", MODES)
def test_micro_batches_and_ranks_sum_to_full_batch(mode):
    logp, old, ref, adv, m, ent = make_batch(B=8, T=9, seed=5)
    kw = dict(kl_coef=0.1, loss_agg=mode, clip_eps_high=0.3, entropy_coef=0.01)
    full_lp = t(logp).requires_grad_()
    full, _ = grpo_loss(full_lp, t(old), t(ref), t(adv), t(m), entropy=t(ent), **kw)
    full.backward()

    world_size, T = 2, m.shape[1]
    num_tokens, num_seqs = (loss_counts(t(m)) / world_size).tolist()   # what all_reduce(SUM)/world_size gives
    lp = t(logp).requires_grad_()
    rank_losses = []
    for rows in (range(0, 4), range(4, 8)):                             # rank r holds rows[r]
        total = 0.0
        for micro in (list(rows)[:1], list(rows)[1:]):                  # uneven micro-batches
            width = int(m[micro].sum(1).max())                          # each padded to its own length
            sl = lambda x: x[micro][:, :width]
            loss, _ = grpo_loss(sl(lp), t(sl(old)), t(sl(ref)), t(adv[micro]), t(sl(m)), entropy=t(sl(ent)),
                                num_tokens=num_tokens, num_seqs=num_seqs, max_len=T, **kw)
            total = total + loss
        rank_losses.append(total)
    averaged = sum(rank_losses) / world_size                            # FSDP/DDP average over ranks
    averaged.backward()
    np.testing.assert_allclose(averaged.item(), full.item(), rtol=1e-12)
    np.testing.assert_allclose(lp.grad.numpy(), full_lp.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_grpo_loss_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="mask has shape"):
        grpo_loss(x, x, x, torch.zeros(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="advantages has shape"):
        grpo_loss(x, x, x, torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        grpo_loss(x, x, None, torch.zeros(2), torch.ones(2, 3))


# ----------------------------------------------------------------------------- token_logprobs, token_entropy

@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_matches_log_softmax(temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g) * 3
    targets = torch.randint(0, 11, (2, 5), generator=g)
    want = torch.log_softmax(logits / temperature, -1).gather(-1, targets[..., None])[..., 0]
    before = logits.clone()
    torch.testing.assert_close(token_logprobs(logits, targets, temperature), want)
    assert torch.equal(logits, before)                                  # fp32 input is never divided in place

    # bf16 logits (as the model returns them): result fp32, gradient as through log_softmax in fp32
    lb = logits.bfloat16().requires_grad_()
    got = token_logprobs(lb, targets, temperature)
    assert got.dtype == torch.float32
    ref_in = lb.detach().clone().requires_grad_()
    want = torch.log_softmax(ref_in.float() / temperature, -1).gather(-1, targets[..., None])[..., 0]
    torch.testing.assert_close(got, want)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(lb.grad, ref_in.grad)
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(logits, targets, 0.0)


def test_token_entropy_matches_numpy():
    z = np.random.default_rng(6).normal(0, 2, (2, 3, 7))
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(token_entropy(t(z)).numpy(), -(p * np.log(p)).sum(-1), atol=1e-6)  # fp32
    assert token_entropy(t(z).bfloat16()).dtype == torch.float32
    zt = z / 0.5
    pt = np.exp(zt - zt.max(-1, keepdims=True))
    pt /= pt.sum(-1, keepdims=True)
    np.testing.assert_allclose(token_entropy(t(z), 0.5).numpy(), -(pt * np.log(pt)).sum(-1), atol=1e-6)


# ---- found by mutating grpo.py (each survived the tests above) ----

def test_a_huge_logprob_on_padding_neither_overflows_nor_trains():
    """The log-ratio is clamped before exp: a padded position holding +1e4 (what a pad token may score) would make
    the ratio inf and the gradient NaN (the padding test above only tried -1e4, which underflows harmlessly)."""
    lp = torch.zeros(2, 3, dtype=torch.float64)
    lp[1, 2] = 1e4
    lp.requires_grad_()
    mask = torch.tensor([[1., 1, 1], [1, 1, 0]])
    loss, _ = grpo_loss(lp, torch.zeros(2, 3, dtype=torch.float64), None, torch.tensor([1., -1], dtype=torch.float64),
                        mask, kl_coef=0.0)
    loss.backward()
    assert torch.isfinite(lp.grad).all() and lp.grad[1, 2] == 0


def test_ratio_max_looks_at_valid_tokens_only():
    lp = torch.tensor([[0.0, 3.0]], dtype=torch.float64)
    _, met = grpo_loss(lp, torch.zeros(1, 2, dtype=torch.float64), None, torch.ones(1, dtype=torch.float64),
                       torch.tensor([[1., 0]]), kl_coef=0.0)
    assert met["ratio_max"].item() == 1.0  # not e^3 from the padded position
