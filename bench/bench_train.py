"""Training throughput on random weights with real Qwen2.5 shapes (prints figures; not a test).

    python bench/bench_train.py update --size 1.5b --batch 4 --seq 1024          # fwd+bwd+AdamW MFU
    python bench/bench_train.py grpo --size 0.5b [--tokenizer DIR] --prompts 8 --n 5 --new 256 --steps 3

`update` times the training step train.py runs (FSDP2-wrapped, bf16 compute with fp32 master weights and
reduction, token logprobs, AdamW) and prints model FLOPs / time / the card's dense bf16 peak (PEAKS, by name).
`grpo` writes a random checkpoint and synthetic data, runs whole GRPO steps through train.py and prints its time
split (rollout / logprobs / update) per step. The tokenizer comes from DIR (e.g. a Qwen2.5 tokenizer folder) when
given, else a small BPE is trained on the synthetic prompts (no files from outside the repo needed).
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
from results import emit, profile  # noqa: E402
from tooln1_min import dist as tdist  # noqa: E402
from tooln1_min.batching import collate, forward_logprobs, make_sequences  # noqa: E402
from train import adamw_impl  # noqa: E402

PEAKS = {"H100": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H200": 989e12, "H800": 989e12, "GH200": 989e12,
         "B200": 2250e12, "A100": 312e12}  # dense bf16; SXM unless named (the longest name that matches wins)


def peak_flops(device):
    """The card's dense bf16 peak, from its name (None when unknown, e.g. on CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in sorted(PEAKS.items(), key=lambda kv: -len(kv[0])) if k in name), None)


def bench_update(args):
    rank, world, device = tdist.init_distributed()
    cfg = qwen_config(args.size, args.layers)
    model = tdist.build_sharded(cfg, device, torch.bfloat16 if device.type == "cuda" else None,
                                args.checkpointing, compile=args.compile, per_block=args.per_block or None)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, **adamw_impl(device))  # as train.py builds it
    ids = torch.randint(0, min(151000, cfg.vocab_size), (args.batch, args.seq), device=device)
    # Matmul parameters: the input embedding is a lookup, not a matmul (a tied one still counts, as the lm_head).
    # DTensor.numel() is already the global count.
    n_params = sum(p.numel() for name, p in model.named_parameters()
                   if cfg.tie_word_embeddings or name != "model.embed_tokens.weight")

    at = torch.arange(args.seq - 1, device=device).expand(args.batch, -1)
    if args.packed:  # GRPO's rows: a prompt and `packed` completions, each seq // (packed + 1) tokens, one mask
        part = args.seq // (args.packed + 1)
        g = torch.Generator().manual_seed(0)
        rand = lambda: torch.randint(0, min(151000, cfg.vocab_size), (part,), generator=g).tolist()  # noqa: E731
        prompts = [rand() for _ in range(args.batch)]
        seqs = make_sequences([p for p in prompts for _ in range(args.packed)],
                              [rand() for _ in range(args.batch * args.packed)])
        mb = collate(seqs, list(range(len(seqs))), 0, device, pack_len=args.seq)

    def step(mark=lambda phase: None):  # scored as train.py scores completions (model.head_logprobs, chunked)
        if args.packed:  # as train.py's policy update: entropy too, a token-mean
            lp, _ = forward_logprobs(model, mb, 1.0, None, entropy=True)
            lp = lp[mb.mask.bool()]
        else:
            lp = model(ids, logits_at=at, targets=ids[:, 1:])
        mark("forward")
        lp.mean().backward()
        mark("backward")
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        mark("clip")
        opt.step()
        opt.zero_grad(set_to_none=True)
        mark("adamw")

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
    label = (f"update {args.size}{' compiled' if args.compile else ''}{' packed' if args.packed else ''}"
             f"{' per-block' if args.per_block else ''}")
    if args.profile:
        phase_split(step, device, label)
        profile(step, device, f"{label} profile", record=tdist.is_main())
    per_pair = 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim  # QK^T and PV, fwd + bwd
    if args.packed:  # what the packed rows compute: the prompt causally, each completion over the prompt and
        # itself causally; the lm_head at completion positions only (forward_logprobs never projects the prompt)
        part = args.seq // (args.packed + 1)
        tokens, scored = args.batch * (args.packed + 1) * part, args.batch * args.packed * part
        pairs = args.batch * (part * part / 2 + args.packed * (part * part + part * part / 2))
    else:
        tokens = scored = args.batch * args.seq
        pairs = args.batch * args.seq * args.seq / 2  # causal
    head = cfg.vocab_size * cfg.hidden_size
    flops = 6 * (n_params - head) * tokens + 6 * head * scored + per_pair * pairs
    if tdist.is_main():
        peak = peak_flops(device)
        mfu = flops / secs / peak if peak else None
        print(f"{label} ({n_params / 1e9:.2f}B params), "
              f"{args.batch}x{args.seq} tokens{f' (rows of a prompt + {args.packed})' if args.packed else ''} "
              f"x {world} rank(s): {secs * 1e3:.0f} ms/step, "
              f"{tokens * world / secs:,.0f} tok/s, {flops / secs / 1e12:.1f} TFLOP/s"
              + (f", MFU {mfu:.1%}" if mfu else " (no known peak for this device)"))
        emit(label, size=args.size, batch=args.batch, seq=args.seq, packed=args.packed, ranks=world,
             compiled=args.compile, ms_per_step=round(secs * 1e3, 2), tok_per_s=round(tokens * world / secs),
             tflops=round(flops / secs / 1e12, 2), mfu=round(mfu, 4) if mfu else None,
             gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
             peak_tflops=round(peak / 1e12) if peak else None)
    torch.distributed.destroy_process_group()  # a clean exit: a hang at teardown would cost the job's time limit


