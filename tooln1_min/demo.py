"""The CPU demo behind a bare `python train.py` / `torchrun --nproc_per_node=2 train.py`.

The whole Tool-N1 pipeline, small enough for a laptop, on the same code paths as a real run:
  1. data   synthetic tool-calling records (single, multiple-candidate, parallel, no-call), train / held-out split
  2. base   a byte-level BPE tokenizer trained on that corpus (Qwen2.5's added tokens and flags) and a tiny
            randomly initialised Qwen2 model, saved as an ordinary HF checkpoint folder
  3. sft    the paper's "no-reason SFT" warm start (answers as <think></think><tool_call>[...]</tool_call>),
            because a random model never earns a binary reward
  4. grpo   GRPO with the binary reward, FSDP across the torchrun ranks
  5. eval   held-out format rate / exact-match accuracy / response length, after SFT vs after GRPO
Each stage is cached in the run folder under a hash of its settings, the rank count and the code (this package and
train.py: an edited generator, reward or trainer rebuilds what it feeds); `--stage` stops after that one.
"""
import argparse
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass

import torch

from . import dist as tdist
from .dist import log
from .data import CASES, render_prompt, render_target, save_records, split_group, split_records
from .synthetic import synthetic_records
from .model import ModelConfig, Transformer
from .tokenizer import CHATML_TEMPLATE, train_tokenizer


# The demo's tool subset: values a tiny model can copy from the query (cities, enums, numbers, items) in five
# domains. The full library adds mapped values (dates, currencies, tickers), harder than a CPU-minutes model learns.
DEMO_TOOLS = ("get_weather", "get_population", "track_package", "play_music", "find_movies", "get_news",
              "set_thermostat", "turn_on_lights", "search_restaurants", "add_to_cart")


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    seed: int = 0
    n_records: int = 2400
    tools: str = ",".join(DEMO_TOOLS)  # comma-separated TOOL_LIBRARY names ("" = all of them)
    max_tools: int = 3
    p_parallel: float = 0.2
    p_multiple: float = 0.4
    p_no_call: float = 0.2
    test_frac: float = 0.1
    vocab: int = 3000
    hidden: int = 96
    layers: int = 4
    heads: int = 2                    # head dim 48: at head dim 24 copying values from the query emerged later
    kv_heads: int = 1
    rope_theta: float = 1e4           # not Qwen2.5's 1e6 (made for 32k contexts): on valid, with std 0.06, the
    init_std: float = 0.06            # one setting tried where every seed 0/1/2 gained >= 10 points (README)
    sft_steps: int = 2200             # small batches, many steps: copying values from the query emerges late
    sft_batch: int = 8
    sft_lr: float = 3e-3
    sft_lr_decay: str = "none"        # constant: cosine over 1500 steps stopped short of copying (README)
    grpo_steps: int = 300             # valid (theta 1e6 warm starts): 200 steps +7 / +7, 300 steps +8 / +8.5
    grpo_batch: int = 32              # 32 x 8 samples beat 8 x 16, 16 x 8, 16 x 16 and 64 x 4 (README)
    grpo_n: int = 8
    grpo_lr: float = 5e-4
    grpo_lr_decay: str = "cosine"     # valid (theta 1e6): 85.5/85.0/68.0% vs constant 85.0/84.5/66.5% (README)
    grpo_kl: float = 1e-3
    grpo_temperature: float = 0.7     # Tool-N1's rollout temperature
    grpo_filter_groups: bool = True   # DAPO: skip groups whose samples all scored the same (a third faster here)
    max_new_tokens: int = 64
    eval_records: int = 1000          # valid and test each (200 was too noisy to tell a +10 gain: README)


QUICK = dict(n_records=240, vocab=800, hidden=32, layers=1, heads=2, kv_heads=1, sft_steps=3, sft_batch=8,
             grpo_steps=2, grpo_batch=4, grpo_n=2, max_new_tokens=16, eval_records=8)


