"""Every GPU figure the project reports, from one command with a wall-time budget (bench/gpu_all.sh calls this).

    bash bench/gpu_all.sh --out DIR                 # on a CUDA machine: <= 8 minutes on an H100
    bash bench/gpu_all.sh --smoke --out DIR         # the same code paths on CPU at toy sizes (a test runs this)

Jobs run one at a time, each in its own process (a hang or a CUDA crash costs that job only) with its own time
limit, in priority order: environment, correctness, sampler, the 1.5B update, grpo, the update's variants, the
slower correctness checks, then the GRPO step with --compile.
A job whose estimate no longer fits in what is left of --budget is skipped with a line saying so. Each figure is
appended to DIR/results.jsonl the moment it exists ({"section", "name", "status": ok|failed|skipped, ...}), every
job's output goes to DIR/gpu_all.log, and DIR/summary.md holds the final table next to the reference figures.
"""
import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable

# Peers measured on an H100 with transformers 5.17, random weights at Qwen2.5 shapes, bf16, T=0.7, prefill included.
REFERENCE = {
    "sampler 0.5b x320": ("HF generate 4,939 tok/s", "tok/s >= 20x HF (same run)"),
    "sampler 0.5b x64": ("HF generate 1,070 tok/s", ""),
    "sampler 7b x64": ("HF generate 910 tok/s", "decode step within 2x of the HBM roofline"),
    "update 1.5b": ("HF fwd+bwd+AdamW 25% MFU", ">= 40% MFU"),
    "update 1.5b compiled": ("HF fwd+bwd+AdamW 25% MFU", ">= 40% MFU"),
    "grpo step": ("TRL 1.16 GRPOTrainer 13.5 s", "<= 1.35 s (10x TRL)"),
}


