"""GRPO math: group-normalised advantages, the clipped policy loss with a k3 KL penalty, token log-probs (the
reference definitions; training runs their chunked form, model.head_logprobs).

Tool-N1 (arXiv 2505.00024) trains with GRPO in verl: a binary tool-call reward per completion, advantages
normalised within the group of completions sampled for one prompt, a PPO-clipped surrogate, and a KL penalty to
the frozen reference policy (verl's `low_var_kl`, the k3 estimator). Everything here is a pure function on
tensors, so the training loop and the tests can call it with nothing else set up.

Shapes: B completions, T completion tokens (right-padded; `mask` marks the valid ones), V vocabulary.

Micro-batches and ranks. `loss_agg="token-mean"` means: sum over every valid token of the whole mini-batch (one
optimizer step, all micro-batches on all ranks) divided by the number of those tokens. A mean of per-micro-batch
means weights short micro-batches too heavily, so `grpo_loss` takes the global denominators:

    counts = loss_counts(mask_of_this_rank_mini_batch)        # tensor([num_tokens, num_seqs]) on this rank
    dist.all_reduce(counts)                                   # SUM over ranks (the loop does this, not us)
    num_tokens, num_seqs = (counts / world_size).tolist()     # / world_size: FSDP/DDP *average* gradients
    for micro in micro_batches:                               # no division by the number of micro-batches
        loss, metrics = grpo_loss(..., num_tokens=num_tokens, num_seqs=num_seqs, max_len=max_len)
        loss.backward()                                       # gradients accumulate (sum)

Each rank then holds world_size * d(sum of its tokens' losses)/N, and the average over ranks is exactly
d(global token-mean)/dθ. With a gradient reduction that sums instead of averaging, pass the counts undivided.
Single process: num_tokens = mask.sum() over the whole mini-batch. The seq-mean modes use num_seqs the same way;
Dr. GRPO's mode also needs one `max_len` for all micro-batches (each micro-batch may be padded to its own T).
"""
import torch

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def masked_mean(x, mask, dim=None):
    """Mean of x over the positions where mask is true (mask: 0/1 or bool, same shape as x); dim as in sum.

    Padding positions are selected away with `where`, not multiplied by 0, so an inf/nan there cannot leak in.
    A slice with no valid position gives 0 rather than nan.
    """
    mask = mask.bool()
    total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim)
    count = mask.sum(dim) if dim is not None else mask.sum()
    return total / count.clamp(min=1).to(x.dtype)


def group_advantages(rewards, group_size, eps=1e-6, scale_std=True):
    """GRPO advantages: each reward normalised within the group of samples drawn for the same prompt.

    rewards: (num_prompts * group_size,) float, group-contiguous (sample j of prompt i at i*group_size + j).
    Returns (num_prompts * group_size,) advantages: (r - mean) / (std + eps), std unbiased (torch.std default,
    as verl's GRPO estimator). scale_std=False returns r - mean (Dr. GRPO drops the std division, which biases
    towards groups with little variance). group_size 1 has no group statistics: verl uses mean 0 and std 1, so
    the advantage is the reward itself (divided by 1 + eps); we do the same.
    """
    if rewards.dim() != 1:
        raise ValueError(f"group_advantages: rewards must be 1-D (num_prompts*group_size,), got {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"group_advantages: {rewards.numel()} rewards is not a whole number of groups of "
                         f"group_size={group_size}; expected num_prompts*group_size, group-contiguous")
    groups = rewards.reshape(-1, group_size)                     # (num_prompts, group_size)
    if group_size == 1:
        mean, std = torch.zeros_like(groups), torch.ones_like(groups)
    else:
        mean, std = groups.mean(-1, keepdim=True), groups.std(-1, keepdim=True)
    advantages = groups - mean
    if scale_std:
        advantages = advantages / (std + eps)
    return advantages.reshape(-1)                                # (num_prompts * group_size,)


def loss_counts(mask):
    """Denominators for `grpo_loss` from a (B, T) mask: tensor([num_tokens, num_seqs]) in float32.

    num_seqs counts sequences with at least one valid token (an empty row adds nothing to any mode). Sum this
    over micro-batches, all-reduce it over ranks, and divide by world_size under FSDP/DDP (module docstring).
    """
    mask = mask.bool()
    return torch.stack([mask.sum(), mask.any(-1).sum()]).float()


