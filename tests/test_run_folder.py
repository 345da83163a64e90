"""The run folder never loses work: numbered checkpoints behind an atomically switched pointer, refusal to overwrite
a run, exact resume (LR schedule, metrics, settings), a NaN guard, and flags checked before any model work."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from tooln1_min import checkpoint as ckpt
from tooln1_min.demo import QUICK, DemoConfig, make_base, make_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train as train_script  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    cfg = DemoConfig(**{**QUICK, "out": str(out)})
    data = make_data(cfg, "k")
    return make_base(cfg, data, "k"), os.path.join(data, "train.jsonl")


def _args(base, data, out, *extra, **kw):
    args = dict(model=base, data=data, out=str(out), batch_size=4, mini_batch_size=2, n=2, max_new_tokens=8,
                lr=1e-3, kl_coef=1e-2, max_steps=2, temperature=1.0, micro_batch_tokens=600, save_every=100)
    args.update(kw)
    flags = [x for k, v in args.items() for x in ("--n-samples" if k == "n" else f"--{k.replace('_', '-')}", str(v))]
    return flags + list(extra)


def _train(*args):
    train_script.main(list(args))


def _steps(out):
    return [json.loads(line)["step"] for line in open(os.path.join(out, "metrics.jsonl"))]


def _weights(out):
    return load_file(os.path.join(out, "checkpoint", "hf", "model.safetensors"))


def test_rerun_without_resume_is_refused_and_the_run_kept(tiny, tmp_path):
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out))
    before = _weights(out)
    with pytest.raises(SystemExit, match="already holds a run .*step 2.*--resume.*--overwrite"):
        _train(*_args(base, data, out, max_steps=1))
    assert _steps(out) == [1, 2] and all(torch.equal(before[k], v) for k, v in _weights(out).items())
    _train(*_args(base, data, out, "--resume", "auto", max_steps=3))  # auto: continues the run
    assert _steps(out) == [1, 2, 3] and ckpt.read_state(ckpt.latest_checkpoint(out))["step"] == 3
    _train(*_args(base, data, out, "--overwrite", max_steps=1))  # deletes it and starts over
    assert _steps(out) == [1] and [s for s, _ in ckpt.step_dirs(out)] == [1]
    _train(*_args(base, data, tmp_path / "fresh", "--resume", "auto", max_steps=1))  # auto: nothing to continue
    assert _steps(tmp_path / "fresh") == [1]
    with pytest.raises(SystemExit, match="no complete checkpoint"):
        _train(*_args(base, data, tmp_path / "empty", "--resume"))


def test_numbered_checkpoints_kept_and_pruned(tiny, tmp_path):
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out, max_steps=5, save_every=1, keep_checkpoints=2, keep_every=2))
    assert [s for s, _ in ckpt.step_dirs(out)] == [2, 4, 5]  # the last 2, plus every 2nd
    assert os.path.islink(out / "checkpoint") and os.path.realpath(out / "checkpoint").endswith("step-5")
    assert not [n for n in os.listdir(out / "checkpoints") if n.startswith(".")]  # no temporary left
    from tooln1_min.model import Transformer
    Transformer.from_pretrained(str(out / "checkpoint" / "hf"))  # the pointer leads to a loadable HF folder


def test_killed_at_the_pointer_switch_resumes(tiny, tmp_path, monkeypatch):
    """A crash between writing step-N and moving the pointer: the pointer still names a complete checkpoint, the
    newer complete one is found, resume works, and the next save cleans up."""
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out, max_steps=1))
    real = os.replace

    def killed(src, dst):
        if str(dst).endswith("checkpoint"):
            raise KeyboardInterrupt("killed at the pointer switch")
        return real(src, dst)
    monkeypatch.setattr(ckpt.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(*_args(base, data, out, "--resume", max_steps=2))
    monkeypatch.setattr(ckpt.os, "replace", real)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    assert os.path.realpath(out / "checkpoint").endswith("step-1")  # the old pointer: complete
    assert ckpt.latest_checkpoint(out).endswith("step-2")  # the newer complete checkpoint is the one resumed
    _train(*_args(base, data, out, "--resume", max_steps=3))
    assert _steps(out) == [1, 2, 3] and os.path.realpath(out / "checkpoint").endswith("step-3")
    assert not [n for n in os.listdir(out) if n.startswith(".checkpoint")]


def test_nan_steps_stop_before_saving_over_good_weights(tiny, tmp_path, monkeypatch):
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out, max_steps=2))
    good = _weights(out)
    real = train_script.grpo_loss
    monkeypatch.setattr(train_script, "grpo_loss",
                        lambda *a, **k: (lambda r: (r[0] * float("nan"), r[1]))(real(*a, **k)))
    with pytest.raises(SystemExit, match="3 steps in a row with a non-finite .*step-2"):
        _train(*_args(base, data, out, "--resume", max_steps=10, save_every=1))
    assert ckpt.read_state(ckpt.latest_checkpoint(out))["step"] == 2
    assert all(torch.equal(good[k], v) for k, v in _weights(out).items())
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [m["skipped_updates"] for m in metrics[2:]] == [2, 2, 2]  # both updates of each step skipped


def _nan_at(monkeypatch, steps):
    """Make every update of the given (1-based) steps non-finite."""
    real_step, real_loss, now = train_script.grpo_step, train_script.grpo_loss, {}

    def step_fn(cfg, step, *a, **k):
        now["bad"] = step + 1 in steps
        return real_step(cfg, step, *a, **k)
    monkeypatch.setattr(train_script, "grpo_step", step_fn)
    def loss_fn(*a, **k):
        loss, rest = real_loss(*a, **k)
        return (loss * float("nan") if now["bad"] else loss), rest
    monkeypatch.setattr(train_script, "grpo_loss", loss_fn)


def test_a_save_a_skipped_step_passed_on_happens_at_the_next_good_step(tiny, tmp_path, monkeypatch):
    """A due save is not made from a skipped step, but it stays due (it was dropped: up to save_every steps lost);
    the last step saves even when its update was skipped (a finished run ended with no final checkpoint)."""
    base, data = tiny
    _nan_at(monkeypatch, {2})
    _train(*_args(base, data, tmp_path / "mid", max_steps=4, save_every=2, keep_checkpoints=5))
    assert [s for s, _ in ckpt.step_dirs(tmp_path / "mid")] == [3, 4]
    _nan_at(monkeypatch, {3})
    _train(*_args(base, data, tmp_path / "last", max_steps=3))
    assert ckpt.read_state(ckpt.latest_checkpoint(tmp_path / "last"))["step"] == 3
    metrics = [json.loads(line) for line in open(tmp_path / "last" / "metrics.jsonl")]
    assert metrics[-1]["skipped_updates"] > 0


def test_allowed_config_change_takes_effect(tiny, tmp_path):
    """--allow-config-change with a new --lr / --weight-decay resumes with them (the optimizer's and schedule's
    saved values won: "lower the lr and resume" kept the old one while config_changes.jsonl said otherwise)."""
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out, max_steps=1, lr=1e-3))
    _train(*_args(base, data, out, "--resume", "--allow-config-change", max_steps=2, lr=1e-5))
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert metrics[0]["lr"] == pytest.approx(1e-3) and metrics[1]["lr"] == pytest.approx(1e-5)
    changes = [json.loads(line) for line in open(out / "config_changes.jsonl")]
    assert changes[0]["changed"]["lr"] == {"was": 1e-3, "now": 1e-5}


def test_overwrite_refuses_to_delete_the_model_it_trains_from(tiny, tmp_path):
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out, max_steps=1))
    with pytest.raises(SystemExit, match="starting over in .* would delete --model .*checkpoint"):
        _train(*_args(str(out / "checkpoint" / "hf"), data, out, "--overwrite", max_steps=1))
    assert _steps(out) == [1] and os.path.isfile(out / "checkpoint" / "hf" / "config.json")


def test_checkpoints_keep_the_tokenizer_the_run_started_with(tiny, tmp_path, monkeypatch):
    """A --model folder emptied once the run has loaded its tokenizer (a cleanup, a moved download) still leaves
    every checkpoint a loadable HF folder with the tokenizer the run trained with (they were copied at save time,
    and silently skipped when gone)."""
    import shutil
    from tooln1_min.tokenizer import Tokenizer
    base, data = tiny
    model = tmp_path / "model"
    shutil.copytree(base, model)
    load = Tokenizer.from_pretrained

    def load_then_delete(path):
        tok = load(path)
        for name in ckpt.TOKENIZER_FILES:
            if os.path.exists(os.path.join(path, name)):
                os.remove(os.path.join(path, name))
        return tok
    monkeypatch.setattr(train_script.Tokenizer, "from_pretrained", load_then_delete)
    _train(*_args(str(model), data, tmp_path / "run", max_steps=1))
    hf = tmp_path / "run" / "checkpoint" / "hf"
    assert not os.path.exists(model / "tokenizer.json")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (hf / name).read_bytes() == open(os.path.join(base, name), "rb").read()
    assert load(str(hf)).vocab_size == load(base).vocab_size


def test_a_torn_last_metrics_line_does_not_block_resume(tiny, tmp_path):
    """A crash while a metrics line was written leaves it cut short: resume drops it; a bad line before the last is
    an error naming the file and line."""
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out, max_steps=1))
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "epoch": 0, "rew')
    _train(*_args(base, data, out, "--resume", max_steps=2))
    assert _steps(out) == [1, 2]
    lines = open(out / "metrics.jsonl").read().splitlines()
    open(out / "metrics.jsonl", "w").write("\n".join([lines[0], "{oops", lines[1]]) + "\n")
    with pytest.raises(SystemExit, match=r"metrics.jsonl:2: not a JSON line"):
        _train(*_args(base, data, out, "--resume", max_steps=3))


def test_leftovers_of_a_crashed_save_are_cleaned_by_the_next(tiny, tmp_path):
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out, max_steps=1))
    os.makedirs(out / "checkpoints" / ".step-7.tmp" / "hf")  # a save of step 7 killed midway (save_every changed)
    os.symlink("checkpoints/step-1", out / ".checkpoint.99999.link")  # a pointer switch killed midway
    _train(*_args(base, data, out, "--resume", max_steps=2))
    assert not [n for n in os.listdir(out / "checkpoints") if n.startswith(".")]
    assert not [n for n in os.listdir(out) if n.startswith(".checkpoint")]


def test_nan_weights_are_never_saved(tiny, tmp_path):
    base, data = tiny
    bad = tmp_path / "bad"
    os.makedirs(bad)
    for f in os.listdir(base):
        if f != "model.safetensors":
            os.symlink(os.path.join(base, f), bad / f)
    weights = load_file(os.path.join(base, "model.safetensors"))
    weights = {k: v.fill_(float("nan")) if "norm" in k else v for k, v in weights.items()}
    save_file(weights, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SystemExit, match="non-finite|NaN"):
        _train(*_args(str(bad), data, tmp_path / "run", max_steps=4, save_every=1))
    assert ckpt.latest_checkpoint(tmp_path / "run") is None


def _run(args, nproc):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "train.py"]
    res = subprocess.run(cmd + args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_resume_is_exact_with_warmup_two_updates_per_step_and_two_ranks(tiny, tmp_path):
    """The LR schedule steps per optimizer update (2 per step here): resume restores it (it used to restart it
    from the step count, off by the factor batch / mini-batch)."""
    base, data = tiny
    kw = dict(warmup_steps=8, lr=1e-2, max_steps=4)
    _run(_args(base, data, tmp_path / "full", **kw), 2)
    _run(_args(base, data, tmp_path / "split", **{**kw, "max_steps": 2}), 2)
    _run(_args(base, data, tmp_path / "split", "--resume", **kw), 2)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    lr = [[json.loads(line)["lr"] for line in open(tmp_path / r / "metrics.jsonl")] for r in ("full", "split")]
    assert lr[0] == lr[1] == pytest.approx([1e-2 * 3 / 8, 1e-2 * 5 / 8, 1e-2 * 7 / 8, 1e-2])  # 2 updates a step


def test_resume_is_exact_when_the_updates_move_the_weights(tiny, tmp_path, monkeypatch):
    """A reward that pays (a hash of the completion: the untrained model never earns the real one), so gradients,
    AdamW's moments and the schedule all carry state across the resume: bit-identical weights and metrics."""
    import zlib

    from tooln1_min import reward
    monkeypatch.setitem(reward.REWARDS, "binary", lambda completion, answer: float(zlib.crc32(completion.encode()) % 2))
    base, data = tiny
    kw = dict(lr=1e-2, warmup_steps=3, lr_decay="cosine", n=4, max_steps=4, save_every=2)
    _train(*_args(base, data, tmp_path / "full", **kw))
    _train(*_args(base, data, tmp_path / "split", **{**kw, "max_steps": 2}))
    _train(*_args(base, data, tmp_path / "split", "--resume", **kw))
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = ([json.loads(line) for line in open(tmp_path / r / "metrics.jsonl")] for r in ("full", "split"))
    keys = ("reward", "loss", "kl", "grad_norm")
    assert [[m[k] for k in keys] for m in ma] == [[m[k] for k in keys] for m in mb]
    assert [m["lr"] for m in ma[2:]] == [m["lr"] for m in mb[2:]]  # (step 2 logs the next lr of a 2-step run)
    assert all(m["grad_norm"] > 0 for m in ma[2:]) and len({m["reward"] for m in ma}) > 1


