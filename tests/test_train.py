"""The training loop end to end on CPU: 1 vs 2 FSDP ranks (gloo), resume, checkpoints that transformers loads,
the demo pipeline, a GRPO toy task that must improve, and bad input."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers import needs_cxx
from tooln1_min.demo import DemoConfig, QUICK, make_base, make_data
from tooln1_min.grpo import group_advantages, grpo_loss, token_logprobs
from tooln1_min.model import Transformer
from tooln1_min.sampler import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny HF checkpoint + synthetic data, built by the demo's own stage functions."""
    out = tmp_path_factory.mktemp("tiny")
    cfg = DemoConfig(**{**QUICK, "out": str(out)})
    data = make_data(cfg, "k")
    base = make_base(cfg, data, "k")
    return base, os.path.join(data, "train.jsonl")


def _run(args, nproc=1, timeout=300, **env_vars):
    if nproc == 1:
        cmd = [sys.executable, "train.py"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "train.py"]
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_vars)
    res = subprocess.run(cmd + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def _grpo_args(base, data, out, **kw):
    args = dict(model=base, data=data, out=str(out), batch_size=4, mini_batch_size=2, n=2, max_new_tokens=8,
                lr=1e-3, kl_coef=1e-2, max_steps=2, temperature=1.0, micro_batch_tokens=600, save_every=100)
    args.update(kw)
    return [x for k, v in args.items() for x in ("--n-samples" if k == "n" else f"--{k.replace('_', '-')}", str(v))]


def _weights(out):
    return load_file(os.path.join(out, "checkpoint", "hf", "model.safetensors"))


def _metrics(out):
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


SLOW_RANK = """
import os, sys, time
sys.path.insert(0, os.getcwd())
import train
from tooln1_min import reward
real = reward.REWARDS["binary"]

def slow(completion, answer):  # rank 1's rewards take 0.1 s each: its rollout is the step's slowest
    if os.environ["RANK"] == "1":
        time.sleep(0.1)
    return real(completion, answer)
reward.REWARDS["binary"] = slow
train.main(sys.argv[1:])
"""


def test_the_logged_rollout_time_is_the_slowest_ranks(tiny, tmp_path):
    """Ranks wait for each other at the first collective after the rollout: rank 0's own rollout time was logged
    (and tok_per_s divided by it), the wait counted as old/ref log-probs."""
    base, data = tiny
    script = tmp_path / "slow.py"
    script.write_text(SLOW_RANK)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    res = subprocess.run(cmd + _grpo_args(base, data, tmp_path / "run", max_steps=1), cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    (m,) = _metrics(tmp_path / "run")
    assert m["t_rollout"] >= 0.4 > m["t_logprobs"], m  # rank 1 rewards 2 prompts x 2 samples, 0.1 s each


def test_two_fsdp_ranks_match_one_process(tiny, tmp_path):
    """Two ranks with one FSDP unit per block (the rule's threshold lowered: the tiny blocks would otherwise make the
    whole model one unit) give the one-process update, where the whole model is one unit."""
    base, data = tiny
    _run(_grpo_args(base, data, tmp_path / "one"))
    _run(_grpo_args(base, data, tmp_path / "two"), nproc=2, TOOLN1_BLOCK_UNIT_MIN_PARAMS="0")
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    start = load_file(os.path.join(base, "model.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a)  # training moved the weights
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    for ma, mb in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two")):
        for key in ("reward", "loss", "kl", "resp_len", "entropy", "ratio_max"):  # all global, whatever the ranks
            assert ma[key] == pytest.approx(mb[key], rel=1e-4, abs=1e-6), key
        assert ma["entropy"] > 0
        # step 2 samples from the weights sync_sampler copied after step 1's update (per-block units on two ranks,
        # one unit in one process): the sampler's log-probs are the trainer's, so every unit was copied
        assert ma["lp_mismatch_max"] < 1e-4 and mb["lp_mismatch_max"] < 1e-4, (ma, mb)


def test_sft_loss_is_the_global_mean_on_any_number_of_ranks(tiny, tmp_path):
    """The logged loss is the whole batch's token-mean (each rank holds only its share: they are summed), so it
    is the one-process figure; it used to be rank 0's share alone."""
    base, data = tiny
    args = dict(algo="sft", batch_size=8, mini_batch_size=8, lr=1e-3)
    _run(_grpo_args(base, data, tmp_path / "one", **args))
    _run(_grpo_args(base, data, tmp_path / "two", **args), nproc=2)
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [m["loss"] for m in one] == pytest.approx([m["loss"] for m in two], rel=1e-4)
    assert [m["grad_norm"] for m in one] == pytest.approx([m["grad_norm"] for m in two], rel=1e-4)
    assert one[0]["loss"] > 1  # a real cross-entropy, not a near-zero figure that any reduction would match


def test_activation_checkpointing_leaves_the_update_unchanged(tiny, tmp_path):
    """Recomputing each block in backward must not change a single number."""
    base, data = tiny
    _run(_grpo_args(base, data, tmp_path / "plain"))
    _run(_grpo_args(base, data, tmp_path / "ckpt") + ["--activation-checkpointing"])
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "ckpt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert [m["reward"] for m in _metrics(tmp_path / "plain")] == [m["reward"] for m in _metrics(tmp_path / "ckpt")]
    # ...while an entropy bonus does change it (--entropy-coef reaches the loss; Tool-N1's default is 0).
    _run(_grpo_args(base, data, tmp_path / "ent") + ["--entropy-coef", "0.5"])
    c = _weights(tmp_path / "ent")
    assert any(not torch.allclose(a[k], c[k], atol=1e-6) for k in a)


@needs_cxx
def test_compiled_blocks_give_the_eager_update(tiny, tmp_path):
    """--compile (each block under torch.compile, with activation checkpointing on top) scores and updates as the
    eager blocks do: the same loss and KL, and the same weight update up to fp32 fusion noise."""
    base, data = tiny
    _run(_grpo_args(base, data, tmp_path / "eager", max_steps=1))
    _run(_grpo_args(base, data, tmp_path / "compiled", max_steps=1) + ["--compile", "--activation-checkpointing"])
    (a,), (b,) = _metrics(tmp_path / "eager"), _metrics(tmp_path / "compiled")
    for key in ("reward", "loss", "kl", "entropy"):
        assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-6), key
    start = load_file(os.path.join(base, "model.safetensors"))
    wa, wb = _weights(tmp_path / "eager"), _weights(tmp_path / "compiled")
    da = torch.cat([(wa[k] - start[k]).flatten() for k in start])
    db = torch.cat([(wb[k] - start[k]).flatten() for k in start])
    assert da.norm() > 0 and torch.nn.functional.cosine_similarity(da, db, dim=0) > 0.99


GRAPH_BREAK_PROBE = """
import sys, torch
sys.path.insert(0, "tests")
from torch._dynamo.utils import counters
from helpers import make_model
from tooln1_min import dist as tdist
tdist.init_distributed("cpu")
ref = make_model("qwen2_gqa_tied")
model = tdist.build_sharded(ref.config, torch.device("cpu"), compile=True)
tdist.load_full_state(model, ref.state_dict())
for T in (8, 14):  # 8 == head_dim first: duck shaping made that graph serve T == 8 only
    ids = torch.randint(0, 160, (3, T))
    packed = torch.cat([torch.arange(4), torch.arange(T - 4)]).expand(3, T)
    model(ids).float().pow(2).mean().backward()
    model(ids, position_ids=packed).float().pow(2).mean().backward()
    with torch.no_grad():
        model(ids[:1])
print("graph_breaks", sum(counters["graph_break"].values()), "graphs", counters["stats"]["unique_graphs"])
torch.distributed.destroy_process_group()
"""


@needs_cxx
def test_compiled_fsdp_blocks_have_no_graph_breaks():
    """Each FSDP-wrapped block compiles whole (a graph break splits it into pieces and loses the fusion), for
    masked and unmasked, grad and no-grad forwards, varying lengths, without recompiling per shape (a first length
    equal to head_dim compiled twice under torch's duck shaping: 4 graphs instead of 2)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", GRAPH_BREAK_PROBE], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    _, breaks, _, graphs = res.stdout.split()
    assert int(breaks) == 0 and int(graphs) <= 2, res.stdout


def test_filter_groups_skips_groups_without_signal(tiny, tmp_path):
    """The untrained model never earns a reward: every group is uninformative. With --filter-groups nothing is
    scored or updated (weights stay bit-identical despite weight decay); without it, weight decay moves them."""
    base, data = tiny
    _run(_grpo_args(base, data, tmp_path / "filtered", weight_decay=0.1) + ["--filter-groups"], nproc=2)
    _run(_grpo_args(base, data, tmp_path / "plain", weight_decay=0.1))
    start = load_file(os.path.join(base, "model.safetensors"))
    filtered, plain = _weights(tmp_path / "filtered"), _weights(tmp_path / "plain")
    assert all(torch.equal(filtered[k], start[k]) for k in start)
    assert any(not torch.equal(plain[k], start[k]) for k in start)
    for m in _metrics(tmp_path / "filtered"):
        assert m["reward"] == 0.0 and m["informative"] == 0.0 and m["updates"] == 0
    assert all(m["updates"] == 2 for m in _metrics(tmp_path / "plain"))


def test_filter_groups_with_mixed_groups_two_ranks_match_one(tiny, tmp_path):
    """After a short SFT some groups score mixed (format_partial reward), others do not: with --filter-groups a rank
    may have nothing left to train on while the other does; 2 FSDP ranks must still equal one process."""
    base, data = tiny
    _run(["--model", base, "--data", data, "--algo", "sft", "--batch-size", "8", "--mini-batch-size", "8",
          "--lr", "1e-2", "--max-steps", "150", "--out", str(tmp_path / "sft"), "--save-every", "1000"])
    sft = str(tmp_path / "sft" / "checkpoint" / "hf")
    kw = dict(n=4, max_new_tokens=24, max_steps=3, reward="format_partial", micro_batch_tokens=2000)
    _run(_grpo_args(sft, data, tmp_path / "one", **kw) + ["--filter-groups"])
    _run(_grpo_args(sft, data, tmp_path / "two", **kw) + ["--filter-groups"], nproc=2)
    metrics = _metrics(tmp_path / "one")
    assert any(0 < m["informative"] < 1 for m in metrics) and any(m["updates"] > 0 for m in metrics)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    start = load_file(os.path.join(sft, "model.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    for ma, mb in zip(metrics, _metrics(tmp_path / "two")):
        assert ma["informative"] == mb["informative"] and ma["updates"] == mb["updates"]


def test_log_to_tensorboard_writes_every_step(tiny, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    base, data = tiny
    _run(_grpo_args(base, data, tmp_path / "tb", max_steps=3) + ["--log-to", "tensorboard"])
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    rewards = events.Scalars("reward")
    assert [e.step for e in rewards] == [1, 2, 3]
    assert [e.value for e in rewards] == pytest.approx([m["reward"] for m in _metrics(tmp_path / "tb")])
    assert [e.step for e in events.Scalars("kl")] == [1, 2, 3]


def test_log_to_wandb_is_offline_unless_asked(tmp_path, monkeypatch):
    """W&B through a stand-in module (the package is not a dependency): offline by default, the run config
    recorded, each step logged at its step number, the run finished."""
    import types
    import train
    calls = []

    class Run:
        def log(self, metrics, step):
            calls.append((metrics, step))

        def finish(self):
            calls.append("finish")
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: calls.append(kw) or Run()))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    (write, close), = train.open_loggers(train.TrainConfig(out=str(tmp_path), log_to="wandb", lr=3e-4))
    write({"step": 3, "reward": 0.5, "kl": 0.01}, 3)
    close()
    assert calls[0]["mode"] == "offline" and calls[0]["config"]["lr"] == 3e-4 and calls[0]["dir"] == str(tmp_path)
    assert calls[1:] == [({"reward": 0.5, "kl": 0.01}, 3), "finish"]
    monkeypatch.setenv("WANDB_MODE", "online")
    train.open_loggers(train.TrainConfig(out=str(tmp_path), log_to="wandb"))
    assert calls[-1]["mode"] == "online"


def test_cpu_offload_without_a_gpu_is_a_clear_error(tiny, tmp_path):
    base, data = tiny
    res = subprocess.run([sys.executable, "train.py"] + _grpo_args(base, data, tmp_path / "x") + ["--cpu-offload"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "--cpu-offload" in res.stdout + res.stderr and "no GPU" in res.stderr


def test_resume_continues_exactly(tiny, tmp_path):
    base, data = tiny
    _run(_grpo_args(base, data, tmp_path / "full", max_steps=4))
    _run(_grpo_args(base, data, tmp_path / "split", max_steps=2))
    _run(_grpo_args(base, data, tmp_path / "split", max_steps=4) + ["--resume"])
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    ma, mb = _metrics(tmp_path / "full"), _metrics(tmp_path / "split")
    assert [m["step"] for m in mb] == [1, 2, 3, 4]
    for x, y in zip(ma, mb):
        assert x["reward"] == y["reward"] and x["loss"] == pytest.approx(y["loss"], abs=1e-6)


def test_checkpoint_loads_in_transformers_with_same_logits(tiny, tmp_path):
    transformers = pytest.importorskip("transformers")
    base, data = tiny
    _run(_grpo_args(base, data, tmp_path / "run", max_steps=1) + ["--algo", "sft"])
    hf_dir = os.path.join(tmp_path, "run", "checkpoint", "hf")
    assert os.path.isfile(os.path.join(hf_dir, "tokenizer.json"))
    ours = Transformer.from_pretrained(hf_dir)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    ids = torch.randint(0, 200, (2, 12))
    with torch.no_grad():
        assert (ours(ids) - theirs(input_ids=ids).logits).abs().max().item() <= 1e-4
    # The demo tokenizer's pieces may span words; transformers 5's AutoTokenizer swaps in Qwen2's own
    # pre-tokenizer for qwen2 folders, so the generic fast class is the faithful way to load it.
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(hf_dir, "tokenizer.json"))
    from tooln1_min.tokenizer import Tokenizer
    text = 'Weather in "Paris" on 2025-04-17? <tool_call>[]</tool_call>'
    assert tok.encode(text, add_special_tokens=False) == Tokenizer.from_pretrained(hf_dir).encode(text)


def test_demo_quick_end_to_end(tmp_path):
    out = _run(["--quick", "--out", str(tmp_path / "demo")])
    assert "after SFT" in out and "after GRPO" in out
    demo = tmp_path / "demo"
    rows = [json.loads(line) for line in open(demo / "metrics.jsonl")]
    assert rows and all(0.0 <= r["reward"] <= 1.0 for r in rows)
    assert Transformer.from_pretrained(str(demo / "final")).config.model_type == "qwen2"
    table = (demo / "results.txt").read_text()
    assert "exact-match accuracy" in table and any(f"  {c} (" in table for c in ("single", "multiple", "parallel"))
    again = _run(["--quick", "--out", str(tmp_path / "demo")])  # cached stages are reused, not redone
    assert "train / " not in again and "base: tokenizer" not in again and "SFT warm start" in again
    for stage in ("data", "base", "sft", "grpo"):
        assert f"[demo] {stage}: reused from" in again


def test_demo_code_version_follows_the_code(tmp_path):
    """The demo's stage cache is keyed on the code too: an edit to any module or to train.py gives a new version."""
    from tooln1_min import demo
    pkg = tmp_path / "tooln1_min"
    shutil.copytree(os.path.join(ROOT, "tooln1_min"), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "train.py"), tmp_path / "train.py")
    assert demo.code_version(str(pkg)) == demo.code_version()
    for f in (pkg / "synthetic.py", tmp_path / "train.py"):
        before = demo.code_version(str(pkg))
        f.write_text(f.read_text() + "\n# a fork's edit\n")
        assert demo.code_version(str(pkg)) != before


def test_demo_reward_curve_with_and_without_matplotlib(tmp_path, capsys, monkeypatch):
    from tooln1_min.demo import plot
    cfg = DemoConfig(out=str(tmp_path))
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps({"step": i + 1, "reward": 0.1 * i, "format": 1.0}) + "\n" for i in range(5))
    evals = {"before": {"accuracy": 0.2}, "after": {"accuracy": 0.4}}
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails: say so, write nothing, carry on
    plot(cfg, evals)
    assert "matplotlib not installed" in capsys.readouterr().out and not (tmp_path / "reward_curve.png").exists()
    monkeypatch.undo()
    pytest.importorskip("matplotlib")
    plot(cfg, evals)
    assert (tmp_path / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad, message", [
    (dict(model="/nonexistent"), "not a Hugging Face checkpoint"),
    (dict(batch_size=4, mini_batch_size=3), "not a multiple of mini_batch_size"),
    (dict(algo="ppo"), "--algo must be"),
    (dict(reward="nope"), "nope"),
    (dict(log_to="tensorboard,nope"), "--log-to 'nope'"),
])
def test_bad_input_fails_early(tiny, tmp_path, bad, message):
    base, data = tiny
    args = _grpo_args(base, data, tmp_path / "bad", **bad)
    res = subprocess.run([sys.executable, "train.py"] + args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and message in res.stdout + res.stderr


def test_grpo_toy_task_reward_goes_up():
    """Reward 1 when the first sampled token is even: a few GRPO updates must raise the mean reward."""
    from helpers import make_model
    torch.manual_seed(0)
    model = make_model(dict(model_type="qwen2", vocab_size=16, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                            tie_word_embeddings=False), seed=0, std=0.05)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    prompts, n, history = [[1, 2, 3], [4, 5], [6]], 8, []
    for step in range(12):
        samples = generate(model, prompts, n=n, max_new_tokens=2, temperature=1.0, seed=step)
        seqs = [(p, s) for p, group in zip(prompts, samples) for s in group]
        rewards = torch.tensor([float(s.token_ids[0] % 2 == 0) for _, s in seqs])
        history.append(rewards.mean().item())
        adv = group_advantages(rewards, n)
        ids = torch.tensor([p + s.token_ids + [0] * (3 - len(p)) for p, s in seqs])
        mask = torch.zeros(len(seqs), ids.shape[1] - 1)
        for r, (p, s) in enumerate(seqs):
            mask[r, len(p) - 1:len(p) - 1 + len(s.token_ids)] = 1
        lp = token_logprobs(model(ids)[:, :-1], ids[:, 1:])
        loss, _ = grpo_loss(lp, lp.detach(), None, adv, mask, kl_coef=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sum(history[-3:]) / 3 > sum(history[:3]) / 3 + 0.25, history


@pytest.mark.parametrize("kl_coef", [1e-2, 0.0])
def test_one_update_per_rollout_skips_the_old_logprob_pass_with_the_same_update(tiny, tmp_path, monkeypatch, kl_coef):
    """batch == mini-batch: the old log-probs are the update's own forward, detached (no scoring pass); the weights
    after two steps equal those of a run that scores the old policy in a separate pass. kl_coef 0: no reference
    model is built at all."""
    sys.path.insert(0, ROOT)
    import train as train_script
    from tooln1_min import reward
    base, data = tiny
    # Mixed rewards within groups (a random model never earns the binary one): real advantages, a real gradient.
    monkeypatch.setitem(reward.REWARDS, "binary", lambda text, answer: float(sum(map(ord, text)) % 2))
    models, scoring = [], []  # (policy, ref) of each run; the models of no-grad (scoring) forwards
    real_load, real_fwd = train_script.load_models, train_script.forward_logprobs

    def load_models(cfg, mconf, device, need_ref):
        out = real_load(cfg, mconf, device, need_ref)
        models.append(out[:2])
        return out
    monkeypatch.setattr(train_script, "load_models", load_models)
    monkeypatch.setattr(train_script, "forward_logprobs", lambda model, *a, **k:
                        (scoring.append(model) if not torch.is_grad_enabled() else None) or real_fwd(model, *a, **k))
    kw = dict(batch_size=4, mini_batch_size=4, kl_coef=kl_coef, weight_decay=0.0, n=4)
    train_script.main(_grpo_args(base, data, tmp_path / "fast", **kw))
    fast = list(scoring)
    monkeypatch.setattr(train_script, "old_policy_is_current", lambda cfg: False)
    train_script.main(_grpo_args(base, data, tmp_path / "slow", **kw))
    slow = scoring[len(fast):]
    (policy_f, ref_f), (policy_s, ref_s) = models
    assert (ref_f is None) == (ref_s is None) == (kl_coef == 0)  # no reference model without a KL term
    assert not any(m is policy_f for m in fast) and any(m is policy_s for m in slow)  # the saved pass
    assert sum(m is ref_f for m in fast) == sum(m is ref_s for m in slow) == (len(fast) if kl_coef else 0)
    a, b = _weights(tmp_path / "fast"), _weights(tmp_path / "slow")
    start = load_file(os.path.join(base, "model.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5), k
    for ma, mb in zip(_metrics(tmp_path / "fast"), _metrics(tmp_path / "slow")):
        for key in ("reward", "loss", "kl", "clip_frac", "lp_mismatch_max"):
            assert ma[key] == pytest.approx(mb[key], rel=1e-4, abs=1e-6), key
        assert ma["ratio_max"] == 1.0 and ma["informative"] > 0


def test_entry_point_demo_or_training():
    """A bare train.py or demo-only flags run the demo; anything else is training: --help lists every training flag
    (and names the demo's), a forgotten --model is a clear error, not the demo parser's 'unrecognized arguments'."""
    from tooln1_min.demo import is_demo_argv
    assert is_demo_argv([]) and is_demo_argv(["--quick", "--out", "x", "--seed=1", "--stage", "sft"])
    assert not is_demo_argv(["--help"]) and not is_demo_argv(["--data", "x.jsonl"])
    assert not is_demo_argv(["--model", "m", "--out", "x"])
    from tooln1_min.demo import demo_parser
    with pytest.raises(SystemExit):  # a bad schedule is refused before any stage runs, naming the flag
        demo_parser().parse_args(["--grpo-lr-decay", "cosin"])
    assert demo_parser().parse_args(["--grpo-lr-decay", "none"]).grpo_lr_decay == "none"
    res = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for flag in ("--model", "--data", "--kl-coef", "--n-samples", "--preset", "--pack-len", "--compile", "--quick"):
        assert flag in res.stdout, flag
    res = subprocess.run([sys.executable, "train.py", "--data", "x.jsonl"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "--model is required" in res.stderr and "unrecognized" not in res.stderr


def test_shard_granularity_rule():
    """One FSDP unit per block for real model sizes over several ranks (or offloaded); one unit for the whole model
    when blocks are tiny (the CPU demo), where per-block collectives cost more than they save, and on one rank,
    where nothing is sharded (same weights either way)."""
    from tooln1_min.dist import shard_per_block
    from tooln1_min.model import ModelConfig
    qwen05 = dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                  num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)
    demo = dict(qwen05, vocab_size=3008, hidden_size=96, intermediate_size=256, num_hidden_layers=4,
                num_attention_heads=2, num_key_value_heads=1)
    with torch.device("meta"):
        qwen, tiny = Transformer(ModelConfig.from_dict(qwen05)), Transformer(ModelConfig.from_dict(demo))
    assert shard_per_block(qwen, world_size=2) and shard_per_block(qwen, world_size=8)
    assert shard_per_block(qwen, world_size=1, cpu_offload=True)  # offloaded: one block's weights on the GPU
    assert not shard_per_block(qwen, world_size=1)
    assert not shard_per_block(tiny, world_size=2) and not shard_per_block(tiny, world_size=1, cpu_offload=True)


def test_lr_schedule_warmup_then_decay_to_zero_over_all_updates():
    """Warm-up over optimizer updates, then constant (Tool-N1) or a linear/cosine decay that reaches 0 just after
    the last update (10 updates here: 5 steps x 2, batch 8 and mini-batch 4)."""
    from train import TrainConfig, lr_lambda
    f = {d: lr_lambda(TrainConfig(batch_size=8, mini_batch_size=4, warmup_steps=2, lr_decay=d), max_steps=5)
         for d in ("none", "linear", "cosine")}
    assert [f["none"](u) for u in range(10)] == [0.5] + [1.0] * 9
    assert [f["linear"](u) for u in (0, 1, 2, 6, 9, 10)] == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.125, 0.0])
    assert [f["cosine"](u) for u in (2, 4, 6, 10, 11)] == pytest.approx([1.0, 0.8536, 0.5, 0.0, 0.0], abs=1e-4)


@pytest.mark.parametrize("n_eval", [30, 70])
def test_demo_splits_are_disjoint(tmp_path, n_eval):
    """The demo's settings are chosen on valid.jsonl; test.jsonl, the split the README reports, shares no prompt
    with it or with train.jsonl. Both have eval_records records: test is the 90/10 split's test part (40 records
    here), topped up (70) from records generated past n_records."""
    from tooln1_min.data import load_records
    cfg = DemoConfig(**{**QUICK, "n_records": 400, "eval_records": n_eval}, out=str(tmp_path))
    data = make_data(cfg, "k")
    parts = {p: load_records(os.path.join(data, f"{p}.jsonl")) for p in ("train", "valid", "test")}
    assert len(parts["valid"]) == len(parts["test"]) == n_eval and len(parts["train"]) >= 300
    keys = {p: {json.dumps([r["messages"], r["tools"]], sort_keys=True) for r in rs} for p, rs in parts.items()}
    assert not keys["train"] & keys["valid"] and not keys["train"] & keys["test"] and not keys["valid"] & keys["test"]
    # train and test's head are the plain 90/10 split of the first n_records: adding valid changed neither
    from tooln1_min.data import split_records
    from tooln1_min.synthetic import synthetic_records
    tools = [t for t in cfg.tools.split(",") if t]
    first = synthetic_records(400, seed=cfg.seed, max_tools=cfg.max_tools, p_parallel=cfg.p_parallel,
                              p_multiple=cfg.p_multiple, p_no_call=cfg.p_no_call, tools=tools)
    train, test = split_records(first, test_frac=cfg.test_frac, seed=cfg.seed)
    assert len(test) == 40 and parts["train"] == train and parts["test"][:min(n_eval, 40)] == test[:n_eval]
    # a smaller eval_records, within the split's test part (as 200 is of the demo's 240), gives a prefix of the
    # larger one's splits: the README's 200-record numbers were scored on the first 200 of today's 1,000
    if n_eval > 30:
        small = make_data(DemoConfig(**{**QUICK, "n_records": 400, "eval_records": 30}, out=str(tmp_path / "s")), "k")
        for p in ("valid", "test"):
            assert load_records(os.path.join(small, f"{p}.jsonl")) == parts[p][:30]


def test_demo_split_shortage_is_named(tmp_path):
    """One tool, one call, no distractors: a few hundred distinct prompts, too few for 500 + 500 held-out records."""
    cfg = DemoConfig(**{**QUICK, "tools": "get_weather", "max_tools": 1, "p_parallel": 0.0, "p_multiple": 0.0,
                        "p_no_call": 0.0, "eval_records": 500}, out=str(tmp_path))
    with pytest.raises(ValueError, match="eval_records=500"):
        make_data(cfg, "k")