def phase_split(step, device, label, iters=3):
    """Wall time of each phase of a step (forward, backward, clip, AdamW), the device synchronised at each boundary
    so every phase's kernels are counted in it, and the host's share: the time until the phase's last kernel was
    queued (host ~ wall: the GPU waited for the host, launches and Python bound the phase; host << wall: kernels)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    wall, host = {}, {}
    for _ in range(iters):
        sync()
        t = [time.perf_counter()]

        def mark(phase):
            queued = time.perf_counter()
            sync()
            done = time.perf_counter()
            host[phase] = host.get(phase, 0.0) + (queued - t[0]) / iters
            wall[phase] = wall.get(phase, 0.0) + (done - t[0]) / iters
            t[0] = time.perf_counter()
        step(mark)
    line = ", ".join(f"{k} {v * 1e3:.1f} (host {host[k] * 1e3:.1f})" for k, v in wall.items())
    print(f"phases of one step, synchronised at each boundary (ms): {line}; sum {sum(wall.values()) * 1e3:.1f}")
    if tdist.is_main():
        emit(f"{label} phases", **{f"{k}_ms": round(v * 1e3, 2) for k, v in wall.items()},
             **{f"{k}_host_ms": round(v * 1e3, 2) for k, v in host.items()})


def bench_tokenizer(path, records):
    """The tokenizer at path if given; else a small BPE trained on the records' rendered prompts and answers."""
    from tooln1_min.data import render_prompt, render_target
    from tooln1_min.tokenizer import Tokenizer, train_tokenizer
    if path:
        return Tokenizer.from_pretrained(path), "from " + path
    bootstrap = train_tokenizer(["x"], 300)  # only to render the chat template
    corpus = [render_prompt(bootstrap, r) + render_target(r) for r in records]
    tok = train_tokenizer(corpus, 4000)
    return tok, f"trained here ({tok.vocab_size} ids; no Qwen2.5 tokenizer given)"