def jobs(smoke: bool, tokenizer: str):
    """(section, name, estimate s, limit s, argv or the reason it is skipped). Estimates: wall seconds measured on
    an H200 on 2026-11-27, third run, when the sampler still compiled its whole decode step (70-90 s per process in
    the sampler, grpo and GPU-test jobs; one block and the sampling are compiled now, seconds on CPU)."""
    b = os.path.join(ROOT, "bench")
    tok = ["--tokenizer", tokenizer] if tokenizer else []
    test_gpu = [PY, "-m", "pytest", os.path.join(ROOT, "tests", "test_gpu.py"), "-rA", "-q", "-p", "no:cacheprovider"]
    if smoke:  # every script and flag path the GPU run takes, on CPU at toy sizes
        return [
            ("environment", "versions, device, copy bandwidth", 5, 60, [PY, f"{b}/env_info.py"]),
            ("correctness", "parity tiny", 10, 90, [PY, f"{b}/parity.py", "--size", "tiny", "--device", "cpu"]),
            ("correctness", "tests/test_gpu.py", 10, 90, test_gpu + ["-k", "not (train_py and compile)"]),
            ("sampler", "sampler tiny", 10, 90, [PY, f"{b}/bench_sampler.py", "--size", "tiny", "--prompts", "4",
                                                 "--n", "2", "1", "--prompt-len", "16", "--new", "8", "--hf",
                                                 "--profile"]),
            ("update", "update tiny", 10, 90, [PY, f"{b}/bench_train.py", "update", "--size", "tiny", "--batch", "2",
                                               "--seq", "64", "--iters", "2", "--profile"]),
            ("update", "update tiny per-block", 10, 90, [PY, f"{b}/bench_train.py", "update", "--size", "tiny",
                                                         "--batch", "2", "--seq", "64", "--iters", "2", "--per-block"]),
            ("update", "update tiny packed", 10, 90, [PY, f"{b}/bench_train.py", "update", "--size", "tiny",
                                                      "--batch", "2", "--seq", "96", "--packed", "5", "--profile"]),
            ("update", "update tiny compiled", 0, 0, "not rehearsed on CPU (minutes of C++ compilation)"),
            ("grpo", "grpo tiny", 20, 120, [PY, f"{b}/bench_train.py", "grpo", "--size", "tiny", "--prompts", "2",
                                            "--n", "2", "--new", "8", "--steps", "1", *tok]),
            ("correctness", "tests/test_gpu.py --compile", 5, 60, test_gpu + ["-k", "train_py and compile"]),
            ("grpo", "grpo tiny compiled", 0, 0, "not rehearsed on CPU (minutes of C++ compilation)"),
        ]
    return [
        ("environment", "versions, device, copy bandwidth", 10, 60, [PY, f"{b}/env_info.py"]),
        ("correctness", "parity 0.5b", 25, 120, [PY, f"{b}/parity.py", "--size", "0.5b"]),
        ("correctness", "tests/test_gpu.py", 80, 200, test_gpu + ["-k", "not parity and not (train_py and compile)"]),
        ("sampler", "sampler 0.5b", 125, 240, [PY, f"{b}/bench_sampler.py", "--size", "0.5b", "--prompts", "64",
                                               "--n", "5", "1", "--prompt-len", "256", "--new", "256", "--hf",
                                               "--profile"]),
        ("sampler", "sampler 7b", 105, 180, [PY, f"{b}/bench_sampler.py", "--size", "7b", "--prompts", "64",
                                            "--n", "1", "--prompt-len", "256", "--new", "128", "--hf"]),
        ("update", "update 1.5b", 20, 120, [PY, f"{b}/bench_train.py", "update", "--size", "1.5b", "--batch", "4",
                                            "--seq", "1024", "--profile"]),
        ("grpo", "grpo 0.5b", 100, 240, [PY, f"{b}/bench_train.py", "grpo", "--size", "0.5b", "--prompts", "8",
                                        "--n", "5", "--new", "256", "--steps", "3", *tok]),
        ("update", "update 1.5b per-block", 20, 120, [PY, f"{b}/bench_train.py", "update", "--size", "1.5b",
                                                      "--batch", "4", "--seq", "1024", "--per-block"]),
        ("update", "update 0.5b packed", 25, 120, [PY, f"{b}/bench_train.py", "update", "--size", "0.5b",
                                                   "--batch", "8", "--seq", "1536", "--packed", "5", "--profile"]),
        ("update", "update 1.5b compiled", 40, 180, [PY, f"{b}/bench_train.py", "update", "--size", "1.5b",
                                                     "--batch", "4", "--seq", "1024", "--compile"]),
        ("correctness", "tests/test_gpu.py --compile", 55, 200, test_gpu + ["-k", "train_py and compile"]),
        ("correctness", "parity 7b (4 layers)", 40, 150, [PY, f"{b}/parity.py", "--size", "7b", "--layers", "4"]),
        # The GRPO step with train.py --compile (the update and the reference pass compiled): last, it is the
        # costliest to start (compilation) and the eager step above already answers the target's question.
        ("grpo", "grpo 0.5b compiled", 130, 240, [PY, f"{b}/bench_train.py", "grpo", "--size", "0.5b", "--prompts",
                                                  "8", "--n", "5", "--new", "256", "--steps", "3", *tok,
                                                  "--train-args", "--compile"]),
    ]