def agg_loss(loss_mat, mask, loss_agg="token-mean", num_tokens=None, num_seqs=None, max_len=None):
    """Reduce a (B, T) per-token loss to a scalar.

    token-mean:              sum of valid tokens / num_tokens (verl's default; DAPO's token-level loss).
    seq-mean-token-mean:     per sequence, mean over its valid tokens; then sum / num_seqs (original GRPO).
    seq-mean-token-sum-norm: per sequence, sum over its valid tokens / max_len (default T); then sum / num_seqs
                             (Dr. GRPO: a constant normaliser removes the length bias).
    num_tokens / num_seqs default to this call's own counts (see `loss_counts`); pass global ones for micro-batches.
    """
    mask = mask.bool()
    zero = torch.zeros((), dtype=loss_mat.dtype, device=loss_mat.device)
    token_sum = torch.where(mask, loss_mat, zero)                # (B, T), padding selected away
    local_tokens, local_seqs = loss_counts(mask)
    if loss_agg == "token-mean":
        denom = local_tokens.clamp(min=1) if num_tokens is None else num_tokens
        return token_sum.sum() / denom
    if loss_agg == "seq-mean-token-mean":
        seq_losses = token_sum.sum(-1) / mask.sum(-1).clamp(min=1)            # (B,)
    elif loss_agg == "seq-mean-token-sum-norm":
        seq_losses = token_sum.sum(-1) / (loss_mat.shape[-1] if max_len is None else max_len)  # (B,)
    else:
        raise ValueError(f"agg_loss: unknown loss_agg {loss_agg!r}; expected one of {LOSS_AGG_MODES}")
    denom = local_seqs.clamp(min=1) if num_seqs is None else num_seqs
    return seq_losses.sum() / denom


def kl_k3(logprobs, ref_logprobs):
    """Per-token KL(π || π_ref) by the k3 estimator: exp(ref - logp) - (ref - logp) - 1 (non-negative, low variance).

    As verl's low_var_kl: the log-ratio is clamped to [-20, 20] before exp (exp would overflow to inf) and the
    result to [-10, 10] (one token far off the reference cannot dominate the batch). (B, T) -> (B, T).
    """
    log_ratio = torch.clamp(ref_logprobs - logprobs, min=-20.0, max=20.0)
    kl = torch.exp(log_ratio) - log_ratio - 1
    return torch.clamp(kl, min=-10.0, max=10.0)