def bench_grpo(args):
    from tooln1_min.data import save_records
    from tooln1_min.synthetic import synthetic_records
    from tooln1_min.model import Transformer
    tmp = tempfile.mkdtemp()
    try:
        cfg = qwen_config(args.size, args.layers)
        records = synthetic_records(max(args.prompts * args.steps, 64), seed=0)
        tok, tok_note = bench_tokenizer(args.tokenizer, records)
        print(f"tokenizer: {tok_note}", flush=True)
        with torch.device("cpu"):
            model = Transformer(cfg).init_weights(std=0.02, seed=0)
        ckpt = os.path.join(tmp, "model")
        model.save_pretrained(ckpt)
        del model
        tok.save_pretrained(ckpt)
        save_records(records, os.path.join(tmp, "d.jsonl"))
        cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--model", ckpt, "--data", os.path.join(tmp, "d.jsonl"),
               "--out", os.path.join(tmp, "run"), "--batch-size", str(args.prompts), "--mini-batch-size",
               str(args.prompts), "--n-samples", str(args.n), "--max-new-tokens", str(args.new),
               "--max-steps", str(args.steps), "--temperature", "0.7", "--save-every", "1000000", *args.train_args]
        print("(step 1 includes compiling the decode step and recording its CUDA graphs; later steps are steady state)")
        # Each step's figure is recorded as its metrics line appears (a job killed at its time limit keeps the
        # steps it finished); once the last is in, train.py is stopped: its final checkpoint (GBs) is not timed.
        proc = subprocess.Popen(cmd)
        seen = 0
        try:
            while seen < args.steps:
                ended = proc.poll() is not None
                path = os.path.join(tmp, "run", "metrics.jsonl")
                text = open(path).read() if os.path.isfile(path) else ""
                for line in text.split("\n")[seen:-1]:  # complete lines only
                    seen += 1
                    _grpo_figure(args, json.loads(line), tok_note)
                if ended:
                    break
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if seen < args.steps:
            raise SystemExit(f"train.py exited with code {proc.returncode} after {seen} of {args.steps} steps")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _grpo_figure(args, m, tok_note):
    total = m["t_rollout"] + m["t_logprobs"] + m["t_update"]
    print(f"GRPO step {m['step']}: {total:.2f} s = rollout {m['t_rollout']:.2f} + logprobs "
          f"{m['t_logprobs']:.2f} + update {m['t_update']:.2f}  ({m['tok_per_s']:,.0f} rollout tok/s)", flush=True)
    compiled = "--compile" in args.train_args
    emit(f"grpo step {m['step']} {args.size}" + (" compiled" if compiled else ""), size=args.size, compiled=compiled,
         prompts=args.prompts, n=args.n, new=args.new, step=m["step"], seconds=round(total, 3),
         t_rollout=round(m["t_rollout"], 3), t_logprobs=round(m["t_logprobs"], 3), t_update=round(m["t_update"], 3),
         rollout_tok_per_s=round(m["tok_per_s"]), tokenizer=tok_note, warm=m["step"] > 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["update", "grpo"])
    p.add_argument("--size", default="1.5b")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--packed", type=int, default=0, help="update: rows as GRPO packs them, a prompt and this many "
                   "completions (seq // (packed + 1) tokens each), scored with entropy as train.py's update")
    p.add_argument("--compile", action="store_true", help="torch.compile each block (train.py --compile)")
    p.add_argument("--per-block", action="store_true", help="update: one FSDP unit per block whatever the rule "
                   "(dist.shard_per_block) picks, to compare the two in one run")
    p.add_argument("--profile", action="store_true", help="update: then profile one step (top kernels)")
    p.add_argument("--tokenizer", default="")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--train-args", nargs=argparse.REMAINDER, default=[], help="grpo: passed on to train.py")
    args = p.parse_args()
    if args.packed < 0 or (args.packed and args.seq // (args.packed + 1) < 2):
        raise SystemExit(f"--packed {args.packed} with --seq {args.seq}: each of the prompt and {args.packed} "
                         "completions needs >= 2 tokens (seq >= 2 x (packed + 1))")
    if args.tokenizer and not os.path.isfile(os.path.join(args.tokenizer, "tokenizer.json")):
        raise SystemExit(f"--tokenizer {args.tokenizer}: no tokenizer.json there")
    bench_update(args) if args.what == "update" else bench_grpo(args)


if __name__ == "__main__":
    main()
