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
res = {}
for graphs, comp in ((True, False), (True, True), (False, False)):
    lifter, prep_ = TorchLifter(graphs=graphs, compile=comp), TorchPreparer(graphs=True)
    prep = prep_.prepare(b, f, dev)
    t = time.perf_counter()
    lifter.device_half(b, prep, masks)
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t
    for _ in range(5): lifter.device_half(b, prep, masks)
    torch.cuda.synchronize()
    ts = []
    for _ in range(20):
        t = time.perf_counter(); lifter.device_half(b, prep, masks); ts.append(1e3 * (time.perf_counter() - t))
    tag = f"graphs {graphs} compile {comp}"
    print(tag, "first call s", round(first_s, 1), "device_half wall ms median",
          round(float(np.median(ts)), 3), flush=True)
    res[(graphs, comp)] = [np.array(a, copy=True) for a in lifter.device_half(b, prep, masks).host]
    if graphs:
        fn = list(lifter._fns.values())[0]
        print("cap keys", list(lifter._fns.keys())[0][2:], "graph on", fn.enabled,
              "compile failed", getattr(fn.fn, "failed", None), flush=True)
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        got = []
        for _ in range(10):
            s.record(); lifter.device_half(b, prep, masks); e.record(); torch.cuda.synchronize(); got.append(s.elapsed_time(e))
        print(tag, "device_half GPU-event ms", round(float(np.median(got)), 3), flush=True)
ref = res[(False, False)]
for k, v in res.items():
    diffs = []
    for name, a, r in zip(("table", "near", "full", "det", "boxes"), v, ref):
        if a.dtype.kind == "f":
            fin = np.isfinite(r)
            same_nonfinite = bool(np.array_equal(np.isfinite(a), fin))
            d = float(np.abs(a[fin] - r[fin]).max()) if fin.any() else 0.0
            diffs.append(f"{name} maxdiff {d:.3g} nonfinite-same {same_nonfinite}")
        else:
            diffs.append(f"{name} equal {bool(np.array_equal(a, r))}")
    print("vs eager:", k, "; ".join(diffs), flush=True)
from torch.profiler import ProfilerActivity, profile
with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
    lifter.device_half(b, prep, masks); torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=70))