def _stage_key(name, settings: dict, deps=()) -> str:
    blob = json.dumps({"stage": name, "settings": settings, "deps": list(deps)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_version(package_dir: str | None = None) -> str:
    """A hash of the code the stages run: this package's modules and, beside it, train.py. Part of the first
    stage's key, so a fork that edits the data generator, the reward or the trainer gets its stages rebuilt instead
    of silently reusing ones the old code made."""
    here = package_dir or os.path.dirname(os.path.abspath(__file__))
    files = sorted(os.path.join(here, f) for f in os.listdir(here) if f.endswith(".py"))
    files += [f for f in [os.path.join(os.path.dirname(here), "train.py")] if os.path.isfile(f)]
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.basename(f).encode() + b"\0" + open(f, "rb").read() + b"\0")
    return h.hexdigest()[:16]


def _cached(path, key) -> bool:
    stamp = os.path.join(path, "stage.json")
    if os.path.isfile(stamp) and json.load(open(stamp)).get("key") == key:
        log(f"[demo] {os.path.basename(path)}: reused from {path} (same settings, ranks and code)")
        return True
    return False


def _stamp(path, key):
    with open(os.path.join(path, "stage.json"), "w") as f:
        json.dump({"key": key, "time": time.strftime("%Y-%m-%d %H:%M:%S")}, f)


def make_data(cfg: DemoConfig, key: str):
    path = os.path.join(cfg.out, "data")
    if _cached(path, key):
        return path
    os.makedirs(path, exist_ok=True)
    tools = [t.strip() for t in cfg.tools.split(",") if t.strip()] or None
    # Three disjoint splits. train is the 90/10 split of the first n_records, as the demo always made it. valid, on
    # which the demo's settings are chosen, and test, which the README reports (scored once per configuration), are
    # eval_records each: the split's test part topped up, like valid, from records generated past n_records (the
    # generator is sequential: the first n_records stay the same), minus any prompt of another split. 200 records
    # were too few: two splits of 200 differed by 9.5 points after SFT for one model, a gain of 10 is the goal.
    records = synthetic_records(cfg.n_records + 3 * cfg.eval_records, seed=cfg.seed, max_tools=cfg.max_tools,
                                p_parallel=cfg.p_parallel, p_multiple=cfg.p_multiple, p_no_call=cfg.p_no_call,
                                tools=tools)
    train, test = split_records(records[:cfg.n_records], test_frac=cfg.test_frac, seed=cfg.seed)
    seen = {split_group(r) for r in train + test}
    rest = [r for r in records[cfg.n_records:] if split_group(r) not in seen]
    valid = rest[:cfg.eval_records]
    seen |= {split_group(r) for r in valid}
    test = (test + [r for r in rest[cfg.eval_records:] if split_group(r) not in seen])[:cfg.eval_records]
    if min(len(valid), len(test)) < cfg.eval_records:
        raise ValueError(f"eval_records={cfg.eval_records}: the generator gave only {len(valid)} validation / "
                         f"{len(test)} test records with no prompt in another split; ask for fewer")
    save_records(train, os.path.join(path, "train.jsonl"))
    save_records(valid, os.path.join(path, "valid.jsonl"))
    save_records(test, os.path.join(path, "test.jsonl"))
    print(f"[demo] data: {len(train)} train / {len(valid)} validation / {len(test)} held-out "
          f"test records -> {path}")
    _stamp(path, key)
    return path


def argument_strings(records) -> list[str]:
    """Every string argument value in the records' answers (the demo tokenizer keeps them whole)."""
    out = set()

    def walk(v):
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    for r in records:
        for call in r["answer"]:
            walk(call["arguments"])
    return sorted(out)


def make_base(cfg: DemoConfig, data_dir: str, key: str):
    """Tokenizer trained on the corpus + a tiny random Qwen2, as an HF checkpoint folder."""
    path = os.path.join(cfg.out, "base")
    if _cached(path, key):
        return path
    shutil.rmtree(path, ignore_errors=True)
    from .data import load_records
    records = load_records(os.path.join(data_dir, "train.jsonl"))
    bootstrap = train_tokenizer(["x"], 300, split="chunks")  # only to render the chat template for the corpus
    corpus = [render_prompt(bootstrap, r) + render_target(r) + "<|im_end|>" for r in records]
    tok = train_tokenizer(corpus, cfg.vocab, chat_template=CHATML_TEMPLATE, split="chunks",
                          keep_whole=argument_strings(records))
    vocab = (tok.vocab_size + 63) // 64 * 64  # padded past the tokenizer, as Qwen's embedding is
    config = ModelConfig.from_dict(dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=vocab, hidden_size=cfg.hidden,
        intermediate_size=cfg.hidden * 8 // 3 // 8 * 8, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads, rms_norm_eps=1e-6, rope_theta=cfg.rope_theta,
        tie_word_embeddings=True, max_position_embeddings=2048, hidden_act="silu",
        bos_token_id=tok.pad_token_id, eos_token_id=tok.stop_token_ids[0]))
    model = Transformer(config).init_weights(std=cfg.init_std, seed=cfg.seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    print(f"[demo] base: tokenizer {tok.vocab_size} ids, model {model.num_params() / 1e6:.2f}M params -> {path}")
    _stamp(path, key)
    return path


def run_stage(cfg: DemoConfig, name: str, key: str, train_cfg: dict, train_fn):
    """SFT or GRPO through train.py's own loop; returns the stage's HF checkpoint folder and its evals."""
    path = os.path.join(cfg.out, name)
    hf = os.path.join(path, "checkpoint", "hf")
    if _cached(path, key):
        return hf, json.load(open(os.path.join(path, "evals.json")))
    if tdist.is_main():
        shutil.rmtree(path, ignore_errors=True)
    torch.distributed.barrier()
    evals = train_fn(train_cfg)
    if tdist.is_main():
        with open(os.path.join(path, "evals.json"), "w") as f:
            json.dump(evals, f, indent=1)
        _stamp(path, key)
    torch.distributed.barrier()
    return hf, evals


def demo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description="tooln1-min CPU demo (a bare `python train.py`)")
    p.add_argument("--out", default=DemoConfig.out)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny, seconds-long variant (CI)")
    p.add_argument("--stage", choices=["data", "base", "sft", "grpo", "all"], default="all",
                   help="run up to this stage (earlier stages come from the cache or are rebuilt)")
    for k, v in asdict(DemoConfig()).items():
        if isinstance(v, bool):
            p.add_argument(f"--{k.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None)
        elif k.endswith("lr_decay"):  # checked here, not after the stages before it have run
            p.add_argument(f"--{k.replace('_', '-')}", choices=("none", "linear", "cosine"), default=None)
        elif k not in ("out", "seed"):
            p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=None)
    return p


