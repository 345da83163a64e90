"""Tool-N1 training: GRPO with the binary tool-call reward (or SFT), FSDP2 from one CPU to many GPUs.

    python train.py                                   # the CPU demo: synthetic data, tiny model, SFT then GRPO
    torchrun --nproc_per_node=8 train.py --model Qwen2.5-7B-Instruct --data train.jsonl --preset tool-n1

Per GRPO step (paper Sec. 3, verl's loop): take batch_size prompts -> sample n completions each (the sampler, on a
full-weight copy per rank) -> binary reward -> group advantages -> old-policy and reference logprobs with the
training forward -> mini_batch_size optimizer steps over micro-batches bounded by a token budget -> AdamW ->
copy the new weights into the sampler's model.
"""
import argparse
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields

import torch

from tooln1_min import dist as tdist
from tooln1_min.data import load_records, render_target, shuffle_records
from tooln1_min.grpo import grpo_loss, group_advantages
from tooln1_min.model import ModelConfig, Transformer
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
    # Tool-N1 (paper Table 6 + its launch script)
    batch_size: int = 1024           # prompts per step
    mini_batch_size: int = 256       # prompts per optimizer step (4 updates per rollout: the clip is live)
    n: int = 5                       # samples per prompt (GRPO group)
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    lr: float = 1e-6
    warmup_steps: int = 0
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
    eval_every: int = 0
    eval_max_new_tokens: int = 512
    seed: int = 0
    resume: bool = False
    log_every: int = 1
    log_to: str = ""                 # also log metrics to: tensorboard (<out>/tensorboard) and/or wandb (offline
                                     # unless WANDB_MODE says otherwise), comma-separated; neither is required


PRESETS = {
    "tool-n1": dict(batch_size=1024, mini_batch_size=256, n=5, temperature=0.7, lr=1e-6, kl_coef=1e-3,
                    entropy_coef=0.0, epochs=7, max_prompt_len=4096, max_new_tokens=8192, loss_agg="token-mean",
                    activation_checkpointing=True),  # as verl's launch script: 7B at 8k-token responses needs it
}


def log(msg):
    if tdist.is_main():
        print(msg, flush=True)


# ---- sequences and micro-batches ----

def make_sequences(prompt_ids, completion_ids):
    """Concatenate prompt + completion; the loss mask covers the completion tokens (position t predicts t+1)."""
    return [(p + c, len(p)) for p, c in zip(prompt_ids, completion_ids)]


def _joins(seqs, prev, i, row_len, pack_len) -> bool:
    """Whether sequence i continues the row that sequence prev ends: same prompt, and the row stays <= pack_len."""
    (a, p), (b, q) = seqs[prev], seqs[i]
    return bool(pack_len) and row_len + len(b) - q <= pack_len and p == q and a[:p] == b[:q]


def pack_rows(seqs, idx, pack_len):
    """Rows of one forward: consecutive sequences with the same prompt (a GRPO group) share a row, the prompt once
    and then each completion, while the row stays within pack_len tokens (0: one sequence per row)."""
    rows, lengths = [], []
    for i in idx:
        s, start = seqs[i]
        if rows and _joins(seqs, rows[-1][-1], i, lengths[-1], pack_len):
            rows[-1].append(i)
            lengths[-1] += len(s) - start
        else:
            rows.append([i])
            lengths.append(len(s))
    return rows, lengths


def plan_micro_batches(seqs, token_budget, device, pack_len=0):
    """Split this rank's sequences into micro-batches of <= token_budget padded tokens (rows packed as in
    pack_rows). Every rank runs the same number of forwards (FSDP's collectives must pair up), so the count is
    the max over ranks."""
    groups, cur, lengths = [], [], []
    for i, (s, start) in enumerate(seqs):
        if cur and _joins(seqs, cur[-1], i, lengths[-1], pack_len):
            new = lengths[:-1] + [lengths[-1] + len(s) - start]
        else:
            new = lengths + [len(s)]
        if cur and max(new) * len(new) > token_budget:
            groups.append(cur)
            cur, new = [], [len(s)]
        cur.append(i)
        lengths = new
    if cur:
        groups.append(cur)
    count = int(tdist.all_reduce([len(groups)], op=torch.distributed.ReduceOp.MAX, device=device)[0])
    return groups + [[] for _ in range(count - len(groups))]  # [] = a dummy forward with an all-zero mask