def test_clip_eps_high_and_loss_agg_reach_the_loss(tiny, tmp_path, monkeypatch):
    """--clip-eps-high and --loss-agg (with its max_len) reach grpo_loss: dropping any of them on the way survived
    every other test. A paying hash reward. Clipping: the ratio moves in a step's second update, where a tiny
    --clip-eps clips it. Aggregation: one update per step (its loss is taken before any change) and completions of
    varied length (a seventh of the ids stop), so Dr. GRPO's loss, sum / (sequences x max_new_tokens), is the
    token-mean's times mean length / max_new_tokens."""
    import zlib

    from tooln1_min import reward
    from tooln1_min.tokenizer import Tokenizer
    monkeypatch.setitem(reward.REWARDS, "binary", lambda completion, answer: float(zlib.crc32(completion.encode()) % 2))
    base, data = tiny
    clip = {"tight": ["--clip-eps", "0.001"], "high": ["--clip-eps", "0.001", "--clip-eps-high", "0.5"]}
    for name, flags in clip.items():
        _train(*_args(base, data, tmp_path / name, *flags, lr=1e-2, n=4, max_steps=1))
    assert json.loads(open(tmp_path / "tight" / "metrics.jsonl").readline())["clip_frac"] > 0
    tight, high = _weights(tmp_path / "tight"), _weights(tmp_path / "high")
    assert any(not torch.equal(tight[k], high[k]) for k in tight)
    monkeypatch.setattr(Tokenizer, "stop_token_ids", property(lambda self: list(range(0, 800, 7))))
    for name, agg in (("plain", "token-mean"), ("norm", "seq-mean-token-sum-norm")):
        _train(*_args(base, data, tmp_path / name, "--loss-agg", agg, n=4, mini_batch_size=4, max_steps=1))
    plain, norm = (json.loads(open(tmp_path / r / "metrics.jsonl").readline()) for r in ("plain", "norm"))
    assert 1 < plain["resp_len"] < 8 and plain["loss"] != 0
    assert norm["loss"] == pytest.approx(plain["loss"] * plain["resp_len"] / 8, rel=1e-4)


