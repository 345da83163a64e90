"""Tool-N1 training: GRPO with the binary tool-call reward (or SFT), FSDP2 from one CPU to many GPUs.

    python train.py                                   # the CPU demo: synthetic data, tiny model, SFT then GRPO
    torchrun --nproc_per_node=8 train.py --model Qwen2.5-7B-Instruct --data train.jsonl --preset tool-n1

One GRPO step (paper Sec. 3; verl's loop), `grpo_step` below, phase by phase:
  1. rollout          sample n completions per prompt with the sampler (a full-weight copy on every rank)
  2. reward           Tool-N1's binary reward per completion                 (both: tooln1_min.rollout.rollout)
  3. group advantages (r - mean) / (std + 1e-6) within each prompt's group   (tooln1_min.grpo.group_advantages)
  4. plan             mini-batches of whole groups, micro-batches under a token budget      (plan_updates)
  5. old/ref logprobs the policy before the update and the frozen reference   (old_and_ref_logprobs)
  6. policy update    clipped surrogate + k3 KL, one AdamW step per mini-batch (policy_update, grpo.grpo_loss)
  7. weight sync      the updated weights into the sampler's copy                     (dist.sync_sampler)
and `step_metrics` sums what every rank saw into one line of metrics.jsonl.
"""
import argparse
import importlib.util
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields

import torch

from tooln1_min import checkpoint as ckpt
from tooln1_min import dist as tdist
from tooln1_min.batching import collate, forward_logprobs, make_sequences, pad_plan, plan_micro_batches
from tooln1_min.data import load_records, render_target, shuffle_records
from tooln1_min.dist import log, sync_sampler
from tooln1_min.grpo import LOSS_AGG_MODES, grpo_loss, group_advantages
from tooln1_min.model import ModelConfig, Transformer, read_json
from tooln1_min.reward import get_reward_fn
from tooln1_min.rollout import encode_prompts, heldout_eval, rollout
from tooln1_min.tokenizer import Tokenizer


@dataclass
class TrainConfig:
    model: str = ""                  # HF checkpoint folder (config.json, safetensors, tokenizer files)
    data: str = ""                   # unified JSONL (python -m tooln1_min.data ...)
    eval_data: str = ""              # optional held-out JSONL, evaluated before and after training
    out: str = "runs/train"          # run folder: checkpoints, metrics.jsonl
    algo: str = "grpo"               # grpo | sft
    preset: str = ""
    # Tool-N1's RL settings, the one copy: paper Table 6 and its verl launch script (the defaults are the recipe)
    batch_size: int = 1024           # prompts per step
    mini_batch_size: int = 256       # prompts per optimizer step (4 updates per rollout: the clip is live)
    n: int = 5                       # samples per prompt (GRPO group)
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    lr: float = 1e-6
    warmup_steps: int = 0
    lr_decay: str = "none"           # after warm-up: none (constant, Tool-N1's) | linear | cosine (0 after the end)
    weight_decay: float = 0.01
    adam_beta2: float = 0.999
    grad_clip: float = 1.0
    kl_coef: float = 1e-3            # low-variance k3 KL to the frozen initial policy
    entropy_coef: float = 0.0
    clip_eps: float = 0.2
    clip_eps_high: float = 0.0       # 0: symmetric clip
    loss_agg: str = "token-mean"
    scale_std: bool = True           # False: Dr. GRPO advantages
    filter_groups: bool = False      # DAPO: groups whose samples all got the same reward (no advantage) skip the
                                     # scoring and the update; the token-mean is then over the informative groups
    epochs: int = 7
    max_steps: int = 0               # 0: epochs * len(data) / batch_size
    max_prompt_len: int = 4096
    max_new_tokens: int = 8192
    reward: str = "binary"
    sft_think: str = ""              # SFT target's think text ("" = the paper's no-reason SFT)
    # engineering
    micro_batch_tokens: int = 16384  # padded tokens per forward/backward
    pack_len: int = 4096             # the n samples of a prompt share one row (prompt computed once) up to this
                                     # many tokens; 0: one sequence per row
    rollout_batch_size: int = 512    # sequences decoded together
    activation_checkpointing: bool = False
    compile: bool = False            # torch.compile each transformer block of the trained (and reference) model
    cpu_offload: bool = False
    bf16: bool = True                # on CUDA: bf16 compute, fp32 master weights and gradient reduction
    save_every: int = 50
    keep_checkpoints: int = 2        # the last K numbered checkpoints stay (<out>/checkpoints/step-N) ...
    keep_every: int = 0              # ... and every M-th step's too (0: none)
    max_bad_steps: int = 3           # a non-finite loss or gradient norm skips the update; this many in a row stop
    eval_every: int = 0
    eval_max_new_tokens: int = 512
    seed: int = 0
    resume: str = ""                 # --resume: continue from <out>/checkpoint; --resume auto: if there is one
    overwrite: bool = False          # start over in a run folder that holds a run (deletes it)
    allow_config_change: bool = False  # resume with changed settings (recorded in config_changes.jsonl)
    log_every: int = 1
    log_to: str = ""                 # also log metrics to: tensorboard (<out>/tensorboard) and/or wandb (offline
                                     # unless WANDB_MODE says otherwise), comma-separated; neither is required