def demo_flags() -> list[str]:
    return sorted(f for f in demo_parser()._option_string_actions if f.startswith("--") and f != "--help")


def is_demo_argv(argv) -> bool:
    """A bare train.py, or one given only demo flags, runs the demo; anything else (--help too) is training."""
    flags = set(demo_flags())
    return all(a.split("=", 1)[0] in flags for a in argv if a.startswith("-"))


def run_demo(argv, train_fn):
    """train_fn(settings: dict) -> evals: train.py's loop on a TrainConfig of those settings."""
    args = vars(demo_parser().parse_args(argv))
    over = {k: v for k, v in args.items() if k in DemoConfig.__dataclass_fields__ and v is not None}
    cfg = DemoConfig(**{**(QUICK if args["quick"] else {}), **over})
    rank, world, device = tdist.init_distributed()
    t0 = time.time()
    settings = asdict(cfg)
    k_data = _stage_key("data", {k: settings[k] for k in ("seed", "n_records", "tools", "max_tools", "p_parallel",
                                                          "p_multiple", "p_no_call", "test_frac", "eval_records")},
                        [code_version()])
    k_base = _stage_key("base", {k: settings[k] for k in ("seed", "vocab", "hidden", "layers", "heads", "kv_heads",
                                                          "rope_theta", "init_std")}, [k_data])
    if tdist.is_main():
        os.makedirs(cfg.out, exist_ok=True)
        data_dir = make_data(cfg, k_data)
        if args["stage"] != "data":
            make_base(cfg, data_dir, k_base)
    torch.distributed.barrier()
    data_dir, base = os.path.join(cfg.out, "data"), os.path.join(cfg.out, "base")
    if args["stage"] in ("data", "base"):
        return
    common = dict(data=os.path.join(data_dir, "train.jsonl"), eval_data=os.path.join(data_dir, "test.jsonl"),
                  seed=cfg.seed, max_new_tokens=cfg.max_new_tokens, eval_max_new_tokens=cfg.max_new_tokens,
                  max_prompt_len=1024, micro_batch_tokens=8192, save_every=10**9, weight_decay=0.0)
    # The rank count is part of a training stage's key: one and two ranks draw and reduce differently (README).
    k_sft = _stage_key("sft", {**{k: settings[k] for k in ("sft_steps", "sft_batch", "sft_lr", "sft_lr_decay")},
                               "world": world}, [k_base])
    sft_cfg = dict(model=base, out=os.path.join(cfg.out, "sft"), algo="sft", batch_size=cfg.sft_batch,
                   mini_batch_size=cfg.sft_batch, lr=cfg.sft_lr, lr_decay=cfg.sft_lr_decay, adam_beta2=0.95,
                   warmup_steps=5, max_steps=cfg.sft_steps, log_every=25, **{**common, "eval_data": ""})
    log(f"[demo] SFT warm start: {cfg.sft_steps} steps of {cfg.sft_batch} records")
    sft_hf, _ = run_stage(cfg, "sft", k_sft, sft_cfg, train_fn)
    if args["stage"] == "sft":
        return
    grpo_keys = ("grpo_steps", "grpo_batch", "grpo_n", "grpo_lr", "grpo_lr_decay", "grpo_kl", "grpo_temperature",
                 "grpo_filter_groups", "max_new_tokens")
    k_grpo = _stage_key("grpo", {k: settings[k] for k in grpo_keys}, [k_sft])
    grpo_cfg = dict(model=sft_hf, out=os.path.join(cfg.out, "grpo"), algo="grpo", batch_size=cfg.grpo_batch,
                    mini_batch_size=cfg.grpo_batch // 2, n=cfg.grpo_n, temperature=cfg.grpo_temperature,
                    lr=cfg.grpo_lr, lr_decay=cfg.grpo_lr_decay, kl_coef=cfg.grpo_kl,
                    filter_groups=cfg.grpo_filter_groups, max_steps=cfg.grpo_steps, rollout_batch_size=512, **common)
    log(f"[demo] GRPO: {cfg.grpo_steps} steps of {cfg.grpo_batch} prompts x {cfg.grpo_n} samples")
    grpo_hf, evals = run_stage(cfg, "grpo", k_grpo, grpo_cfg, train_fn)
    if tdist.is_main():
        report(cfg, evals, grpo_hf, time.time() - t0)
    torch.distributed.barrier()