def test_resume_refuses_changed_settings_unless_allowed(tiny, tmp_path):
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out))
    with pytest.raises(SystemExit, match="n 2 -> 4.*batch_size 4 -> 8|batch_size 4 -> 8.*n 2 -> 4"):
        _train(*_args(base, data, out, "--resume", max_steps=3, n=4, batch_size=8, mini_batch_size=4))
    _train(*_args(base, data, out, "--resume", max_steps=3, log_every=5))  # logging and length may change
    _train(*_args(base, data, out, "--resume", "--allow-config-change", max_steps=4, n=4))
    changes = [json.loads(line) for line in open(out / "config_changes.jsonl")]
    assert changes == [{"step": 3, "changed": {"n": {"was": 2, "now": 4}}}]
    assert json.load(open(out / "train_config.json"))["n"] == 4


def test_metrics_describe_one_trajectory_after_resume(tiny, tmp_path):
    """Steps logged after the checkpoint a run resumes from are re-run: their old lines go."""
    base, data = tiny
    out = tmp_path / "run"
    _train(*_args(base, data, out, max_steps=3, save_every=2))
    step2 = out / "checkpoints" / "step-2"
    os.remove(out / "checkpoint")
    os.symlink(os.path.relpath(step2, out), out / "checkpoint")
    import shutil
    shutil.rmtree(out / "checkpoints" / "step-3")  # as if killed after logging step 3, before saving it
    _train(*_args(base, data, out, "--resume", max_steps=4, save_every=2))
    assert _steps(out) == [1, 2, 3, 4]