PRESETS = {  # the defaults above are Tool-N1's settings; the preset adds what its launch script sets for memory
    "tool-n1": dict(activation_checkpointing=True),  # 7B at 8k-token responses needs it
}


# ---- one GRPO step ----

def grpo_step(cfg, step, records, prompt_ids, streams, tok, policy, ref, sampler_model, optimizer, scheduler, device,
              world):
    t0 = time.time()
    episodes, reward_errors = rollout(  # 1. rollout and 2. reward
        sampler_model, tok, records, prompt_ids, n=cfg.n, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, reward_fn=get_reward_fn(cfg.reward), seed=cfg.seed * 1_000_003 + step,
        top_p=cfg.top_p, top_k=cfg.top_k, max_batch_size=cfg.rollout_batch_size, progress=True, stream_ids=streams)
    t1 = time.time()
    rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float)
    advantages = group_advantages(rewards, cfg.n, scale_std=cfg.scale_std)  # 3. group advantages
    # A group whose rewards are all equal has zero advantage everywhere: only its KL term would train.
    informative = (rewards.view(-1, cfg.n).std(-1) > 0 if cfg.n > 1 else torch.ones(len(records), dtype=torch.bool))
    keep = informative.repeat_interleave(cfg.n).tolist() if cfg.filter_groups else [True] * len(episodes)
    seqs = make_sequences([e.prompt_ids for e in episodes], [e.completion_ids for e in episodes])
    plans = plan_updates(cfg, seqs, keep, world, device)  # 4. plan
    old, refs = old_and_ref_logprobs(cfg, policy, ref, seqs, plans, tok, device)  # 5. old/ref logprobs
    t2 = time.time()
    sums, grad_norms, scored = policy_update(cfg, policy, optimizer, scheduler, seqs, plans, advantages, old, refs,
                                             tok, device, world)  # 6. policy update
    sync_sampler(policy, sampler_model)  # 7. weight sync
    sums = {k: float(v) for k, v in sums.items()}  # waits for the update's queued kernels: part of t_update
    t3 = time.time()
    gaps = sampler_gaps(plans, scored, seqs, episodes)
    return step_metrics(episodes, rewards, informative, reward_errors, sums, grad_norms, gaps, scheduler, device,
                        world, times=(t0, t1, t2, t3))


def plan_updates(cfg, seqs, keep, world, device) -> list[list[list[int]]]:
    """Mini-batches (one optimizer step each) of whole groups, this rank's share of mini_batch_size prompts,
    each cut into micro-batches of <= micro_batch_tokens padded tokens: plans[m][j] = sequence indices. Sequences
    not kept (filtered groups) are left out; every rank gets the same number of micro-batches per mini-batch."""
    per_rank = cfg.mini_batch_size // world * cfg.n
    plans = []
    for lo in range(0, len(seqs), per_rank):
        mini = [i for i in range(lo, min(lo + per_rank, len(seqs))) if keep[i]]
        plan = [[mini[j] for j in g] for g in
                plan_micro_batches([seqs[i] for i in mini], cfg.micro_batch_tokens, cfg.pack_len)]
        plans.append(pad_plan(plan, max_over_ranks(len(plan), device)))
    return plans


def max_over_ranks(n: int, device) -> int:
    return int(tdist.all_reduce([n], op=torch.distributed.ReduceOp.MAX, device=device)[0])


def old_policy_is_current(cfg) -> bool:
    """True when each rollout feeds exactly one optimizer step (batch size == mini-batch size)."""
    return cfg.batch_size <= cfg.mini_batch_size


def old_and_ref_logprobs(cfg, policy, ref, seqs, plans, tok, device):
    """Log-probs of the sampled tokens under the policy before any update (the ratio's denominator) and under the
    frozen reference (the KL's anchor), per micro-batch: old[m][j], refs[m][j]. With one optimizer step per
    rollout the old policy is the one being updated: old is None and the update uses its own forward, detached
    (ratio exactly 1, the same gradient, one pass fewer). refs is None without a reference model (kl_coef 0)."""
    def score(model):
        out = []
        for plan in plans:
            with torch.no_grad():
                out.append([forward_logprobs(model, collate(seqs, idx, tok.pad_token_id, device, cfg.pack_len),
                                             cfg.temperature, tok.vocab_size) for idx in plan])
            tdist.reshard(model)  # FSDP2 keeps the root unsharded after a no-grad forward
        return out
    old = None if old_policy_is_current(cfg) else score(policy)
    return old, score(ref) if ref else None


