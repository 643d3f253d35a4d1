"""The lifting alone on the benchmark's synthetic 10-object frame: numpy (host) against torch
(``perception/prepare_torch.py`` and ``perception/lift_gpu.py``, on CUDA when there is one,
with CUDA graphs), the depth-only half (``prepare``) and the masks half (``finish``) each,
with the per-stage times and, with ``--profile FILE``, torch.profiler's table of the torch
``finish``.

``--host-finish N`` also times the torch ``finish``'s host half alone (selection, support
relations, priors, names, ids: ``lift_gpu.host_half``) N times on one frame's device results,
with its stages and the numpy ``finish``'s priors stage beside it; ``--skip-full`` leaves out
the whole-lifting timings (e.g. on a CPU, where the torch device half is slow).

    PYTHONPATH=spatialpin_ros python3 benchmarks/profile_lift_torch.py [--iters 30]
    PYTHONPATH=spatialpin_ros python3 benchmarks/profile_lift_torch.py --host-finish 50 --skip-full

``--device-tops on`` computes the top faces' array work in the device half also on a CPU
(``TorchLifter.device_tops``; by default only on CUDA), ``off`` leaves it to the host.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "spatialpin_ros"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_gpu_perception import stats, synth_frame  # noqa: E402
from spatialpin_ros.perception.detection_names import _DetectionNamer, _Fixed  # noqa: E402
from spatialpin_ros.perception.geometric import GeometricBackend, _Ticker  # noqa: E402
from spatialpin_ros.perception import lift_gpu  # noqa: E402
from spatialpin_ros.perception.lift_gpu import TorchLifter, host_half  # noqa: E402
from spatialpin_ros.perception.prepare_torch import TorchPreparer  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--host-finish", type=int, default=0, metavar="N",
                    help="time the torch finish's host half alone N times")
    ap.add_argument("--skip-full", action="store_true",
                    help="leave out the whole prepare/finish timings")
    ap.add_argument("--device-tops", choices=("auto", "on", "off"), default="auto",
                    help="the top faces' array work in the device half (auto: on CUDA only)")
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    frame, depth, seg = synth_frame()
    f = dataclasses.replace(frame, depth=depth)
    a = GeometricBackend(segmenter=_Fixed(seg), namer=_DetectionNamer(seg))
    b = GeometricBackend()
    masks = torch.from_numpy(np.stack(seg.masks)).to(dev)
    lifter = TorchLifter(graphs=True, device_tops={"auto": None, "on": True,
                                                   "off": False}[args.device_tops])
    preparer = TorchPreparer(graphs=True)
    out = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
           "device_tops": args.device_tops}
    full = () if args.skip_full else (("numpy", lambda p: a.finish(p, masks=seg.masks)),
                                      ("torch", lambda p: lifter.lift(b, p, masks, seg, None)))
    for name, run in full:
        owner = a if name == "numpy" else b
        tot, ptot, parts = [], [], {}
        for it in range(5 + args.iters):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            prep = owner.prepare(f) if name == "numpy" else preparer.prepare(b, f, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            ptot.append(1000 * (time.perf_counter() - t))
            t = time.perf_counter()
            r = run(prep)
            tot.append(1000 * (time.perf_counter() - t))
            for k, v in owner.last["timing_ms"].items():
                parts.setdefault(k, []).append(v)
            if it < 5:
                tot.clear()
                ptot.clear()
                parts.clear()
        out[name] = {"prepare_ms": stats(ptot), "finish_ms": stats(tot),
                     "stages_ms": {k: stats(v) for k, v in parts.items()},
                     "objects": len((r[0] if isinstance(r, tuple) else r).objects)}
        if name == "torch":
            out[name]["graphs"] = [f.enabled for f in lifter._fns.values()]
            out[name]["prepare_graphs"] = [f.enabled for f in preparer._fns.values()]
        print(name, json.dumps(out[name]), flush=True)
    if args.host_finish:
        out["host_finish"] = host_finish(a, b, f, seg, masks, lifter, preparer, dev,
                                         args.host_finish)
        print("host_finish", json.dumps(out["host_finish"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    if args.profile and dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile
        prep = preparer.prepare(b, f, dev)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            lifter.lift(b, prep, masks, seg, None)
            torch.cuda.synchronize()
        Path(args.profile).write_text(prof.key_averages().table(
            sort_by="cpu_time_total", row_limit=40, max_name_column_width=60))
    return 0


def host_finish(a, b, f, seg, masks, lifter, preparer, dev, iters: int) -> dict:
    """The torch ``finish``'s host half alone, ``iters`` times (after 5 warm-ups) on one
    frame's device results, against the numpy ``finish`` (its "priors" stage builds the same
    priors from the same kind of inputs)."""
    prep = preparer.prepare(b, f, dev)
    got = lifter.device_half(b, prep, masks)
    tot, parts, tops = [], {}, []
    describe, from_grids = b.describe_tops, lift_gpu.tops_from_grids

    def timed(fn):                     # the top faces' share of "priors" (host work only)
        def run(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            tops[-1] += 1000 * (time.perf_counter() - t)
            return out
        return run
    lift_gpu.tops_from_grids, b.describe_tops = timed(from_grids), timed(describe)
    for it in range(5 + iters):
        prep.tick = _Ticker()
        tops.append(0.0)
        t = time.perf_counter()
        scene, _ = host_half(b, prep, got, seg, None)
        if it >= 5:
            tot.append(1000 * (time.perf_counter() - t))
            for k, v in b.last["timing_ms"].items():
                parts.setdefault(k, []).append(v)
    lift_gpu.tops_from_grids, b.describe_tops = from_grids, describe
    parts["top_faces (in priors)"] = tops[5:]
    b.lifting_threads = 4                       # the top faces on 4 worker threads
    thr = []
    for it in range(5 + iters):
        prep.tick = _Ticker()
        t = time.perf_counter()
        host_half(b, prep, got, seg, None)
        thr.append(1000 * (time.perf_counter() - t))
    b.lifting_threads = 1
    parts["whole host half, top faces on 4 threads"] = thr[5:]
    npy = {}
    pa = a.prepare(f)
    for it in range(5 + iters):
        pa.tick = _Ticker()
        a.finish(pa, masks=seg.masks)
        if it >= 5:
            for k, v in a.last["timing_ms"].items():
                npy.setdefault(k, []).append(v)
    return {"torch_host_ms": stats(tot), "stages_ms": {k: stats(v) for k, v in parts.items()},
            "numpy_finish_stages_ms": {k: stats(v) for k, v in npy.items()},
            "objects": len(scene.objects)}


if __name__ == "__main__":
    sys.exit(main())
