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


def test_gpu_all_only_takes_sections_and_job_names(tmp_path, monkeypatch):
    """A second call on the same machine runs just what the first one's budget skipped, named job by job."""
    import gpu_all
    ran = []
    monkeypatch.setattr(gpu_all.Run, "job", lambda self, section, name, *a: ran.append(name))
    monkeypatch.setattr(gpu_all, "jobs", lambda smoke, tok: [
        ("a", "a1", 1, 30, []), ("a", "a2", 1, 30, []), ("b", "b1", 1, 30, []), ("c", "c1", 1, 30, [])])
    gpu_all.main(["--smoke", "--out", str(tmp_path), "--only", "b, a2"])
    assert ran == ["a2", "b1"]


def test_profile_splits_time_by_kind_and_skips_annotations(tmp_path, monkeypatch):
    """A profile record says where the time went by kind (matmul vs the tail of small kernels), and a
    record_function range (as Optimizer.step's) is not counted on top of the operators it encloses."""
    import torch
    import results
    monkeypatch.setenv("GPU_ALL_RESULTS", str(tmp_path / "r.jsonl"))
    a = torch.randn(256, 256)

    def fn():
        with torch.profiler.record_function("Optimizer.step#Fake.step"):
            for _ in range(20):
                a @ a
            torch.cat([a, a]).add_(1)
    rec = results.profile(fn, torch.device("cpu"), "toy profile")
    assert not any("#" in r["name"] for r in rec["top"])
    assert sum(rec["kinds_ms"].values()) == pytest.approx(rec["total_ms"], rel=1e-3, abs=0.01)
    assert max(rec["kinds_ms"], key=rec["kinds_ms"].get) == "matmul"
    assert results.kernel_kind("nvjet_sm90_tst_192x192_64x4") == "matmul"
    assert results.kernel_kind("void at::native::multi_tensor_apply_kernel<...>") == "optimizer"
    assert results.kernel_kind("triton_poi_fused_cat_1") == "compiled (fused)"
    assert results.kernel_kind("Memcpy DtoD (Device -> Device)") == "copy / cast"