def policy_update(cfg, policy, optimizer, scheduler, seqs, plans, advantages, old, refs, tok, device, world):
    """One AdamW step per mini-batch, gradients accumulated over its micro-batches, the loss a token-mean over the
    whole mini-batch on all ranks. Returns (metric sums on the device, grad norms, the old log-probs used)."""
    # Metric sums stay on the device (a float() per micro-batch would stall the GPU queue): read once per step.
    sums = {k: torch.zeros((), dtype=torch.float64, device=device)
            for k in ("loss", "kl", "clip_frac", "entropy", "ratio_max", "tokens")}
    grad_norms, scored = [], [[] for _ in plans]
    adv = advantages.to(device)
    for m, plan in enumerate(plans):
        local_tokens = sum(len(seqs[i][0]) - seqs[i][1] for idx in plan for i in idx)
        global_tokens, global_seqs = tdist.all_reduce([local_tokens, sum(map(len, plan))], device=device)
        if global_seqs == 0:  # every group of this mini-batch filtered out, on every rank: nothing to learn, but
            advance_schedule(scheduler)  # the lr schedule moves on, so a decay ends where it was planned to
            continue
        # FSDP averages gradients over ranks: dividing by global/world makes that average the global mean
        # over all tokens (or sequences) of the mini-batch, not a mean of per-micro-batch means.
        num_tokens, num_seqs = max(global_tokens / world, 1e-8), max(global_seqs / world, 1e-8)
        for j, idx in enumerate(plan):
            mb = collate(seqs, idx, tok.pad_token_id, device, cfg.pack_len)
            lp, ent = forward_logprobs(policy, mb, cfg.temperature, tok.vocab_size, entropy=True)
            old_lp = old[m][j] if old is not None else lp.detach()
            scored[m].append(old_lp)
            a = adv[idx] if idx else torch.zeros(1, device=device)
            loss, met = grpo_loss(lp, old_lp, refs[m][j] if refs else None, a, mb.mask, clip_eps=cfg.clip_eps,
                                  clip_eps_high=cfg.clip_eps_high or None, kl_coef=cfg.kl_coef if refs else 0.0,
                                  loss_agg=cfg.loss_agg, entropy=ent, entropy_coef=cfg.entropy_coef,
                                  num_tokens=num_tokens, num_seqs=num_seqs, max_len=cfg.max_new_tokens)
            loss.backward()
            w = mb.mask.sum().double()
            sums["tokens"] += w
            sums["loss"] += loss.detach().double()
            for k in ("kl", "clip_frac", "entropy"):
                if k in met:
                    sums[k] += met[k].double() * w
            sums["ratio_max"] = torch.maximum(sums["ratio_max"], met["ratio_max"].double())
        grad_norms.append(optimizer_step(cfg, policy, optimizer, scheduler))
    return sums, grad_norms, scored


def sampler_gaps(plans, lps, seqs, episodes):
    """|sampler logprob - trainer logprob| of every sampled token, both scoring the same policy: a large gap
    silently biases the importance ratio. lps[m][j] holds the old log-probs of plans[m][j]'s sequences."""
    gaps = []
    for plan, mini in zip(plans, lps):
        for idx, lp in zip(plan, mini):
            for r, i in enumerate(idx):
                s, start = seqs[i]
                gaps.append((lp[r, :len(s) - start].cpu() - torch.tensor(episodes[i].sampler_logprobs)).abs())
    return torch.cat(gaps) if gaps else torch.zeros(0)


def step_metrics(episodes, rewards, informative, reward_errors, sums, grad_norms, gaps, scheduler, device, world,
                 times):
    """One metrics.jsonl line: this rank's counts summed over ranks (one collective, by name), then the means. Each
    rank's loss is its share of the global token-mean (times world, see policy_update): summed, then / world."""
    t0, t1, t2, t3 = times
    tot = tdist.all_reduce_dict(dict(
        reward=float(rewards.sum()), solved=float((rewards == 1).sum()), format=sum(e.format_ok for e in episodes),
        resp_tokens=sum(len(e.completion_ids) for e in episodes), episodes=len(episodes),
        truncated=sum(e.finish_reason == "length" for e in episodes), reward_errors=reward_errors,
        informative=float(informative.sum()), groups=len(informative), trained_tokens=sums["tokens"],
        kl=sums["kl"], clip_frac=sums["clip_frac"], entropy=sums["entropy"],
        gap_sum=float(gaps.sum()), gap_count=gaps.numel(), loss=sums["loss"]), device=device)
    # The slowest rank's rollout: the others wait for it at the first collective (it would count as their logprobs)
    gap_max, ratio_max, t_rollout = tdist.all_reduce(
        [float(gaps.max()) if gaps.numel() else 0.0, sums["ratio_max"], t1 - t0],
        op=torch.distributed.ReduceOp.MAX, device=device)
    count, trained = max(tot["episodes"], 1), max(tot["trained_tokens"], 1)
    return dict(reward=tot["reward"] / count, accuracy=tot["solved"] / count, format=tot["format"] / count,
                resp_len=tot["resp_tokens"] / count, informative=tot["informative"] / max(tot["groups"], 1),
                kl=tot["kl"] / trained, clip_frac=tot["clip_frac"] / trained, entropy=tot["entropy"] / trained,
                ratio_max=ratio_max,
                grad_norm=sum(grad_norms) / max(len(grad_norms), 1),
                loss=tot["loss"] / world / max(len(grad_norms), 1),
                updates=len(grad_norms), skipped_updates=sum(not math.isfinite(g) for g in grad_norms),
                reward_errors=int(tot["reward_errors"]), truncated=tot["truncated"] / count,
                lp_mismatch_mean=tot["gap_sum"] / max(tot["gap_count"], 1), lp_mismatch_max=gap_max,
                tok_per_s=max(tot["resp_tokens"], 1) / max(t_rollout, 1e-9), t_rollout=t_rollout,
                t_logprobs=max(t2 - t0 - t_rollout, 0.0), t_update=t3 - t2, lr=scheduler.get_last_lr()[0])


