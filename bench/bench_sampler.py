"""Sampler throughput on random weights with real Qwen2.5 shapes (a benchmark that prints figures, not a test).

    python bench/bench_sampler.py --size 0.5b --prompts 64 --n 5 --prompt-len 256 --new 256 [--hf]
    python bench/bench_sampler.py --size 7b --layers 28 --prompts 64 --n 1 --prompt-len 256 --new 128 --hf
    python bench/bench_sampler.py --size 0.5b --prompts 64 --n 5 1 --hf     # two runs on one model, one compile

Prints generated tokens/s, ms per decode step and the fraction of the HBM roofline (bytes of weights + KV read
per step / measured device copy bandwidth). --hf runs transformers' generate on the same weights in the same run.
Lengths are forced (stop ids ignored); prefill is included in the time, as in the peers' figures.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tooln1_min.model import ModelConfig, Transformer  # noqa: E402
from tooln1_min import sampler  # noqa: E402
from tooln1_min.sampler import generate  # noqa: E402
from results import emit, profile  # noqa: E402

SHAPES = {  # Qwen2.5 config.json values ("tiny": the CPU rehearsal's toy size, bench/gpu_all.sh --smoke)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=True),
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}


def qwen_config(size, layers=None):
    d = dict(SHAPES[size], model_type="qwen2", rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=32768)
    if layers:
        d["num_hidden_layers"] = layers
    return ModelConfig.from_dict(d)


def copy_bandwidth(device):
    x = torch.empty(2 * 2**30 // 2, dtype=torch.bfloat16, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    return 2 * x.numel() * x.element_size() * 10 / (time.perf_counter() - t)  # read + write


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


QWEN_TOKENIZER_IDS = 151665


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", choices=sorted(SHAPES), default="0.5b")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--n", type=int, nargs="+", default=[5], help="samples per prompt; several values = several "
                   "runs on the same model (compiled once)")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--hf", action="store_true", help="also time transformers' generate (same weights)")
    p.add_argument("--profile", action="store_true", help="then profile 64 steps at the first --n (top kernels)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t0 = time.perf_counter()
    cfg = qwen_config(args.size, args.layers)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the bench dtype on the device: no fp32 copy (30 GB at 7B) to cast
    try:
        with torch.device(device):
            model = Transformer(cfg).eval()
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():
        for prm in model.parameters():
            prm.normal_(0, 0.02)
    model.fuse_projections()  # as train.py's sampler copy and eval.py hold it
    g = torch.Generator().manual_seed(0)
    vocab = min(151000, cfg.vocab_size)
    prompts = [torch.randint(0, vocab, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]
    if args.profile and device.type == "cuda":  # start the profiler (CUPTI) once before any CUDA graph exists:
        with torch.profiler.profile():          # its first start after captures is a reported trouble spot
            pass
    bw = copy_bandwidth(device) if device.type == "cuda" else None
    hf = build_hf(model, cfg, device, dtype) if args.hf else None
    print(f"models built in {time.perf_counter() - t0:.1f} s", flush=True)
    kws = [run_one(args, model, cfg, prompts, n, device, bw, hf) for n in args.n]
    if args.profile:  # what bounds a decode step: the sampling's vocabulary-wide ops, attention, the matmuls?
        # The first --n (the 0.5B target's x320); 64 steps, so the replayed steps outweigh the chunk's eager
        # prefill, warm-up and capture.
        profile(lambda: generate(model, prompts, **{**kws[0], "max_new_tokens": 64}), device,
                f"sampler profile {args.size} x{len(prompts) * args.n[0]} (64 steps)")


def run_one(args, model, cfg, prompts, n, device, bw, hf):
    rows = args.prompts * n
    label = f"{args.size} x{rows}"
    # vocab_limit: Qwen2.5's tokenizer size, as a rollout passes it (never a padding id): the step settings of
    # train.py's rollout, so the grpo job can find this job's kernels in inductor's on-disk cache.
    kw = dict(n=n, max_new_tokens=args.new, temperature=args.temperature, ignore_stop=True,
              vocab_limit=min(QWEN_TOKENIZER_IDS, cfg.vocab_size),
              max_batch_size=rows, compile=not args.no_compile and device.type == "cuda", seed=0)
    t0 = time.perf_counter()
    generate(model, prompts[:max(1, 8 // n)], **{**kw, "max_new_tokens": 16})  # warm-up / compile
    generate(model, prompts, **kw)  # second warm-up at full size (graph capture for this batch size)
    print(f"warm-up ({'compile, ' if kw['compile'] else ''}graph capture) {time.perf_counter() - t0:.1f} s", flush=True)
    G = sampler._GraphedStep
    graphs = G.captured, G.replayed, G.capture_seconds
    out, secs = timed(lambda: generate(model, prompts, **kw), device)
    graphs = G.captured - graphs[0], G.replayed - graphs[1], G.capture_seconds - graphs[2]
    tokens = sum(len(s.token_ids) for g_ in out for s in g_)
    step_ms = secs / args.new * 1e3
    # The same call stopped after its first token: prefill (+ one sample). The rest, less the graph captures (a
    # chunk records its own graphs: the timed call did too) is the decode steps alone, the figure the HBM roofline
    # describes (prefill is compute-bound and spread over the steps above; tok/s pays both, as a rollout does).
    _, prefill = timed(lambda: generate(model, prompts, **{**kw, "max_new_tokens": 1}), device)
    decode_ms = max(secs - prefill - graphs[2], 0.0) / max(args.new - 1, 1) * 1e3
    print(f"tooln1-min  {label} seqs, prompt {args.prompt_len}, new {args.new}: "
          f"{tokens / secs:,.0f} tok/s, {step_ms:.2f} ms/step (prefill included; prefill {prefill * 1e3:.0f} ms, "
          f"graph captures {graphs[2] * 1e3:.0f} ms, then {decode_ms:.2f} ms per decode step); CUDA graphs captured "
          f"{graphs[0]}, replayed {graphs[1]} times")
    fig = dict(size=args.size, rows=rows, prompt_len=args.prompt_len, new=args.new, tok_per_s=round(tokens / secs),
               ms_per_step=round(step_ms, 3), prefill_ms=round(prefill * 1e3, 1), decode_ms=round(decode_ms, 3),
               capture_ms=round(graphs[2] * 1e3, 1), graphs_captured=graphs[0], graphs_replayed=graphs[1],
               compiled=kw["compile"])
    if bw:
        # Bytes a decode step reads: every weight, except that an untied input embedding is a lookup of one row
        # per sequence (the tied one is read whole, as the lm_head).
        weights = sum(p_.numel() * p_.element_size() for p_ in model.parameters())
        if not cfg.tie_word_embeddings:
            embed = model.model.embed_tokens.weight
            weights -= embed.numel() * embed.element_size() - rows * embed.shape[1] * embed.element_size()
        kv = 2 * cfg.num_hidden_layers * rows * cfg.num_key_value_heads * cfg.head_dim * 2 * \
            (args.prompt_len + args.new / 2)
        roof_ms = (weights + kv) / bw * 1e3
        print(f"  HBM roofline {roof_ms:.2f} ms/step (weights {weights / 1e9:.2f} GB + mean KV {kv / 1e9:.2f} GB at "
              f"{bw / 1e12:.2f} TB/s copy bandwidth): a decode step is {decode_ms / roof_ms:.1f}x it "
              f"({roof_ms / step_ms:.0%} of roofline with prefill spread over the steps)")
        fig.update(roofline_ms=round(roof_ms, 3), roofline_frac=round(roof_ms / step_ms, 3),
                   decode_vs_roofline=round(decode_ms / roof_ms, 2))
    if hf is not None:
        ids = torch.tensor(prompts, device=device).repeat_interleave(n, 0)
        gen = dict(do_sample=True, temperature=args.temperature, top_p=1.0, top_k=0, max_new_tokens=args.new,
                   min_new_tokens=args.new, attention_mask=torch.ones_like(ids))
        hf.generate(ids[:8], **{**gen, "max_new_tokens": 8, "min_new_tokens": 8,
                                "attention_mask": torch.ones_like(ids[:8])})
        _, hs = timed(lambda: hf.generate(ids, **gen), device)
        print(f"HF generate {label}: {rows * args.new / hs:,.0f} tok/s, {hs / args.new * 1e3:.2f} ms/step"
              f"  -> tooln1-min is {hs / secs:.1f}x faster")
        fig.update(hf_tok_per_s=round(rows * args.new / hs), hf_ms_per_step=round(hs / args.new * 1e3, 3),
                   speedup_vs_hf=round(hs / secs, 2))
    if kw["compile"] and sampler._COMPILED is sampler._decode_step:  # the sampler warned and ran eagerly
        emit(f"sampler {label}", "failed", reason="torch.compile of the decode step failed: eager figures", **fig)
    else:
        emit(f"sampler {label}", **fig)
    return kw


def build_hf(model, cfg, device, dtype):
    """transformers' Qwen2ForCausalLM holding our model's weights, built on the device in the bench dtype."""
    import transformers
    hf_cfg = transformers.Qwen2Config(**{k: v for k, v in cfg.to_dict().items() if k != "architectures"})
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built on the device in the bench dtype: no 30 GB fp32 CPU copy at 7B
    try:
        with torch.device(device):
            hf = transformers.Qwen2ForCausalLM(hf_cfg).eval()
    finally:
        torch.set_default_dtype(default)
    missing, unexpected = hf.load_state_dict(model.hf_state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"weights differ: missing {missing}, unexpected {unexpected}")
    if cfg.tie_word_embeddings:
        hf.tie_weights()
    return hf


if __name__ == "__main__":
    main()