def report(cfg, evals, grpo_hf, seconds):
    before, after = evals.get("before", {}), evals.get("after", {})
    rows = [("format rate", "format_rate", "{:.1%}"), ("exact-match accuracy", "accuracy", "{:.1%}"),
            ("mean response length", "mean_response_len", "{:.1f}")]
    for case in CASES:
        if f"count_{case}" in after:
            rows.append((f"  {case.replace('_', '-')} ({after[f'count_{case}']})", f"accuracy_{case}", "{:.1%}"))
    lines = [f"held-out ({after.get('count', 0)} records, greedy)  after SFT   after GRPO"]
    for label, k, fmt in rows:
        lines.append(f"  {label:<32}{fmt.format(before.get(k, 0)):>10}  {fmt.format(after.get(k, 0)):>10}")
    table = "\n".join(lines)
    print("\n" + table)
    with open(os.path.join(cfg.out, "results.txt"), "w") as f:
        f.write(table + "\n")
    final = os.path.join(cfg.out, "final")
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(grpo_hf, final)
    shutil.copy(os.path.join(cfg.out, "grpo", "metrics.jsonl"), os.path.join(cfg.out, "metrics.jsonl"))
    plot(cfg, evals)
    print(f"\n[demo] done in {seconds:.0f} s. Final policy (HF checkpoint): {final}; metrics: "
          f"{os.path.join(cfg.out, 'metrics.jsonl')}")


def plot(cfg, evals=None):
    """reward_curve.png: the per-step train reward (raw and a 20-step mean), the format rate, and the held-out
    greedy accuracy after SFT (step 0) and after GRPO (last step)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[demo] matplotlib not installed: skipping the reward curve (pip install matplotlib)")
        return
    rows = [json.loads(line) for line in open(os.path.join(cfg.out, "metrics.jsonl"))]
    steps, reward = [r["step"] for r in rows], [r["reward"] for r in rows]
    smooth = [sum(reward[max(0, i - 19):i + 1]) / len(reward[max(0, i - 19):i + 1]) for i in range(len(reward))]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, reward, color="tab:blue", alpha=0.3, label="train reward (mean of the step)")
    ax.plot(steps, smooth, color="tab:blue", label="train reward (20-step mean)")
    ax.plot(steps, [r["format"] for r in rows], color="tab:orange", alpha=0.6, label="train format rate")
    if evals and "before" in evals and "after" in evals:
        before, after = evals["before"]["accuracy"], evals["after"]["accuracy"]
        ax.plot([0, steps[-1]], [before, after], "o--", color="tab:green", label="held-out accuracy (greedy)")
        ax.annotate(f"after SFT {before:.1%}", (0, before), xytext=(6, -14), textcoords="offset points",
                    color="tab:green", fontsize=8)
        ax.annotate(f"after GRPO {after:.1%}", (steps[-1], after), xytext=(-78, -16), textcoords="offset points",
                    color="tab:green", fontsize=8)
    ax.set_title("CPU demo: GRPO with Tool-N1's binary reward", fontsize=10)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("share of completions / records")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(cfg.out, "reward_curve.png"), dpi=120)
    plt.close(fig)
    print(f"[demo] reward curve: {os.path.join(cfg.out, 'reward_curve.png')}")