class Run:
    def __init__(self, out: str, budget: float):
        os.makedirs(out, exist_ok=True)
        self.out, self.budget, self.t0 = out, budget, time.time()
        self.results = os.path.join(out, "results.jsonl")
        self.log = open(os.path.join(out, "gpu_all.log"), "a", buffering=1)

    def left(self) -> float:
        return self.budget - (time.time() - self.t0)

    def say(self, msg: str):
        line = f"[gpu_all {time.time() - self.t0:5.0f}s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def record(self, section, name, status, **fields):
        rec = {"section": section, "name": name, "status": status, **fields,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with open(self.results, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.say(f"{section} / {name}: {status}" + (f" ({fields.get('reason', '')})" if status != "ok" else ""))

    def n_records(self) -> int:
        return sum(1 for _ in open(self.results)) if os.path.exists(self.results) else 0

    def job(self, section, name, est, limit, argv):
        if isinstance(argv, str):
            return self.record(section, name, "skipped", reason=argv)
        if self.left() < est:
            return self.record(section, name, "skipped",
                               reason=f"budget: {self.left():.0f} s left, the job needs about {est} s")
        limit = max(1, min(limit, self.left()))
        self.say(f"{section} / {name}: start (limit {limit:.0f} s): {shlex.join(argv)}")
        env = dict(os.environ, PYTHONUNBUFFERED="1", GPU_ALL_RESULTS=os.path.abspath(self.results),
                   GPU_ALL_SECTION=section)
        before, t = self.n_records(), time.time()
        self.log.write(f"----- {section} / {name}\n")
        self.log.flush()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            rc = None
        finally:  # a timeout, or the driver itself stopped (Ctrl-C, SIGTERM): the job's whole group goes too
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        secs = round(time.time() - t, 1)
        self.log.flush()
        tail = _tail(os.path.join(self.out, "gpu_all.log"), 25)
        if name.startswith("tests/"):
            self._pytest_records(section, tail, before)
        if rc is None:
            self.record(section, name, "failed", reason=f"timed out after {secs} s", seconds=secs, tail=tail[-8:])
        elif rc != 0:
            self.record(section, name, "failed", reason=f"exit code {rc}", seconds=secs, tail=tail[-15:])
        elif self.n_records() == before:
            self.record(section, name, "failed", reason="exited 0 but reported no figure", seconds=secs)
        else:
            self.say(f"{section} / {name}: done in {secs} s")
        if rc != 0:
            print("\n".join(tail[-15:]), flush=True)

    def _pytest_records(self, section, tail, before):
        """One record per test from pytest's -rA short summary (PASSED / FAILED / SKIPPED / ERROR lines)."""
        if self.n_records() != before:
            return
        for line in tail:
            word, _, rest = line.partition(" ")
            rest = rest.split("] ", 1)[-1] if rest.startswith("[") else rest  # SKIPPED [1] file:line: reason
            if word in ("PASSED", "FAILED", "ERROR"):
                self.record(section, rest.split(" - ")[0], "ok" if word == "PASSED" else "failed",
                            reason=rest.partition(" - ")[2][:300])
            elif word == "SKIPPED":
                self.record(section, rest.split(": ", 1)[0], "skipped", reason=rest.split(": ", 1)[-1][:200])


def _tail(path, n):
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("----- ")), default=0)
    return lines[max(start, len(lines) - n):]


def summary(results_path: str, since: str = "") -> str:
    """A markdown table of the figures in results.jsonl (those recorded at or after `since`, an ISO time: this
    run's, when the folder holds earlier runs too), next to the peers' figures and the targets."""
    recs = [json.loads(line) for line in open(results_path)] if os.path.exists(results_path) else []
    recs = [r for r in recs if r.get("time", "") >= since]
    env = next((r for r in recs if r["name"] == "environment"), {})
    rows = ["| section | figure | status | ours | reference (H100) | target |", "|---|---|---|---|---|---|"]
    for r in recs:
        name, ours = r["name"], _figure(r)
        key = "grpo step" if name.startswith("grpo step") else name
        ref, target = REFERENCE.get(key, ("", ""))
        rows.append(f"| {r['section']} | {name} | {r['status']} | {ours} | {ref} | {target} |")
    head = (f"GPU: {env.get('gpu')}, torch {env.get('torch')}, CUDA {env.get('cuda')}, "
            f"transformers {env.get('transformers')}, triton {env.get('triton')}")
    n = {s: sum(r["status"] == s for r in recs) for s in ("ok", "failed", "skipped")}
    return f"{head}\n\n" + "\n".join(rows) + f"\n\n{n['ok']} ok, {n['failed']} failed, {n['skipped']} skipped\n"