@pytest.mark.parametrize("flags, message", [
    (dict(save_every=0), "--save-every must be >= 1"),
    (dict(log_every=0), "--log-every must be >= 1"),
    (dict(batch_size=0), "--batch-size must be >= 1"),
    (dict(mini_batch_size=0), "--mini-batch-size must be >= 1"),
    (dict(n=0), "--n-samples must be >= 1"),
    (dict(temperature=0.0), "needs a temperature > 0"),
    (dict(keep_checkpoints=0), "--keep-checkpoints must be >= 1"),
    (dict(eval_data="/nonexistent.jsonl"), "--eval-data"),
    (dict(loss_agg="token_mean"), "--loss-agg must be one of token-mean"),  # else refused after the first rollout
    (dict(clip_eps=1.5), "--clip-eps must be in"),
    (dict(clip_eps_high=-0.1), "--clip-eps-high in"),
    (dict(grad_clip=0.0), "--grad-clip must be > 0"),  # 0 would scale every gradient to 0: no update, no error
    (dict(epochs=0, max_steps=0), "--epochs must be >= 1"),  # else 0 steps, silently
    (dict(rollout_batch_size=1), "--rollout-batch-size 1 is smaller than --n-samples 2"),
])
def test_bad_flags_fail_before_any_model_work(tiny, tmp_path, monkeypatch, flags, message):
    base, data = tiny
    monkeypatch.setattr(train_script, "load_models", lambda *a: pytest.fail("a model was loaded"))
    monkeypatch.setattr(train_script, "load_records", lambda *a: pytest.fail("data was read"))
    with pytest.raises(SystemExit, match=message):
        _train(*_args(base, data, tmp_path / "run", **flags))
    assert not os.path.exists(tmp_path / "run")