# ---- SFT (the paper's no-reason warm start; the demo's first stage) ----

def sft_step(cfg, records, prompt_ids, tok, policy, optimizer, scheduler, device, world):
    """Cross-entropy on the assistant turn only: `<think>...</think><tool_call>[...]</tool_call><|im_end|>`."""
    t0 = time.time()
    end = tok.encode("<|im_end|>")
    targets = [tok.encode(render_target(r, think=cfg.sft_think)) + end for r in records]
    seqs = make_sequences(prompt_ids, targets)
    per_rank = cfg.mini_batch_size // world
    losses, grad_norms = [], []
    for lo in range(0, len(seqs), per_rank):
        mb = seqs[lo:lo + per_rank]
        plan = plan_micro_batches(mb, cfg.micro_batch_tokens)
        plan = pad_plan(plan, max_over_ranks(len(plan), device))
        num_tokens = max(tdist.all_reduce([sum(len(s) - p for s, p in mb)], device=device)[0] / world, 1e-8)
        total = torch.zeros((), device=device)  # summed on the device: one host read per step, not per forward
        for idx in plan:
            batch = collate(mb, idx, tok.pad_token_id, device)
            lp = forward_logprobs(policy, batch, vocab_limit=tok.vocab_size)
            loss = -(lp * batch.mask).sum() / num_tokens
            loss.backward()
            total += loss.detach()
        losses.append(total)
        grad_norms.append(optimizer_step(cfg, policy, optimizer, scheduler))
    # loss: each rank's share of each mini-batch's global token-mean, summed over ranks (x world) in one collective
    tokens, loss = tdist.all_reduce([sum(len(s) for s, _ in seqs), float(sum(losses))], device=device)
    return dict(loss=loss / world / len(losses), grad_norm=sum(grad_norms) / max(len(grad_norms), 1),
                skipped_updates=sum(not math.isfinite(g) for g in grad_norms),
                tok_per_s=tokens / max(time.time() - t0, 1e-9), t_update=time.time() - t0,
                lr=scheduler.get_last_lr()[0])


# ---- set-up ----

def read_model_config(path, tok) -> ModelConfig:
    """The checkpoint's config, checked against its tokenizer before any weight is read."""
    source = os.path.join(path, "config.json")
    try:
        mconf = ModelConfig.from_dict(read_json(source), source=source)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--model {path}: {e}") from None
    if mconf.vocab_size < tok.vocab_size:
        raise SystemExit(f"--model {path}: the model's vocab_size {mconf.vocab_size} is smaller than its "
                         f"tokenizer's {tok.vocab_size} ids (every id must have an embedding row)")
    return mconf


def load_models(cfg, mconf, device, need_ref):
    cuda = device.type == "cuda"
    param_dtype = torch.bfloat16 if (cuda and cfg.bf16) else None
    full = Transformer.from_pretrained(cfg.model, dtype=torch.float32).state_dict() if tdist.is_main() else None
    policy = tdist.build_sharded(mconf, device, param_dtype, cfg.activation_checkpointing, cfg.cpu_offload,
                                 cfg.compile)
    tdist.load_full_state(policy, full)
    ref = None
    if need_ref:
        ref = tdist.build_sharded(mconf, device, param_dtype, False, cfg.cpu_offload, cfg.compile)
        tdist.load_full_state(ref, full)
        ref.requires_grad_(False)
    del full
    # The sampler's full-weight copy on every rank: bf16 on GPU, fp32 on CPU, q/k/v and gate/up fused.
    with torch.device("meta"):
        sampler_model = Transformer(mconf).fuse_projections()
    sampler_model.to_empty(device=device).to(torch.bfloat16 if (cuda and cfg.bf16) else torch.float32).eval()
    sampler_model.requires_grad_(False)
    sync_sampler(policy, sampler_model)
    return policy, ref, sampler_model


def adamw_impl(device) -> dict:
    """AdamW's implementation: fused on CUDA (one kernel pass over the parameters instead of a dozen foreach
    passes; DTensor parameters support it), foreach elsewhere, as before."""
    return dict(fused=True) if device.type == "cuda" else dict(foreach=True)


def lr_lambda(cfg, max_steps: int):
    """The lr multiplier at optimizer update u (counted from 0): a linear warm-up over warmup_steps updates, then
    constant or decaying towards 0, reached just after the last update (max_steps steps x the updates each makes,
    one with nothing to learn included; a resume with another max_steps re-spreads what is left of the decay)."""
    total = max(max_steps * (cfg.batch_size // cfg.mini_batch_size), 1)

    def f(u):
        if cfg.warmup_steps and u < cfg.warmup_steps:
            return (u + 1) / cfg.warmup_steps
        done = min(1.0, (u - cfg.warmup_steps) / max(total - cfg.warmup_steps, 1))
        if cfg.lr_decay == "linear":
            return 1.0 - done
        if cfg.lr_decay == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * done))
        return 1.0
    return f