def _figure(r) -> str:
    if r["status"] != "ok":
        return r.get("reason", "")[:120].replace("|", "/")
    n = r["name"]
    if n.startswith("sampler") and "tok_per_s" in r:
        s = f"{r['tok_per_s']:,} tok/s, {r['ms_per_step']} ms/step, graphs {r['graphs_captured']}/{r['graphs_replayed']}"
        if "decode_ms" in r:
            s += f" (a decode step {r['decode_ms']} ms after a {r['prefill_ms']:.0f} ms prefill" + \
                (f" and {r['capture_ms']:.0f} ms of graph captures)" if r.get("capture_ms") else ")")
        if "roofline_frac" in r:
            s += f", {r['roofline_frac']:.0%} of roofline ({r['roofline_ms']} ms)"
        if "decode_vs_roofline" in r:
            s += f", decode step {r['decode_vs_roofline']}x roofline"
        if "hf_tok_per_s" in r:
            s += f"; HF {r['hf_tok_per_s']:,} tok/s here -> **{r['speedup_vs_hf']}x**"
        return s
    if n.endswith(" profile") or n.startswith("sampler profile"):
        busy = f"kernels busy {r['total_ms']} of {r['wall_ms']} ms; " if "wall_ms" in r else ""
        return busy + "; ".join(f"{t['share']:.0%} {t['name'][:40]}" for t in r["top"][:4]).replace("|", "/")
    if n.endswith(" phases"):
        host = lambda k: f" (host {r[k + '_host_ms']})" if k + "_host_ms" in r else ""  # noqa: E731
        return ", ".join(f"{k[:-3]} {v} ms{host(k[:-3])}" for k, v in r.items()
                         if k.endswith("_ms") and not k.endswith("_host_ms"))
    if n.startswith("update"):
        return f"{r['ms_per_step']} ms/step, {r['tflops']} TFLOP/s" + (f", **MFU {r['mfu']:.1%}**" if r["mfu"] else "")
    if n.startswith("grpo"):
        return (f"{r['seconds']} s = rollout {r['t_rollout']} + logprobs {r['t_logprobs']} + update {r['t_update']}"
                + ("" if r["warm"] else " (includes compilation)"))
    if n.startswith("parity"):
        return (f"fp32 {r['fp32_ours_vs_hf']:.1e}; bf16 vs fp32: ours {r['bf16_ours_vs_fp32']:.1e}, "
                f"HF {r['bf16_hf_vs_fp32']:.1e}")
    if n == "environment":
        return f"{r.get('gpu')} {r.get('gpu_mem_gib', '')} GiB"
    if n == "copy bandwidth":
        return f"{r['tb_per_s']} TB/s"
    return ""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for results.jsonl, gpu_all.log, summary.md")
    p.add_argument("--smoke", action="store_true", help="CPU rehearsal at toy sizes")
    p.add_argument("--budget", type=float, default=None, help="wall seconds in all (default 480; smoke 150)")
    p.add_argument("--only", default="", help="comma-separated sections or job names to run (default: all); e.g. "
                   "a second call for what the first one's budget skipped: --only 'parity 7b (4 layers),grpo 0.5b "
                   "compiled'")
    p.add_argument("--tokenizer", default=os.environ.get("TOKENIZER", ""),
                   help="a Qwen2.5 tokenizer folder for the GRPO step (default $TOKENIZER; else one is trained)")
    args = p.parse_args(argv)
    import torch  # noqa: F401 (fail here, clearly, when torch is missing)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --smoke for the CPU rehearsal")
    run = Run(args.out, args.budget or (150 if args.smoke else 480))
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # an outer timeout: finally-clauses stop the job
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    run.say(f"{'smoke (CPU) ' if args.smoke else ''}run, budget {run.budget:.0f} s, out {args.out}")
    try:
        for section, name, est, limit, cmd in jobs(args.smoke, args.tokenizer):
            if only and section not in only and name not in only:
                continue
            try:
                run.job(section, name, est, limit, cmd)
            except Exception as e:  # noqa: BLE001 (the driver itself must go on to the next job)
                run.record(section, name, "failed", reason=f"driver: {type(e).__name__}: {e}")
    finally:  # an outer timeout (SIGTERM -> SystemExit) still leaves the table of what finished
        table = summary(run.results, since=started)
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(table)
        run.say(f"done in {time.time() - run.t0:.0f} s\n\n" + table)


if __name__ == "__main__":
    main()