def ppo_clip_losses(logprobs, old_logprobs, advantages, clip_eps=0.2, clip_eps_high=None):
    """Per-token PPO-clipped surrogate (to minimise) -> (pg_losses, ratio, clipped), each (B, T).

    ratio = exp(logp - old). pg_losses = max(-A * ratio, -A * clip(ratio, 1 - clip_eps, 1 + clip_eps_high)),
    the pessimistic bound of PPO. clip_eps_high (DAPO's clip-higher) defaults to clip_eps. `clipped` marks the
    tokens where the clipped term won, i.e. carry no gradient. advantages: (B,) per sequence, broadcast over T.
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    # Clamp as verl does: garbage log-probs on padding must not make exp() overflow into inf * 0 = nan.
    log_ratio = torch.clamp(logprobs - old_logprobs, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)                                 # (B, T)
    adv = advantages.unsqueeze(-1)                               # (B, 1)
    unclipped = -adv * ratio
    clipped_loss = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + eps_high)
    return torch.maximum(unclipped, clipped_loss), ratio, clipped_loss > unclipped


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps=0.2, clip_eps_high=None,
              kl_coef=1e-3, loss_agg="token-mean", entropy=None, entropy_coef=0.0, num_tokens=None, num_seqs=None,
              max_len=None):
    """GRPO policy loss: agg(pg_losses) + kl_coef * agg(k3 KL) - entropy_coef * agg(entropy) -> (loss, metrics).

    logprobs, old_logprobs, ref_logprobs, mask, entropy: (B, T) over completion tokens; advantages: (B,).
    ref_logprobs may be None when kl_coef == 0. All three terms use the same aggregation (`agg_loss`), as verl.
    num_tokens / num_seqs / max_len: global denominators for micro-batching; see the module docstring.

    metrics: dict of 0-d detached tensors (call .item() when logging; a float here would sync the GPU on every
    micro-batch). They are plain means over this call's valid tokens, whatever loss_agg and the counts are:
    pg_loss (mean surrogate), kl (mean k3, only with ref_logprobs), clip_frac (fraction of tokens where the
    clipped term was active), approx_kl (mean of old - logp: the k1 estimate of KL(old || π), verl's ppo_kl),
    ratio_mean, ratio_max, entropy (only when given).
    """
    B, T = logprobs.shape
    for name, t in (("old_logprobs", old_logprobs), ("ref_logprobs", ref_logprobs), ("mask", mask),
                    ("entropy", entropy)):
        if t is not None and t.shape != (B, T):
            raise ValueError(f"grpo_loss: {name} has shape {tuple(t.shape)}, expected logprobs' shape {(B, T)}")
    if advantages.shape != (B,):
        raise ValueError(f"grpo_loss: advantages has shape {tuple(advantages.shape)}, expected ({B},) per sequence")
    if ref_logprobs is None and kl_coef != 0:
        raise ValueError(f"grpo_loss: kl_coef={kl_coef} needs ref_logprobs")
    mask = mask.bool()
    agg = dict(loss_agg=loss_agg, num_tokens=num_tokens, num_seqs=num_seqs, max_len=max_len)

    pg_losses, ratio, clipped = ppo_clip_losses(logprobs, old_logprobs, advantages, clip_eps, clip_eps_high)
    loss = agg_loss(pg_losses, mask, **agg)
    with torch.no_grad():
        metrics = {
            "pg_loss": masked_mean(pg_losses, mask),
            "clip_frac": masked_mean(clipped.to(logprobs.dtype), mask),
            "approx_kl": masked_mean(old_logprobs - logprobs, mask),
            "ratio_mean": masked_mean(ratio, mask),
            "ratio_max": torch.where(mask, ratio, torch.zeros_like(ratio)).max(),  # ratio > 0: 0 if no valid token
        }
    if ref_logprobs is not None:
        kl = kl_k3(logprobs, ref_logprobs)
        if kl_coef != 0:
            loss = loss + kl_coef * agg_loss(kl, mask, **agg)
        metrics["kl"] = masked_mean(kl.detach(), mask)
    if entropy is not None:
        if entropy_coef != 0:
            loss = loss - entropy_coef * agg_loss(entropy, mask, **agg)
        metrics["entropy"] = masked_mean(entropy.detach(), mask)
    return loss, metrics


# The definitions below are the reference for what training computes: the trainer never holds full logits, it
# scores completions through model.head_logprobs, the same arithmetic a chunk of the vocabulary projection at a
# time (tests/test_model.py checks the two equal: values, entropy and gradients).

def token_logprobs(logits, targets, temperature=1.0):
    """log softmax(logits / temperature) at the targets, in fp32. logits (B, T, V), targets (B, T) -> (B, T).

    Computed as logit[target] - logsumexp(logits), which never materialises the (B, T, V) log-softmax: the only
    full-size fp32 tensor is the upcast logits (none extra when they are already fp32). Sampling used the same
    temperature, so the log-probs must be of the tempered distribution (verl divides the logits too).
    """
    if temperature <= 0:
        raise ValueError(f"token_logprobs: temperature must be > 0, got {temperature}")
    x = logits.float()                                           # (B, T, V) fp32; a copy unless already fp32
    if temperature != 1.0:
        # In place when .float() made a fresh copy (its backward keeps nothing), else out of place so the
        # caller's fp32 tensor is left alone.
        x = x / temperature if x is logits else x.div_(temperature)
    target_logits = x.gather(-1, targets.unsqueeze(-1)).squeeze(-1)   # (B, T)
    return target_logits - torch.logsumexp(x, dim=-1)


def token_entropy(logits, temperature=1.0):
    """Entropy of softmax(logits / temperature) per position, in fp32. (B, T, V) -> (B, T).

    H = logsumexp(z) - sum(softmax(z) * z), which avoids log(0) for tokens with probability that underflows.
    """
    x = logits.float()
    if temperature != 1.0:
        x = x / temperature
    return torch.logsumexp(x, dim=-1) - (torch.softmax(x, dim=-1) * x).sum(-1)