def optimizer_step(cfg, policy, optimizer, scheduler):
    """Clip and step; a non-finite gradient norm (a NaN loss, a diverged step) skips the update, so the weights
    and the schedule stay as they were (every rank sees the same global norm, so all skip together)."""
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    grad_norm = float(grad_norm)
    if math.isfinite(grad_norm):
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def advance_schedule(scheduler):
    """The lr schedule's step for an update with nothing to learn (no optimizer step; PyTorch warns when the
    schedule steps first, which here is intended)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
        scheduler.step()


# ---- the training loop ----

def train(cfg: TrainConfig):
    rank, world, device = tdist.init_distributed()
    check_inputs(cfg, world, device)
    torch.manual_seed(cfg.seed)
    tok_files = ckpt.read_tokenizer_files(cfg.model) if tdist.is_main() else {}  # what every checkpoint gets
    tok = Tokenizer.from_pretrained(cfg.model)
    mconf = read_model_config(cfg.model, tok)
    resume_from = prepare_run(cfg, device)  # before any model work: a refused folder costs nothing
    records, prompt_ids = load_data(cfg, tok)
    steps_per_epoch = len(records) // cfg.batch_size
    max_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    log(f"{cfg.algo}: {len(records)} records, {max_steps} steps of {cfg.batch_size} prompts on {world} rank(s), "
        f"device {device.type}")

    policy, ref, sampler_model = load_models(cfg, mconf, device, need_ref=cfg.algo == "grpo" and cfg.kl_coef > 0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  betas=(0.9, cfg.adam_beta2), **adamw_impl(device))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, max_steps))
    start = restore(cfg, resume_from, policy, optimizer, scheduler, sampler_model) if resume_from else 0

    loggers = open_loggers(cfg, start) if tdist.is_main() else []
    evals = {}
    if cfg.eval_data and start == 0:
        evals["before"] = evaluate(cfg, sampler_model, tok, rank, world, device, "before", loggers, 0)
    bad_steps, due = 0, False
    for step in range(start, max_steps):
        # Deterministic data order: epoch e is a seeded shuffle; step s takes its own slice (resume-exact).
        epoch, k = divmod(step, steps_per_epoch)
        order = shuffle_records(list(range(len(records))), cfg.seed + epoch)
        batch = order[k * cfg.batch_size:(k + 1) * cfg.batch_size][rank::world]
        if cfg.algo == "grpo":
            streams = list(range(rank, cfg.batch_size, world))  # global slots: rollouts independent of world size
            metrics = grpo_step(cfg, step, [records[i] for i in batch], [prompt_ids[i] for i in batch], streams,
                                tok, policy, ref, sampler_model, optimizer, scheduler, device, world)
        else:
            metrics = sft_step(cfg, [records[i] for i in batch], [prompt_ids[i] for i in batch], tok, policy,
                               optimizer, scheduler, device, world)
        metrics = {"step": step + 1, "epoch": epoch, **metrics}
        bad_steps = bad_steps + 1 if metrics["skipped_updates"] or not math.isfinite(metrics["loss"]) else 0
        last = step + 1 == max_steps
        if cfg.eval_every and cfg.eval_data and (step + 1) % cfg.eval_every == 0 and not last:
            if cfg.algo == "sft":  # SFT never samples: its weights reach the sampler's copy only to be evaluated
                sync_sampler(policy, sampler_model)
            metrics.update({f"eval_{k}": v for k, v in
                            evaluate(cfg, sampler_model, tok, rank, world, device, None).items()})
        write_metrics(cfg, metrics, loggers, last)
        due = due or (step + 1) % cfg.save_every == 0 or last  # a save a skipped step passed on stays due
        if due or bad_steps:
            due = save_or_stop(cfg, step + 1, bad_steps, last, policy, optimizer, scheduler, mconf, tok_files,
                               device, due)
    if cfg.eval_data:
        sync_sampler(policy, sampler_model)
        evals["after"] = evaluate(cfg, sampler_model, tok, rank, world, device, "after", loggers, max_steps)
    if tdist.is_main() and evals:  # a resumed run keeps the "before" of the run it continues
        path = os.path.join(cfg.out, "evals.json")
        evals = {**(json.load(open(path)) if start and os.path.isfile(path) else {}), **evals}
        with open(path, "w") as f:
            json.dump(evals, f, indent=1)
    for _, close in loggers:
        close()
    return evals


def load_data(cfg, tok):
    """The training records and their prompts' token ids (records over max_prompt_len are dropped and counted)."""
    try:
        records = load_records(cfg.data)
    except ValueError as e:  # names the file and line
        raise SystemExit(f"--data: {e}") from None
    prompt_ids, records, too_long = encode_prompts(tok, records, cfg.max_prompt_len)
    if not records:
        raise SystemExit(f"{cfg.data}: 0 usable records ({too_long} longer than max_prompt_len={cfg.max_prompt_len})")
    if cfg.batch_size > len(records):
        raise SystemExit(f"batch_size {cfg.batch_size} is larger than the {len(records)} usable records")
    if too_long:
        log(f"{cfg.data}: {too_long} records dropped (prompt > {cfg.max_prompt_len} tokens)")
    return records, prompt_ids


