"""The GPU proof's CPU rehearsal: bench/gpu_all.sh --smoke runs every job's code path at toy sizes, so the script
can't rot between the rare GPU runs."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_gpu_all_smoke_runs_every_section_on_cpu(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "out"
    res = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_all.sh"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHON=sys.executable))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    recs = [json.loads(line) for line in open(out / "results.jsonl")]
    assert all({"section", "name", "status"} <= set(r) for r in recs)
    failed = [r for r in recs if r["status"] == "failed"]
    assert not failed, failed
    ok = {r["section"] for r in recs if r["status"] == "ok"}
    assert ok == {"environment", "correctness", "sampler", "update", "grpo"}, ok
    names = {r["name"] for r in recs}
    assert {"sampler tiny x8", "sampler tiny x4", "update tiny", "grpo step 1 tiny"} <= names, names
    sampler = next(r for r in recs if r["name"] == "sampler tiny x8")
    assert sampler["tok_per_s"] > 0 and sampler["hf_tok_per_s"] > 0  # ours and transformers', same run
    assert sorted(os.listdir(out)) == ["gpu_all.log", "results.jsonl", "summary.md"]  # <= 8 files come back
    assert "| sampler | sampler tiny x8 | ok |" in (out / "summary.md").read_text()


def test_gpu_all_records_a_failing_job_and_goes_on(tmp_path, monkeypatch):
    import gpu_all
    fail = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    good = [sys.executable, "-c", "import sys; sys.path.insert(0, 'bench'); from results import emit; emit('x', v=1)"]
    monkeypatch.setattr(gpu_all, "jobs", lambda smoke, tok: [
        ("a", "fails", 1, 30, fail), ("b", "hangs", 1, 2, hang), ("c", "works", 1, 30, good),
        ("d", "too big", 10**6, 10**6, good), ("e", "no cpu path", 0, 0, "not rehearsed")])
    gpu_all.main(["--smoke", "--out", str(tmp_path), "--budget", "100"])
    recs = {r["name"]: r for r in map(json.loads, open(tmp_path / "results.jsonl"))}
    assert recs["fails"]["status"] == "failed" and "exit code 3" in recs["fails"]["reason"]
    assert "boom" in "\n".join(recs["fails"]["tail"])
    assert recs["hangs"]["status"] == "failed" and "timed out" in recs["hangs"]["reason"]
    assert recs["x"]["status"] == "ok" and recs["x"]["section"] == "c" and recs["x"]["v"] == 1
    assert recs["too big"]["status"] == "skipped" and "budget" in recs["too big"]["reason"]
    assert recs["no cpu path"]["status"] == "skipped"
    assert "1 ok, 2 failed, 2 skipped" in (tmp_path / "summary.md").read_text()
