"""Training throughput on random weights with real Qwen2.5 shapes (prints figures; not a test).

    python bench/bench_train.py update --size 1.5b --batch 4 --seq 1024          # fwd+bwd+AdamW MFU
    python bench/bench_train.py grpo --size 0.5b --tokenizer DIR --prompts 8 --n 5 --new 256 --steps 3

`update` times the training step train.py runs (FSDP2-wrapped, bf16 compute with fp32 master weights and
reduction, token logprobs, AdamW) and prints model FLOPs / time / 989e12 (H100 SXM dense bf16 peak).
`grpo` writes a random checkpoint (tokenizer from DIR, e.g. a Qwen2.5 tokenizer folder) and synthetic data, runs
whole GRPO steps through train.py and prints its time split (rollout / logprobs / update) per step.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_sampler import qwen_config  # noqa: E402
from tooln1_min import dist as tdist  # noqa: E402

PEAK = 989e12


def bench_update(args):
    rank, world, device = tdist.init_distributed()
    cfg = qwen_config(args.size, args.layers)
    model = tdist.build_sharded(cfg, device, torch.bfloat16 if device.type == "cuda" else None,
                                args.checkpointing, compile=args.compile)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, foreach=True)
    ids = torch.randint(0, 151000, (args.batch, args.seq), device=device)
    # Matmul parameters: the input embedding is a lookup, not a matmul (a tied one still counts, as the lm_head).
    # DTensor.numel() is already the global count.
    n_params = sum(p.numel() for name, p in model.named_parameters()
                   if cfg.tie_word_embeddings or name != "model.embed_tokens.weight")

    at = torch.arange(args.seq - 1, device=device).expand(args.batch, -1)

    def step():  # scored as train.py scores completions: chunked vocabulary projection (model.head_logprobs)
        lp = model(ids, logits_at=at, targets=ids[:, 1:])
        lp.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up (and compilation with --compile)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = (time.perf_counter() - t) / args.iters
    tokens = args.batch * args.seq
    attn = 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * args.seq * tokens / 2  # causal
    flops = 6 * n_params * tokens + attn
    if tdist.is_main():
        print(f"update{' (compiled)' if args.compile else ''} {args.size} ({n_params / 1e9:.2f}B params), "
              f"{args.batch}x{args.seq} tokens x {world} rank(s): "
              f"{secs * 1e3:.0f} ms/step, {tokens * world / secs:,.0f} tok/s, MFU {flops / secs / PEAK:.1%}")


def bench_grpo(args):
    from tooln1_min.data import save_records, synthetic_records
    from tooln1_min.model import Transformer
    from tooln1_min.tokenizer import Tokenizer
    tmp = tempfile.mkdtemp()
    try:
        cfg = qwen_config(args.size, args.layers)
        with torch.device("cpu"):
            model = Transformer(cfg).init_weights(std=0.02, seed=0)
        ckpt = os.path.join(tmp, "model")
        model.save_pretrained(ckpt)
        Tokenizer.from_pretrained(args.tokenizer).save_pretrained(ckpt)
        save_records(synthetic_records(max(args.prompts * args.steps, 64), seed=0), os.path.join(tmp, "d.jsonl"))
        cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--model", ckpt, "--data", os.path.join(tmp, "d.jsonl"),
               "--out", os.path.join(tmp, "run"), "--batch-size", str(args.prompts), "--mini-batch-size",
               str(args.prompts), "--n-samples", str(args.n), "--max-new-tokens", str(args.new),
               "--max-steps", str(args.steps), "--temperature", "0.7", "--save-every", "1000000"]
        subprocess.run(cmd, check=True)
        print("(step 1 includes compiling the decode step and recording its CUDA graphs; later steps are steady state)")
        for line in open(os.path.join(tmp, "run", "metrics.jsonl")):
            m = json.loads(line)
            total = m["t_rollout"] + m["t_logprobs"] + m["t_update"]
            print(f"GRPO step {m['step']}: {total:.2f} s = rollout {m['t_rollout']:.2f} + logprobs "
                  f"{m['t_logprobs']:.2f} + update {m['t_update']:.2f}  ({m['tok_per_s']:,.0f} rollout tok/s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["update", "grpo"])
    p.add_argument("--size", default="1.5b")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile each block (train.py --compile)")
    p.add_argument("--tokenizer", default="")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    if args.what == "grpo" and not args.tokenizer:
        raise SystemExit("grpo needs --tokenizer DIR (a folder with a Qwen2.5 tokenizer.json)")
    bench_update(args) if args.what == "update" else bench_grpo(args)


if __name__ == "__main__":
    main()