def restore(cfg, resume_from, policy, optimizer, scheduler, sampler_model) -> int:
    """Model, optimizer, LR schedule and RNG from a checkpoint; metrics.jsonl cut back to it. Returns its step."""
    state = ckpt.load_resume(resume_from, policy, optimizer)
    if "scheduler" in state:  # the LR schedule steps once per optimizer update, not once per training step
        scheduler.load_state_dict(state["scheduler"])
    else:  # a checkpoint from before the schedule was saved: it had made this many updates
        scheduler.last_epoch = state["step"] * (cfg.batch_size // cfg.mini_batch_size)
    # The optimizer's and schedule's saved hyperparameters give way to this run's (the same unless
    # --allow-config-change let them change: "lower the lr and resume" must lower it); the lr where the schedule is.
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group.update(initial_lr=cfg.lr, lr=cfg.lr * factor(scheduler.last_epoch), weight_decay=cfg.weight_decay,
                     betas=(0.9, cfg.adam_beta2))
    scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
    sync_sampler(policy, sampler_model)
    if tdist.is_main():
        ckpt.truncate_metrics(cfg.out, state["step"])
    log(f"resumed from {resume_from} at step {state['step']}")
    return state["step"]


def write_metrics(cfg, metrics, loggers, last):
    if not tdist.is_main():
        return
    with open(os.path.join(cfg.out, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(metrics) + "\n")
    for write, _ in loggers:
        write(metrics, metrics["step"])
    if metrics["step"] % cfg.log_every == 0 or last:
        print(format_line(metrics), flush=True)


def save_or_stop(cfg, step, bad_steps, last, policy, optimizer, scheduler, mconf, tok_files, device, due) -> bool:
    """Save a checkpoint when one is due, never with non-finite weights, and not from a step whose update was
    skipped: that save waits for the next good step (the last step saves anyway: a skipped update left the weights
    as they were, and a finished run must not end without its final checkpoint). Stop after max_bad_steps skipped
    steps in a row, before anything is saved. Returns whether a save is still due."""
    latest = ckpt.latest_checkpoint(cfg.out) or "none"
    if bad_steps >= cfg.max_bad_steps:
        raise SystemExit(f"step {step}: {bad_steps} steps in a row with a non-finite loss or gradient norm (updates "
                         f"skipped); stopping before anything is saved. The last good checkpoint: {latest}")
    if not due:
        return False
    if bad_steps and not last:
        log(f"step {step}: not saved (its update was skipped: non-finite loss or gradient norm); "
            "saving at the next good step")
        return True
    if not tdist.weights_finite(policy, device):
        raise SystemExit(f"step {step}: the weights hold NaN or inf; not saving them over {latest}")
    if bad_steps:
        log(f"step {step}: the last step's update was skipped; saving the weights it left unchanged")
    ckpt.save_checkpoint(cfg.out, step, policy, optimizer, {"scheduler": scheduler.state_dict()}, tok_files, mconf,
                         cfg.keep_checkpoints, cfg.keep_every)
    return False


# Settings a resume may change freely: how the run is logged, saved and computed, not what it learns (the run
# folder's own path may change, the folder moved; a preset only sets others, and those are compared).
RESUME_FREE = {"out", "preset", "resume", "overwrite", "allow_config_change", "max_steps", "epochs", "save_every",
               "keep_checkpoints", "keep_every", "log_every", "log_to", "eval_data", "eval_every",
               "eval_max_new_tokens", "micro_batch_tokens", "rollout_batch_size", "activation_checkpointing", "compile",
               "cpu_offload", "max_bad_steps"}


def prepare_run(cfg, device) -> str | None:
    """The run folder, settled before any model work: the checkpoint to resume from, or None for a fresh run
    (a folder that holds a run is refused unless --resume or --overwrite says what to do with it)."""
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise SystemExit(f"--out {cfg.out}: a file, not a folder")
    if tdist.is_main():
        os.makedirs(cfg.out, exist_ok=True)
    torch.distributed.barrier()
    ckpt.check_shared_folder(cfg.out, device)
    latest, held = ckpt.latest_checkpoint(cfg.out), ckpt.describe_run(cfg.out)
    torch.distributed.barrier()  # every rank has looked before rank 0 changes anything
    if cfg.resume == "yes" and not latest:
        raise SystemExit(f"--resume: {cfg.out} holds no complete checkpoint to continue (--resume auto starts "
                         "fresh when there is none)")
    if cfg.resume and latest:
        check_config_change(cfg, latest)
        return latest
    if held and not (cfg.overwrite or cfg.resume == "auto"):
        raise SystemExit(f"--out {cfg.out} already holds a run ({held}). Pass --resume to continue it, --resume "
                         "auto to continue it if it has a checkpoint, or --overwrite to delete it and start over")
    if held:
        inside = ckpt.run_file_holding(cfg.out, cfg.model)
        if inside:
            raise SystemExit(f"starting over in {cfg.out} would delete --model {cfg.model} (it is in {inside}, a "
                             "file of the run there); copy it elsewhere first, or start the new run in another --out")
    if tdist.is_main():
        if held:
            ckpt.clear_run(cfg.out)
            log(f"{cfg.out}: deleted the previous run ({held})")
        open(os.path.join(cfg.out, "metrics.jsonl"), "w").close()
        with open(os.path.join(cfg.out, "train_config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=1)
    torch.distributed.barrier()
    return None


def check_config_change(cfg, latest):
    """Resume only the run that was started: settings that change what is learnt must match train_config.json,
    unless --allow-config-change (then the change is recorded in config_changes.jsonl)."""
    path = os.path.join(cfg.out, "train_config.json")
    saved = json.load(open(path)) if os.path.isfile(path) else {}
    now = asdict(cfg)
    changed = {k: {"was": saved.get(k), "now": v} for k, v in now.items()
               if k not in RESUME_FREE and k in saved and saved[k] != v}
    if not changed:
        return
    if not cfg.allow_config_change:
        raise SystemExit(f"--resume {cfg.out}: these settings differ from the run's train_config.json: " +
                         ", ".join(f"{k} {d['was']!r} -> {d['now']!r}" for k, d in changed.items()) +
                         " (pass the run's own values, or --allow-config-change to continue with the new ones)")
    torch.distributed.barrier()  # every rank has read train_config.json before rank 0 rewrites it
    if tdist.is_main():
        with open(os.path.join(cfg.out, "config_changes.jsonl"), "a") as f:
            f.write(json.dumps({"step": ckpt.read_state(latest)["step"], "changed": changed}) + "\n")
        with open(path, "w") as f:
            json.dump(now, f, indent=1)
    log(f"resuming with changed settings: {sorted(changed)} (recorded in config_changes.jsonl)")


def evaluate(cfg, sampler_model, tok, rank, world, device, label, loggers=(), step=0):
    result, _ = heldout_eval(sampler_model, tok, load_records(cfg.eval_data), max_new_tokens=cfg.eval_max_new_tokens,
                             max_prompt_len=cfg.max_prompt_len, rank=rank, world_size=world, device=device,
                             max_batch_size=cfg.rollout_batch_size)
    if label:
        log(f"eval ({label}): accuracy {result['accuracy']:.3f}  format {result['format_rate']:.3f}  "
            f"mean length {result['mean_response_len']:.1f}  ({result['count']} records)")
    for write, _ in loggers:
        write({f"eval_{k}": v for k, v in result.items()}, step)
    return result


def format_line(m):
    keys = [("step", "d"), ("reward", ".3f"), ("accuracy", ".3f"), ("format", ".3f"), ("resp_len", ".1f"),
            ("informative", ".2f"), ("kl", ".4f"), ("clip_frac", ".3f"), ("entropy", ".3f"), ("grad_norm", ".3f"),
            ("loss", ".4f"), ("tok_per_s", ".0f"), ("t_rollout", ".1f"), ("t_logprobs", ".1f"), ("t_update", ".1f"),
            ("lp_mismatch_max", ".2e"), ("eval_accuracy", ".3f")]
    return "  ".join(f"{k} {m[k]:{f}}" for k, f in keys if k in m)


LOGGERS = ("tensorboard", "wandb")  # --log-to names, each also the package it needs


def _names(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def open_loggers(cfg, start=0):
    """Extra metric sinks beside metrics.jsonl (main rank only): a list of (log(metrics, step), close) pairs. A
    resumed run drops TensorBoard's events past its checkpoint (start), as metrics.jsonl is cut back."""
    sinks = []
    for name in _names(cfg.log_to):
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(os.path.join(cfg.out, "tensorboard"), purge_step=start + 1 if start else None)

            def to_tensorboard(metrics, step, writer=writer):
                for k, v in metrics.items():
                    if isinstance(v, (int, float)) and k != "step":
                        writer.add_scalar(k, v, step)
                writer.flush()
            sinks.append((to_tensorboard, writer.close))
        elif name == "wandb":
            import wandb
            run = wandb.init(project="tooln1-min", name=os.path.basename(os.path.abspath(cfg.out)), dir=cfg.out,
                             config=asdict(cfg), mode=os.environ.get("WANDB_MODE", "offline"))
            sinks.append((lambda metrics, step: run.log({k: v for k, v in metrics.items() if k != "step"}, step=step),
                          run.finish))
    return sinks


def check_inputs(cfg, world, device):
    if not cfg.model or not os.path.isfile(os.path.join(cfg.model, "config.json")):
        raise SystemExit(f"--model {cfg.model!r}: not a Hugging Face checkpoint folder (no config.json)")
    if not cfg.data or not os.path.isfile(cfg.data):
        raise SystemExit(f"--data {cfg.data!r}: file not found")
    if cfg.eval_data and not os.path.isfile(cfg.eval_data):
        raise SystemExit(f"--eval-data {cfg.eval_data!r}: file not found")
    if cfg.algo not in ("grpo", "sft"):
        raise SystemExit(f"--algo must be grpo or sft, got {cfg.algo!r}")
    for name in ("batch_size", "mini_batch_size", "n", "save_every", "log_every", "keep_checkpoints",
                 "max_bad_steps", "micro_batch_tokens", "max_new_tokens", "max_prompt_len", "rollout_batch_size"):
        if getattr(cfg, name) < 1:
            flag = "--n-samples" if name == "n" else "--" + name.replace("_", "-")
            raise SystemExit(f"{flag} must be >= 1, got {getattr(cfg, name)}")
    for name in ("eval_every", "keep_every", "warmup_steps", "max_steps", "pack_len", "kl_coef", "entropy_coef",
                 "weight_decay", "lr"):
        if getattr(cfg, name) < 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if cfg.algo == "grpo" and cfg.temperature <= 0:
        raise SystemExit(f"--temperature {cfg.temperature}: GRPO samples its groups, so it needs a temperature > 0 "
                         "(at 0 every sample of a group is the same and no group has an advantage)")
    if cfg.lr_decay not in ("none", "linear", "cosine"):
        raise SystemExit(f"--lr-decay must be none, linear or cosine, got {cfg.lr_decay!r}")
    if cfg.loss_agg not in LOSS_AGG_MODES:
        raise SystemExit(f"--loss-agg must be one of {', '.join(LOSS_AGG_MODES)}, got {cfg.loss_agg!r}")
    if not 0 < cfg.clip_eps < 1 or not 0 <= cfg.clip_eps_high < 1:
        raise SystemExit(f"--clip-eps must be in (0, 1) and --clip-eps-high in [0, 1) (0: the same as --clip-eps), "
                         f"got {cfg.clip_eps} and {cfg.clip_eps_high}")
    if cfg.grad_clip <= 0:
        raise SystemExit(f"--grad-clip must be > 0 (the largest global gradient norm), got {cfg.grad_clip}")
    if cfg.epochs < 1 and not cfg.max_steps:
        raise SystemExit(f"--epochs must be >= 1 (or give --max-steps), got {cfg.epochs}")
    if not 0 < cfg.top_p <= 1 or cfg.top_k < 0:
        raise SystemExit(f"--top-p must be in (0, 1] and --top-k >= 0, got {cfg.top_p} and {cfg.top_k}")
    if cfg.lr == 0:
        log("warning: --lr 0: the optimizer will not change the weights")
    if cfg.rollout_batch_size < cfg.n:
        raise SystemExit(f"--rollout-batch-size {cfg.rollout_batch_size} is smaller than --n-samples {cfg.n}: a "
                         "prompt's samples are decoded together")
    if cfg.batch_size % cfg.mini_batch_size:
        raise SystemExit(f"batch_size {cfg.batch_size} is not a multiple of mini_batch_size {cfg.mini_batch_size}")
    if cfg.mini_batch_size % world:
        raise SystemExit(f"mini_batch_size {cfg.mini_batch_size} does not divide across {world} ranks")
    for name in _names(cfg.log_to):
        if name not in LOGGERS:
            raise SystemExit(f"--log-to {name!r}: expected a comma-separated subset of {list(LOGGERS)}")
        if importlib.util.find_spec(name) is None:
            raise SystemExit(f"--log-to {name}: the {name} package is not installed (pip install {name})")
    if cfg.cpu_offload and device.type != "cuda":
        raise SystemExit("--cpu-offload keeps FSDP shards and optimizer state in host memory between GPU uses; "
                         "this run has no GPU, so everything is in host memory already (drop the flag)")
    get_reward_fn(cfg.reward)


# ---- command line ----

def parse_args(argv=None) -> TrainConfig:
    from tooln1_min.demo import demo_flags
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="With no arguments, or only the demo's flags (" + " ".join(demo_flags()) +
                                "), train.py runs the CPU demo instead (tooln1_min/demo.py).")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        v = getattr(defaults, f.name)
        if f.name == "resume":
            p.add_argument("--resume", nargs="?", const="yes", choices=["yes", "auto"], default=None,
                           help="continue the run in --out from its latest checkpoint; 'auto': if it has one, else "
                                "start fresh. The checkpoint's resume/ state is a pickle (torch.distributed."
                                "checkpoint): resume only run folders your own runs wrote")
        elif isinstance(v, bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None)
        else:
            # --n would be an ambiguous prefix for torchrun's own options (--nnodes, --nproc-per-node, ...)
            flag = "--n-samples" if f.name == "n" else f"--{f.name.replace('_', '-')}"
            p.add_argument(flag, dest=f.name, type=type(v), default=None)
    args = vars(p.parse_args(argv))
    given = {k: v for k, v in args.items() if v is not None}
    if not given.get("model"):
        p.error("--model is required: a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json), "
                "e.g. --model Qwen2.5-7B-Instruct; run train.py with no arguments for the CPU demo")
    preset = PRESETS.get(given.get("preset", ""), {}) if given.get("preset") else {}
    if given.get("preset") and given["preset"] not in PRESETS:
        raise SystemExit(f"--preset {given['preset']!r}: known presets are {sorted(PRESETS)}")
    return TrainConfig(**{**preset, **given})


def main(argv=None):
    """A bare train.py (or one with only the demo's flags) runs the CPU demo; anything else is a training run."""
    argv = sys.argv[1:] if argv is None else argv
    from tooln1_min.demo import is_demo_argv, run_demo
    try:
        if is_demo_argv(argv):
            return run_demo(argv, lambda settings: train(TrainConfig(**settings)))
        train(parse_args(argv))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
