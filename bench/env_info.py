"""Section 1 of bench/gpu_all.sh: versions, the device's name and memory, measured copy bandwidth."""
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import emit  # noqa: E402


def version(module):
    try:
        return __import__(module).__version__
    except Exception as e:  # noqa: BLE001 (absent or broken: say which)
        return f"unavailable ({type(e).__name__})"


def main():
    info = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
                transformers=version("transformers"), triton=version("triton"), cpus=os.cpu_count())
    if not torch.cuda.is_available():
        emit("environment", **info, gpu=None)
        emit("copy bandwidth", "skipped", reason="no CUDA")
        return
    prop = torch.cuda.get_device_properties(0)
    emit("environment", **info, gpu=prop.name, gpu_mem_gib=round(prop.total_memory / 2**30, 1),
         sm_count=prop.multi_processor_count, capability=f"{prop.major}.{prop.minor}")
    from bench_sampler import copy_bandwidth
    bw = copy_bandwidth(torch.device("cuda"))
    emit("copy bandwidth", tb_per_s=round(bw / 1e12, 3), note="2 GiB bf16 copy, read + write bytes")


if __name__ == "__main__":
    main()
