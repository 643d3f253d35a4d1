"""Where the torch ``finish``'s device half (``TorchLifter.device_half``: the lift_rows CUDA
graph and its download) spends its time on the benchmark's 10-object frame: its wall time
with and without the CUDA graph, its GPU time (CUDA events) and torch.profiler's kernel table
of one eager call. CUDA only.

    PYTHONPATH=spatialpin_ros python3 benchmarks/profile_lift_device_half.py
"""
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "spatialpin_ros"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_gpu_perception import synth_frame  # noqa: E402
from spatialpin_ros.perception.geometric import GeometricBackend  # noqa: E402
from spatialpin_ros.perception.lift_gpu import TorchLifter  # noqa: E402
from spatialpin_ros.perception.prepare_torch import TorchPreparer  # noqa: E402
dev = torch.device("cuda")
frame, depth, seg = synth_frame()
f = dataclasses.replace(frame, depth=depth)
b = GeometricBackend()
masks = torch.from_numpy(np.stack(seg.masks)).to(dev)
for graphs in (True, False):
    lifter, prep_ = TorchLifter(graphs=graphs), TorchPreparer(graphs=True)
    prep = prep_.prepare(b, f, dev)
    for _ in range(5): lifter.device_half(b, prep, masks)
    torch.cuda.synchronize()
    ts = []
    for _ in range(20):
        t = time.perf_counter(); lifter.device_half(b, prep, masks); ts.append(1e3 * (time.perf_counter() - t))
    print("graphs", graphs, "device_half wall ms median", round(float(np.median(ts)), 3), flush=True)
    if graphs:
        fn = list(lifter._fns.values())[0]
        print("cap keys", list(lifter._fns.keys())[0][2:], flush=True)
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        got = []
        for _ in range(10):
            s.record(); lifter.device_half(b, prep, masks); e.record(); torch.cuda.synchronize(); got.append(s.elapsed_time(e))
        print("device_half GPU-event ms", round(float(np.median(got)), 3), flush=True)
from torch.profiler import ProfilerActivity, profile
with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
    lifter.device_half(b, prep, masks); torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))