def test_the_lr_schedule_moves_on_when_every_group_is_filtered(tiny, tmp_path):
    """A mini-batch whose groups all scored alike has nothing to learn (no optimizer step), yet the schedule takes
    its step: a decay ends at 0 after the planned updates instead of stretching past the run."""
    base, data = tiny
    out = tmp_path / "run"
    # 8 new tokens can't hold the reply format: every sample scores 0, every group is filtered
    _train(*_args(base, data, out, "--filter-groups", lr_decay="linear", max_steps=2))
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["informative"] for r in rows] == [0, 0] and [r["updates"] for r in rows] == [0, 0]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * 2 / 4, 0.0])  # 2 updates a step, 4 planned


def test_a_moved_run_folder_resumes(tiny, tmp_path):
    """The folder is the run: its path is not a setting that has to match when it is moved."""
    base, data = tiny
    _train(*_args(base, data, tmp_path / "run", max_steps=1))
    os.rename(tmp_path / "run", tmp_path / "moved")
    _train(*_args(base, data, tmp_path / "moved", "--resume", max_steps=2))
    assert _steps(tmp_path / "moved") == [1, 2]


def test_out_is_a_file_and_vocab_mismatch_are_named(tiny, tmp_path, monkeypatch):
    base, data = tiny
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(train_script, "load_models", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit, match="a file, not a folder"):
        _train(*_args(base, data, tmp_path / "file"))
    small = tmp_path / "small"
    os.makedirs(small)
    for f in os.listdir(base):
        if f != "config.json":
            os.symlink(os.path.join(base, f), small / f)
    config = json.load(open(os.path.join(base, "config.json")))
    json.dump(dict(config, vocab_size=100), open(small / "config.json", "w"))
    with pytest.raises(SystemExit, match=r"vocab_size 100 is smaller than its tokenizer's \d+ ids"):
        _train(*_args(str(small), data, tmp_path / "run"))