def collate(seqs, idx, pad_id, device, pack_len=0):
    """One forward's tensors for sequences `idx`: right-padded rows (see pack_rows) and, per sequence, the window
    of K positions whose next token is one of its completion tokens (K = the longest completion). Only the window
    is projected to the vocabulary. In a packed row each completion attends to the shared prompt and to itself,
    with the positions it would have alone, so its logprobs are those of its own unpacked sequence."""
    if not idx:  # dummy micro-batch for ranks with less data
        z = torch.zeros(1, 1, dtype=torch.long, device=device)
        return dict(ids=torch.full((1, 2), pad_id, device=device), positions=None, attn=None, at=z[:, :, None],
                    targets=z + pad_id, take=z[0], mask=torch.zeros(1, 1, device=device))
    rows, lengths = pack_rows(seqs, idx, pack_len)
    B, T, M = len(rows), max(lengths), max(map(len, rows))
    if M > 1:  # packed rows need a (T, T) mask: 16-aligned rows let CUDA's fused kernel use it without a padded copy
        T = -(-T // 16) * 16
    K = max(len(seqs[i][0]) - seqs[i][1] for i in idx)
    ids, positions = torch.full((B, T), pad_id, dtype=torch.long), torch.zeros(B, T, dtype=torch.long)
    segment = torch.full((B, T), -1, dtype=torch.long)  # 0: the shared prompt, m + 1: completion m, -1: padding
    at, targets = torch.zeros(B, M, K, dtype=torch.long), torch.full((B, M, K), pad_id, dtype=torch.long)
    mask, take = torch.zeros(B, M, K), []
    for r, row in enumerate(rows):
        first, p = seqs[row[0]]
        ids[r, :p], positions[r, :p], segment[r, :p] = torch.tensor(first[:p]), torch.arange(p), 0
        off = p
        for m, i in enumerate(row):
            c = seqs[i][0][p:]
            L = len(c)
            ids[r, off:off + L], positions[r, off:off + L] = torch.tensor(c), torch.arange(p, p + L)
            segment[r, off:off + L] = m + 1
            window = torch.tensor([p - 1] + list(range(off, off + L - 1)))  # c[0] comes from the prompt's end
            at[r, m] = window[torch.arange(K).clamp(max=L - 1)]  # past the completion: masked out
            targets[r, m, :L], mask[r, m, :L] = torch.tensor(c), 1.0
            take.append(r * M + m)
            off += L
    attn = None  # one sequence per row: right padding needs no mask under causal attention (flash-friendly)
    if M > 1:
        q, k = segment[:, :, None], segment[:, None, :]
        attn = torch.tril(torch.ones(T, T, dtype=torch.bool)) & ((k == 0) | (k == q))
    else:
        positions = None  # the default arange; explicit zeros on padding would read as packed segments
    take = torch.tensor(take)
    out = dict(ids=ids, positions=positions, attn=attn, at=at, targets=targets, take=take,
               mask=mask.view(B * M, K)[take])
    return {k: v.to(device) if v is not None else None for k, v in out.items()}


def forward_logprobs(model, mb, temperature=1.0, vocab_limit=None, entropy=False):
    """Logprobs (sequences, K) in fp32 of each sequence's completion tokens (logits / temperature, as verl scores
    rollouts), and their entropy too when asked. Ids past the tokenizer's vocabulary are excluded, as in the
    sampler, so both score the same distribution. The model projects the window to the vocabulary a chunk at a
    time (model.head_logprobs), so the window's full logits never exist."""
    B, M, K = mb["at"].shape
    out = model(mb["ids"], position_ids=mb["positions"], attention_mask=mb["attn"], logits_at=mb["at"].view(B, -1),
                targets=mb["targets"].view(B, -1), temperature=temperature, vocab_limit=vocab_limit, entropy=entropy)
    take = mb["take"]
    if entropy:
        return out[0].view(B * M, K)[take], out[1].view(B * M, K)[take]
    return out.view(B * M, K)[take]


@torch.no_grad()
def batch_logprobs(model, seqs, plan, pad_id, device, temperature, vocab_limit, pack_len=0):
    out = [forward_logprobs(model, collate(seqs, idx, pad_id, device, pack_len), temperature, vocab_limit)
           for idx in plan]
    tdist.reshard(model)  # FSDP2 keeps the root unsharded after a no-grad forward
    return out


# ---- model set-up ----

def load_models(cfg, device, need_ref):
    with open(os.path.join(cfg.model, "config.json")) as f:
        mconf = ModelConfig.from_dict(json.load(f), source=os.path.join(cfg.model, "config.json"))
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
    # The sampler's full-weight copy on every rank: bf16 on GPU, fp32 on CPU.
    with torch.device("meta"):
        sampler_model = Transformer(mconf)
    sampler_model.to_empty(device=device).to(torch.bfloat16 if (cuda and cfg.bf16) else torch.float32).eval()
    sampler_model.requires_grad_(False)
    sync_sampler(policy, sampler_model)
    return mconf, policy, ref, sampler_model


@torch.no_grad()
def sync_sampler(policy, sampler_model):
    """Gather the policy's full weights once per step (not per token) into the sampler's copy: one parameter at a
    time, each shard cast to the sampler's dtype before the all-gather (half the bytes in bf16, and never a full
    fp32 copy of the model beside the sampler's)."""
    tdist.reshard(policy)
    target = dict(sampler_model.named_parameters())
    for name, p in policy.named_parameters():
        dst = target.pop(name)
        src = p.detach().to(dst.dtype)
        dst.copy_(src.full_tensor() if hasattr(src, "full_tensor") else src)
    if target:
        raise RuntimeError(f"sync_sampler: the policy has no {sorted(target)}")


def lr_lambda(cfg):
    return lambda step: min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0


# ---- the training loop ----

LOGGERS = ("tensorboard", "wandb")  # --log-to names, each also the package it needs


def _names(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def open_loggers(cfg):
    """Extra metric sinks beside metrics.jsonl (main rank only): a list of (log(metrics, step), close) pairs."""
    sinks = []
    for name in _names(cfg.log_to):
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(os.path.join(cfg.out, "tensorboard"))

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
    if cfg.algo not in ("grpo", "sft"):
        raise SystemExit(f"--algo must be grpo or sft, got {cfg.algo!r}")
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


def train(cfg: TrainConfig):
    rank, world, device = tdist.init_distributed()
    check_inputs(cfg, world, device)
    torch.manual_seed(cfg.seed)
    tok = Tokenizer.from_pretrained(cfg.model)
    records = load_records(cfg.data)
    prompt_ids, records, too_long = encode_prompts(tok, records, cfg.max_prompt_len)
    if not records:
        raise SystemExit(f"{cfg.data}: 0 usable records ({too_long} longer than max_prompt_len={cfg.max_prompt_len})")
    if cfg.batch_size > len(records):
        raise SystemExit(f"batch_size {cfg.batch_size} is larger than the {len(records)} usable records")
    steps_per_epoch = len(records) // cfg.batch_size
    max_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    os.makedirs(cfg.out, exist_ok=True)
    log(f"{cfg.algo}: {len(records)} records ({too_long} dropped: prompt > {cfg.max_prompt_len} tokens), "
        f"{max_steps} steps of {cfg.batch_size} prompts on {world} rank(s), device {device.type}")

    mconf, policy, ref, sampler_model = load_models(cfg, device, need_ref=cfg.algo == "grpo" and cfg.kl_coef > 0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  betas=(0.9, cfg.adam_beta2), foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    start = 0
    ckpt = os.path.join(cfg.out, "checkpoint")
    if cfg.resume:
        state = tdist.load_resume(ckpt, policy, optimizer)
        start = state["step"]
        scheduler.last_epoch = start
        sync_sampler(policy, sampler_model)
        log(f"resumed from {ckpt} at step {start}")
    if tdist.is_main() and not cfg.resume:
        open(os.path.join(cfg.out, "metrics.jsonl"), "w").close()
        with open(os.path.join(cfg.out, "train_config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=1)

    loggers = open_loggers(cfg) if tdist.is_main() else []
    evals = {}
    if cfg.eval_data and start == 0:
        evals["before"] = evaluate(cfg, sampler_model, tok, rank, world, device, "before")
        for write, _ in loggers:
            write({f"eval_{k}": v for k, v in evals["before"].items()}, 0)
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
        if cfg.eval_every and cfg.eval_data and (step + 1) % cfg.eval_every == 0 and step + 1 < max_steps:
            if cfg.algo == "sft":  # SFT never samples: its weights reach the sampler's copy only to be evaluated
                sync_sampler(policy, sampler_model)
            metrics.update({f"eval_{k}": v for k, v in
                            evaluate(cfg, sampler_model, tok, rank, world, device, None).items()})
        if tdist.is_main():
            with open(os.path.join(cfg.out, "metrics.jsonl"), "a") as f:
                f.write(json.dumps(metrics) + "\n")
            for write, _ in loggers:
                write(metrics, step + 1)
            if (step + 1) % cfg.log_every == 0 or step + 1 == max_steps:
                print(format_line(metrics), flush=True)
        if (step + 1) % cfg.save_every == 0 or step + 1 == max_steps:
            tdist.save_checkpoint(cfg.out, "checkpoint", policy, optimizer, {"step": step + 1}, cfg.model, mconf)
    if cfg.eval_data:
        sync_sampler(policy, sampler_model)
        evals["after"] = evaluate(cfg, sampler_model, tok, rank, world, device, "after")
        for write, _ in loggers:
            write({f"eval_{k}": v for k, v in evals["after"].items()}, max_steps)
    for _, close in loggers:
        close()
    return evals


def evaluate(cfg, sampler_model, tok, rank, world, device, label):
    result, _ = heldout_eval(sampler_model, tok, load_records(cfg.eval_data), max_new_tokens=cfg.eval_max_new_tokens,
                             max_prompt_len=cfg.max_prompt_len, rank=rank, world_size=world, device=device,
                             max_batch_size=cfg.rollout_batch_size)
    if label:
        log(f"eval ({label}): accuracy {result['accuracy']:.3f}  format {result['format_rate']:.3f}  "
            f"mean length {result['mean_response_len']:.1f}  ({result['count']} records)")
    return result


def format_line(m):
    keys = [("step", "d"), ("reward", ".3f"), ("accuracy", ".3f"), ("format", ".3f"), ("resp_len", ".1f"),
            ("informative", ".2f"), ("kl", ".4f"), ("clip_frac", ".3f"), ("entropy", ".3f"), ("grad_norm", ".3f"),
            ("loss", ".4f"), ("tok_per_s", ".0f"), ("t_rollout", ".1f"), ("t_logprobs", ".1f"), ("t_update", ".1f"),
            ("lp_mismatch_max", ".2e"), ("eval_accuracy", ".3f")]
    return "  ".join(f"{k} {m[k]:{f}}" for k, f in keys if k in m)


def optimizer_step(cfg, policy, optimizer, scheduler):
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return float(grad_norm)


def grpo_step(cfg, step, records, prompt_ids, streams, tok, policy, ref, sampler_model, optimizer, scheduler, device,
              world):
    t0 = time.time()
    seed = cfg.seed * 1_000_003 + step
    episodes, reward_errors = rollout(sampler_model, tok, records, prompt_ids, n=cfg.n,
                                      max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                      reward_fn=get_reward_fn(cfg.reward), seed=seed, top_p=cfg.top_p,
                                      top_k=cfg.top_k, max_batch_size=cfg.rollout_batch_size, progress=True,
                                      stream_ids=streams)
    t1 = time.time()
    rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float)
    advantages = group_advantages(rewards, cfg.n, scale_std=cfg.scale_std)
    seqs = make_sequences([e.prompt_ids for e in episodes], [e.completion_ids for e in episodes])
    # A group whose rewards are all equal has zero advantage everywhere: only its KL term would train.
    informative = (rewards.view(-1, cfg.n).std(-1) > 0 if cfg.n > 1 else torch.ones(len(records), dtype=torch.bool))
    keep = informative.repeat_interleave(cfg.n).tolist() if cfg.filter_groups else [True] * len(seqs)
    # Mini-batches of whole groups: this rank's share of mini_batch_size prompts, n sequences each.
    per_rank = cfg.mini_batch_size // world * cfg.n
    minis = [[i for i in range(lo, min(lo + per_rank, len(seqs))) if keep[i]] for lo in range(0, len(seqs), per_rank)]
    plans = [[[mb[j] for j in g] for g in plan_micro_batches([seqs[i] for i in mb], cfg.micro_batch_tokens, device,
                                                               cfg.pack_len)] for mb in minis]
    pad = tok.pad_token_id
    # One optimizer step per rollout: the old policy is the one being updated, so its log-probs are the update's
    # own, detached (ratio exactly 1, the same gradient): no separate scoring pass. Else score before any update.
    old = None if old_policy_is_current(cfg) else \
        [batch_logprobs(policy, seqs, plan, pad, device, cfg.temperature, tok.vocab_size, cfg.pack_len)
         for plan in plans]
    refs = [batch_logprobs(ref, seqs, plan, pad, device, cfg.temperature, tok.vocab_size, cfg.pack_len)
            for plan in plans] \
        if ref else None
    t2 = time.time()

    # Metric sums stay on the device (a float() per micro-batch would stall the GPU queue): read once per step.
    sums = {k: torch.zeros((), dtype=torch.float64, device=device)
            for k in ("loss", "kl", "clip_frac", "entropy", "ratio_max", "tokens")}
    grad_norms, n_updates = [], 0
    adv = advantages.to(device)
    scored = [[] for _ in plans]  # the old log-probs as used, for the sampler/trainer mismatch below
    for m, plan in enumerate(plans):
        local_tokens = sum(len(seqs[i][0]) - seqs[i][1] for idx in plan for i in idx)
        global_tokens, global_seqs = tdist.all_reduce([local_tokens, sum(map(len, plan))], device=device)
        if global_seqs == 0:  # every group of this mini-batch filtered out, on every rank: nothing to learn
            continue
        # FSDP averages gradients over ranks: dividing by global/world makes that average the global mean
        # over all tokens (or sequences) of the mini-batch, not a mean of per-micro-batch means.
        num_tokens, num_seqs = max(global_tokens / world, 1e-8), max(global_seqs / world, 1e-8)
        for j, idx in enumerate(plan):
            mb = collate(seqs, idx, pad, device, cfg.pack_len)
            lp, ent = forward_logprobs(policy, mb, cfg.temperature, tok.vocab_size, entropy=True)
            old_lp = old[m][j] if old is not None else lp.detach()
            scored[m].append(old_lp)
            mask = mb["mask"]
            a = adv[idx] if idx else torch.zeros(1, device=device)
            loss, met = grpo_loss(lp, old_lp, refs[m][j] if refs else None, a, mask, clip_eps=cfg.clip_eps,
                                  clip_eps_high=cfg.clip_eps_high or None, kl_coef=cfg.kl_coef if refs else 0.0,
                                  loss_agg=cfg.loss_agg, entropy=ent, entropy_coef=cfg.entropy_coef,
                                  num_tokens=num_tokens, num_seqs=num_seqs, max_len=cfg.max_new_tokens)
            loss.backward()
            w = mask.sum().double()
            sums["tokens"] += w
            sums["loss"] += loss.detach().double()
            for k in ("kl", "clip_frac", "entropy"):
                if k in met:
                    sums[k] += met[k].double() * w
            sums["ratio_max"] = torch.maximum(sums["ratio_max"], met["ratio_max"].double())
        grad_norms.append(optimizer_step(cfg, policy, optimizer, scheduler))
        n_updates += 1
    sync_sampler(policy, sampler_model)
    sums = {k: float(v) for k, v in sums.items()}  # waits for the update's queued kernels: part of t_update
    t3 = time.time()
    gaps = sampler_gaps(plans, old if old is not None else scored, seqs, episodes)

    n_tok = sum(len(e.completion_ids) for e in episodes)
    tot = tdist.all_reduce([float(rewards.sum()), float((rewards == 1).sum()), sum(e.format_ok for e in episodes),
                            n_tok, len(episodes), sums["kl"], sums["clip_frac"], reward_errors,
                            sum(e.finish_reason == "length" for e in episodes), float(gaps.sum()), gaps.numel(),
                            float(informative.sum()), len(records), sums["tokens"], sums["entropy"]],
                           device=device)
    gap_max = tdist.all_reduce([float(gaps.max())], op=torch.distributed.ReduceOp.MAX, device=device)[0]
    count, tokens, trained = max(tot[4], 1), max(tot[3], 1), max(tot[13], 1)
    return dict(reward=tot[0] / count, accuracy=tot[1] / count, format=tot[2] / count, resp_len=tot[3] / count,
                informative=tot[11] / max(tot[12], 1), kl=tot[5] / trained, clip_frac=tot[6] / trained,
                entropy=tot[14] / trained,
                ratio_max=sums["ratio_max"],
                grad_norm=sum(grad_norms) / max(len(grad_norms), 1), loss=sums["loss"] / max(n_updates, 1),
                updates=n_updates, reward_errors=int(tot[7]), truncated=tot[8] / count,
                lp_mismatch_mean=tot[9] / max(tot[10], 1), lp_mismatch_max=gap_max,
                tok_per_s=tokens / max(t1 - t0, 1e-9), t_rollout=t1 - t0, t_logprobs=t2 - t1, t_update=t3 - t2,
                lr=scheduler.get_last_lr()[0])


def old_policy_is_current(cfg) -> bool:
    """True when each rollout feeds exactly one optimizer step (batch size == mini-batch size)."""
    return cfg.batch_size <= cfg.mini_batch_size


def sampler_gaps(plans, lps, seqs, episodes):
    """|sampler logprob - trainer logprob| of every sampled token, both scoring the same policy: a large gap
    silently biases the importance ratio. lps[m][j] holds the old log-probs of plans[m][j]'s sequences."""
    gaps = []
    for plan, mini in zip(plans, lps):
        for idx, lp in zip(plan, mini):
            for r, i in enumerate(idx):
                s, start = seqs[i]
                gaps.append((lp[r, :len(s) - start].cpu() - torch.tensor(episodes[i].sampler_logprobs)).abs())
    return torch.cat(gaps) if gaps else torch.zeros(1)


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
        plan = plan_micro_batches(mb, cfg.micro_batch_tokens, device)
        num_tokens = max(tdist.all_reduce([sum(len(s) - p for s, p in mb)], device=device)[0] / world, 1e-8)
        total = torch.zeros((), device=device)  # summed on the device: one host read per step, not per forward
        for idx in plan:
            batch = collate(mb, idx, tok.pad_token_id, device)
            lp, mask = forward_logprobs(policy, batch, vocab_limit=tok.vocab_size), batch["mask"]
            loss = -(lp * mask).sum() / num_tokens
            loss.backward()
            total += loss.detach()
        losses.append(total)
        grad_norms.append(optimizer_step(cfg, policy, optimizer, scheduler))
    tokens = tdist.all_reduce([sum(len(s) for s, _ in seqs)], device=device)[0]
    return dict(loss=float(sum(losses)) / len(losses), grad_norm=sum(grad_norms) / max(len(grad_norms), 1),
                tok_per_s=tokens / max(time.time() - t0, 1e-9), t_update=time.time() - t0,
                lr=scheduler.get_last_lr()[0])


# ---- command line ----

def parse_args(argv=None) -> TrainConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        v = getattr(defaults, f.name)
        if isinstance(v, bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None)
        else:
            # --n would be an ambiguous prefix for torchrun's own options (--nnodes, --nproc-per-node, ...)
            flag = "--n-samples" if f.name == "n" else f"--{f.name.replace('_', '-')}"
            p.add_argument(flag, dest=f.name, type=type(v), default=None)
    p.add_argument("--demo-steps", default=None, help=argparse.SUPPRESS)
    args = vars(p.parse_args(argv))
    args.pop("demo_steps")
    given = {k: v for k, v in args.items() if v is not None}
    preset = PRESETS.get(given.get("preset", ""), {}) if given.get("preset") else {}
    if given.get("preset") and given["preset"] not in PRESETS:
        raise SystemExit(f"--preset {given['preset']!r}: known presets are {sorted(PRESETS)}")
    return TrainConfig(**{**preset, **given})


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not any(a.startswith("--model") for a in argv):
        from tooln1_min.demo import run_demo  # no model given: the self-contained CPU demo
        try:
            return run_demo(argv, sys.modules[__name__])
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
    cfg = parse_args(argv)
    try:
        train(cfg)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
