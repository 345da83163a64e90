"""One line of results.jsonl per figure or check, appended (and flushed) the moment it exists, so a run killed
later still returns it. bench/gpu_all.py points GPU_ALL_RESULTS at the file and GPU_ALL_SECTION at the section
being run; without them (a bench script run by hand) records are only printed."""
import json
import os
import time


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
