"""One line of results.jsonl per figure or check, appended (and flushed) the moment it exists, so a run killed
later still returns it. bench/gpu_all.py points GPU_ALL_RESULTS at the file and GPU_ALL_SECTION at the section
being run; without them (a bench script run by hand) records are only printed."""
import json
import os
import time

import torch


def emit(name: str, status: str = "ok", **fields) -> dict:
    if status not in ("ok", "failed", "skipped"):
        raise ValueError(f"status must be ok / failed / skipped, got {status!r}")
    rec = {"section": os.environ.get("GPU_ALL_SECTION", "adhoc"), "name": name, "status": status, **fields,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = os.environ.get("GPU_ALL_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
    print("[result] " + json.dumps(rec), flush=True)
    return rec


def profile(fn, device, name: str, top: int = 12, record: bool = True) -> dict | None:
    """fn() once under torch.profiler: the kernels that bound it (the device time of the kernels alone, so no time
    is counted twice under the operator that launched it; operators' CPU time on CPU) and how busy the device was
    over the wall time (busy << wall: the host, not the kernels, bounds it). Recorded as `name` when `record` (every
    rank of a distributed step runs fn; one records)."""
    if not record:
        fn()
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile as run_profiled
    cuda = device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with run_profiled(activities=acts) as prof:
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        wall = (time.perf_counter() - t) * 1e3
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    # User annotations (Optimizer.step#AdamW.step, record_function ranges) span the kernels they launched: counting
    # them too would count that time twice.
    events = [e for e in prof.key_averages() if (not cuda or e.device_type == DeviceType.CUDA)
              and not getattr(e, "is_user_annotation", False)]
    events.sort(key=lambda e: -getattr(e, key))
    busy = sum(getattr(e, key) for e in events) / 1e3 or 1e-9
    rows = [dict(name=e.key[:90], ms=round(getattr(e, key) / 1e3, 3), share=round(getattr(e, key) / 1e3 / busy, 4),
                 calls=e.count) for e in events[:top]]
    kinds: dict[str, float] = {}
    for e in events:
        kind = kernel_kind(e.key)
        kinds[kind] = kinds.get(kind, 0.0) + getattr(e, key) / 1e3
    kinds = {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
    print(f"{name}: {'kernels' if cuda else 'operators'} busy {busy:.1f} ms of {wall:.1f} ms wall (profiled); by kind: "
          + ", ".join(f"{k} {v / busy:.0%}" for k, v in kinds.items()) + f"; top {top}:")
    for r in rows:
        print(f"  {r['share']:6.1%} {r['ms']:9.2f} ms  x{r['calls']:<5} {r['name']}")
    return emit(name, total_ms=round(busy, 2), wall_ms=round(wall, 2), kinds_ms=kinds, top=rows)


KERNEL_KINDS = (  # first match wins; names as cuBLAS/cuDNN/inductor/aten call their kernels (CPU: aten operators)
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "aten::mm", "aten::addmm", "aten::bmm", "aten::linear")),
    ("attention", ("sdpa", "flash", "fmha", "attention", "cudnn")),
    ("collective", ("nccl", "c10d", "allgather", "all_gather", "reduce_scatter", "allreduce")),
    ("optimizer", ("multi_tensor_apply", "adam", "foreach")),
    ("compiled (fused)", ("triton_",)),
    ("copy / cast", ("memcpy", "memset", "copy", "cat", "fill")),
)


def kernel_kind(name: str) -> str:
    """The kind of one kernel or operator by its name: where a step's time goes at a glance (matmul-bound vs a
    long tail of small kernels)."""
    low = name.lower()
    for kind, marks in KERNEL_KINDS:
        if any(m in low for m in marks):
            return kind
    return "other (elementwise, reductions)"
