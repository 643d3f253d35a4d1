"""Real RGB-D perception benchmark: the geometric backend on real camera frames.

    scripts/run python benchmarks/bench_real_rgbd.py [--data DIR] [--frames N] [--sources a,b]
                                                     [--overlays DIR] [--json PATH]

Data: the real RGB-D development set (``--data``, default ``$SPATIALPIN_REAL_RGBD`` or
``<repo>/../shared/real_rgbd``; see its README.md): 44 frames from nine public repositories,
each ``color.png`` (RGB), ``depth.png`` (uint16 mm, 0 = missing) and ``meta.json`` (K). The set
stays outside the repository (most sources are non-commercial); only one MIT-licensed
YCB-Video frame is copied into the tests.

Every frame is perceived once through the core API with a reset backend and **no camera pose**
(none is known for these frames): ``backend.perceive(RGBDFrame(rgb, depth, camera))``; the
backend builds a gravity frame from the support plane and returns it as ``scene.camera_pose``.
A backend that still requires a pose gets one from
``reasoning.registration.plane_frame_pose`` (reported as ``pose_source`` and timed
separately; the latency includes it). One warm-up call first is not counted. A frame whose
perception raises is reported with its error.

Reported:

* YCB-Video frames (instance labels; objects with ``visible_pixels`` > 0): overlap precision,
  recall and F-measure, % of objects found as one piece (IoU >= 0.5), % split, merged and false
  objects per frame (``perception.mask_metrics``: the UOIS / UCN measures), and the centroid
  error of objects found as one piece: the predicted box centre, mapped to the camera frame
  with ``scene.camera_pose``, against the 6D pose's translation. Caveat: a YCB-Video model's
  origin is near, not exactly at, the object's centre, and the predicted centre is that of a
  gravity-aligned box over the visible surface, so a few cm of error are built in. Per video
  (frames within a video are near-duplicates: 3 scenes, not 11) and pooled.
* Foreground-mask sources (gqcnn_primesense_clutter, cleargrasp_real): pixel precision and
  recall of the union of the predicted object masks against mask.png.
* Every frame: objects and flat items per frame, status, latency (median, p95, max) and the
  slowest frame with its per-stage timings (``backend.last['timing_ms']``).

Objects without a mask (``o.mask is None``) are counted as missing masks and left out of the
mask measures; a frame with objects but no masks at all is not scored (n/a).
Writes JSON (``--json``, default benchmarks/results/real_rgbd.json) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from spatialpin_ros.core.errors import PerceptionError
from spatialpin_ros.core.types import CameraModel, RGBDFrame, Scene
from spatialpin_ros.perception.base import make_backend
from spatialpin_ros.perception.mask_metrics import score_foreground, score_masks

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "benchmarks" / "results" / "real_rgbd.json"
FOREGROUND_SOURCES = ("gqcnn_primesense_clutter", "cleargrasp_real")


def default_data() -> Path:
    env = os.environ.get("SPATIALPIN_REAL_RGBD")
    return Path(env) if env else (REPO.parent / "shared" / "real_rgbd")


@dataclass
class LoadedFrame:
    """One frame of the set: ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 m, its camera,
    ``labels`` (H, W) uint8 instance ids or None, ``foreground`` (H, W) bool or None, meta."""

    dir: str
    source: str
    frame_id: str
    rgb: np.ndarray
    depth: np.ndarray
    camera: CameraModel
    labels: Optional[np.ndarray]
    foreground: Optional[np.ndarray]
    meta: dict


def load_frame(root: Path, entry: dict) -> LoadedFrame:
    d = root / entry["dir"]
    meta = json.loads((d / "meta.json").read_text())
    rgb = np.asarray(Image.open(d / "color.png").convert("RGB"))
    depth = np.asarray(Image.open(d / "depth.png")).astype(np.float32) / 1000.0
    K = np.asarray(meta["K"], dtype=float)
    cam = CameraModel(rgb.shape[1], rgb.shape[0], K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    labels = np.asarray(Image.open(d / "labels.png")) if (d / "labels.png").exists() else None
    fg = (np.asarray(Image.open(d / "mask.png")) > 0) if (d / "mask.png").exists() else None
    return LoadedFrame(entry["dir"], entry["source"], entry["frame_id"], rgb, depth, cam, labels,
                       fg, meta)


class Perceiver:
    """Runs ``perceive`` with no camera pose; falls back to ``plane_frame_pose`` once the backend
    says it needs one (then for every frame)."""

    def __init__(self, backend_name: str = "geometric") -> None:
        self.backend = make_backend(backend_name)
        self.pose_source = "perceive"

    def __call__(self, f: LoadedFrame) -> tuple[Scene, float, float]:
        """(scene, perceive ms, pose-fallback ms)."""
        self.backend.reset()
        pose, pose_ms = None, 0.0
        if self.pose_source == "perceive":
            t0 = time.perf_counter()
            try:
                scene = self.backend.perceive(RGBDFrame(f.rgb, f.depth, f.camera), scene_id=f.dir)
                return scene, 1000 * (time.perf_counter() - t0), 0.0
            except PerceptionError as e:
                if "pose" not in str(e).lower():
                    raise
                self.pose_source = "plane_frame_pose fallback"
                self.backend.reset()
        from spatialpin_ros.reasoning.registration import plane_frame_pose
        t0 = time.perf_counter()
        pose = plane_frame_pose(f.depth, f.camera)
        t1 = time.perf_counter()
        scene = self.backend.perceive(RGBDFrame(f.rgb, f.depth, f.camera, pose), scene_id=f.dir)
        t2 = time.perf_counter()
        if scene.camera_pose is None:
            scene = scene.replace(camera_pose=pose)
        pose_ms = 1000 * (t1 - t0)
        return scene, 1000 * (t2 - t1), pose_ms


def _num(x):
    """JSON-safe float (NaN -> None)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else round(x, 4)


def _pct(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _mean(values):
    return float(np.mean(values)) if len(values) else float("nan")


def evaluate_frame(f: LoadedFrame, scene: Scene) -> dict:
    """Mask and centroid measures of one perceived frame (whatever labels it has)."""
    H, W = f.rgb.shape[:2]
    masks = [o.full_mask(H, W) for o in scene.objects]
    with_mask = [(k, m) for k, m in enumerate(masks) if m is not None]
    rec: dict = {"num_missing_mask": len(masks) - len(with_mask)}
    scorable = bool(with_mask) or not scene.objects
    pred_idx = [k for k, _ in with_mask]
    pred = [m for _, m in with_mask]
    if f.labels is not None:
        objs = [o for o in f.meta.get("objects", []) if o.get("visible_pixels", 0) > 0]
        truths = [f.labels == int(o["id"]) for o in objs]
        rec["num_truth"] = len(truths)
        if scorable:
            s = score_masks(pred, truths)
            T_wc = scene.camera_pose.inverse() if scene.camera_pose is not None else None
            cents = []
            for m in s.iou_matches:
                o = scene.objects[pred_idx[m.pred_index]]
                truth_t = np.asarray(objs[m.truth_index]["pose_cam"], dtype=float)[:, 3]
                if T_wc is None:
                    continue
                c_cam = T_wc.transform_points(o.center[None])[0]
                err_cm = 100 * float(np.linalg.norm(c_cam - truth_t))
                cents.append({"object": objs[m.truth_index]["name"], "pred_id": o.id,
                              "iou": round(m.iou, 3), "centroid_error_cm": round(err_cm, 2)})
            rec["masks"] = {"precision": s.precision, "recall": s.recall, "f_measure": s.f_measure,
                            "num_pred": s.num_pred, "num_one_piece": s.num_one_piece,
                            "num_split": s.num_split, "num_merged": s.num_merged,
                            "num_false": s.num_false, "matched": cents}
        else:
            rec["masks"] = None
    if f.foreground is not None:
        if scorable:
            fs = score_foreground(pred, f.foreground)
            rec["foreground"] = {"precision": fs.precision, "recall": fs.recall,
                                 "f_measure": fs.f_measure, "pred_pixels": fs.pred_pixels,
                                 "true_pixels": fs.true_pixels}
        else:
            rec["foreground"] = None
    return rec


def _error_overlay(rgb: np.ndarray, text: str) -> np.ndarray:
    import cv2
    img = rgb.copy()
    cv2.putText(img, text[:80], (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 64, 64), 1,
                cv2.LINE_AA)
    return img


def run(args) -> dict:
    root = Path(args.data)
    index = json.loads((root / "index.json").read_text())["frames"]
    if args.sources:
        keep = {s.strip() for s in args.sources.split(",") if s.strip()}
        unknown = keep - {e["source"] for e in index}
        if unknown:
            raise SystemExit(f"unknown sources {sorted(unknown)}; known: "
                             f"{sorted({e['source'] for e in index})}")
        index = [e for e in index if e["source"] in keep]
    if args.frames:
        index = index[: args.frames]
    if not index:
        raise SystemExit("no frames selected")

    perceiver = Perceiver(args.backend)
    overlays = Path(args.overlays) if args.overlays else None
    # warm-up (not counted)
    try:
        perceiver(load_frame(root, index[0]))
    except Exception as e:  # noqa: BLE001 - reported with the frame itself below
        print(f"warm-up failed: {e!r}", file=sys.stderr)

    records = []
    for e in index:
        f = load_frame(root, e)
        rec: dict = {"dir": f.dir, "source": f.source, "frame_id": f.frame_id,
                     "video": f.meta.get("video"), "size": [f.camera.width, f.camera.height]}
        try:
            scene, perceive_ms, pose_ms = perceiver(f)
        except Exception as ex:  # noqa: BLE001 - a failing frame is a result, not a crash
            rec.update(error=f"{type(ex).__name__}: {ex}", status="error")
            records.append(rec)
            if overlays:
                from spatialpin_ros.perception.overlay import save_png
                save_png(overlays / f"{f.source}_{f.frame_id}.png",
                         _error_overlay(f.rgb, rec["error"]))
            continue
        timing = getattr(perceiver.backend, "last", {}).get("timing_ms")
        rec.update(status=scene.status.value, status_message=scene.status_message,
                   num_objects=len(scene.objects), num_flat=len(scene.flat_items),
                   latency_ms=round(perceive_ms + pose_ms, 2), perceive_ms=round(perceive_ms, 2),
                   pose_ms=round(pose_ms, 2), pose_source=perceiver.pose_source,
                   timing_ms=dict(timing) if timing else None)
        try:
            rec.update(evaluate_frame(f, scene))
        except Exception as ex:  # noqa: BLE001
            rec["eval_error"] = f"{type(ex).__name__}: {ex}"
        if overlays:
            from spatialpin_ros.perception.overlay import draw_overlay, save_png
            truths = None
            if f.labels is not None:
                truths = [f.labels == int(o["id"]) for o in f.meta.get("objects", [])
                          if o.get("visible_pixels", 0) > 0]
            elif f.foreground is not None:
                truths = [f.foreground]
            save_png(overlays / f"{f.source}_{f.frame_id}.png",
                     draw_overlay(f.rgb, scene, truth_masks=truths))
        records.append(rec)

    return {"meta": {"date": datetime.date.today().isoformat(), "nproc": os.cpu_count(),
                     "python": platform.python_version(), "platform": platform.platform(),
                     "backend": args.backend, "data": str(root), "frames": len(records),
                     "pose_source": perceiver.pose_source},
            "summary": summarise(records), "frames": records}


def _mask_group(recs: list[dict]) -> dict:
    scored = [r for r in recs if r.get("masks")]
    truths = sum(r.get("num_truth", 0) for r in scored)
    cents = [m["centroid_error_cm"] for r in scored for m in r["masks"]["matched"]]
    return {"frames": len(recs), "frames_scored": len(scored),
            "objects": sum(r.get("num_truth", 0) for r in recs),
            "precision": _mean([r["masks"]["precision"] for r in scored]),
            "recall": _mean([r["masks"]["recall"] for r in scored]),
            "f_measure": _mean([r["masks"]["f_measure"] for r in scored]),
            "one_piece_pct": 100 * sum(r["masks"]["num_one_piece"] for r in scored) / truths
            if truths else float("nan"),
            "split_pct": 100 * sum(r["masks"]["num_split"] for r in scored) / truths
            if truths else float("nan"),
            "merged_per_frame": _mean([r["masks"]["num_merged"] for r in scored]),
            "false_per_frame": _mean([r["masks"]["num_false"] for r in scored]),
            "centroid_n": len(cents), "centroid_median_cm": _pct(cents, 50),
            "centroid_p90_cm": _pct(cents, 90),
            "missing_masks": sum(r.get("num_missing_mask", 0) for r in recs),
            "errors": sum("error" in r for r in recs)}


def summarise(records: list[dict]) -> dict:
    ycb = [r for r in records if r["source"] == "ycb_video"]
    videos = sorted({r["video"] for r in ycb if r.get("video")})
    masks = {v: _mask_group([r for r in ycb if r.get("video") == v]) for v in videos}
    if ycb:
        masks["pooled"] = _mask_group(ycb)
    fg = {}
    for src in FOREGROUND_SOURCES:
        rs = [r for r in records if r["source"] == src]
        if not rs:
            continue
        sc = [r for r in rs if r.get("foreground")]
        fg[src] = {"frames": len(rs), "frames_scored": len(sc),
                   "precision": _mean([r["foreground"]["precision"] for r in sc]),
                   "recall": _mean([r["foreground"]["recall"] for r in sc]),
                   "f_measure": _mean([r["foreground"]["f_measure"] for r in sc]),
                   "missing_masks": sum(r.get("num_missing_mask", 0) for r in rs)}
    per_source = {}
    for src in dict.fromkeys(r["source"] for r in records):
        rs = [r for r in records if r["source"] == src]
        ok = [r for r in rs if "error" not in r]
        lat = [r["latency_ms"] for r in ok]
        statuses: dict = {}
        for r in rs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        per_source[src] = {"frames": len(rs), "errors": len(rs) - len(ok),
                           "objects_per_frame": _mean([r["num_objects"] for r in ok]),
                           "flat_per_frame": _mean([r["num_flat"] for r in ok]),
                           "statuses": statuses,
                           "missing_masks": sum(r.get("num_missing_mask", 0) for r in ok),
                           "objects": sum(r["num_objects"] for r in ok),
                           "latency_median_ms": _pct(lat, 50), "latency_p95_ms": _pct(lat, 95),
                           "latency_max_ms": max(lat) if lat else float("nan")}
    ok = [r for r in records if "error" not in r]
    lat = [r["latency_ms"] for r in ok]
    slowest = max(ok, key=lambda r: r["latency_ms"]) if ok else None
    overall = {"frames": len(records), "errors": len(records) - len(ok),
               "objects_per_frame": _mean([r["num_objects"] for r in ok]),
               "flat_per_frame": _mean([r["num_flat"] for r in ok]),
               "missing_masks": sum(r.get("num_missing_mask", 0) for r in ok),
               "objects": sum(r["num_objects"] for r in ok),
               "latency_median_ms": _pct(lat, 50), "latency_p95_ms": _pct(lat, 95),
               "latency_max_ms": max(lat) if lat else float("nan"),
               "slowest": None if slowest is None else
               {"dir": slowest["dir"], "size": slowest["size"],
                "latency_ms": slowest["latency_ms"], "pose_ms": slowest["pose_ms"],
                "timing_ms": slowest["timing_ms"]}}
    return {"masks": masks, "foreground": fg, "sources": per_source, "overall": overall}


def _f(x, nd=2, pct=False):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{nd}f}" + ("%" if pct else "")


def markdown(res: dict) -> str:
    m, s = res["meta"], res["summary"]
    out = [f"Real RGB-D frames ({m['frames']} frames of `{Path(m['data']).name}`), "
           f"`{m['backend']}` backend, no camera pose given (pose: {m['pose_source']}); "
           f"{m['date']}, {m['nproc']} CPU cores (nproc), Python {m['python']}.", ""]
    if s["masks"]:
        out += ["**YCB-Video instance masks** (objects with visible pixels; overlap P/R/F are "
                "means over frames; one piece / split: % of objects; centroid error of the objects "
                "found as one piece; frames within a video are near-duplicates, so each video is "
                "one scene)", "",
                "| video | frames (scored) | objects | overlap P | overlap R | overlap F | "
                "one piece | split | merged / frame | false / frame | centroid median | "
                "centroid p90 | masks missing |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for v, g in s["masks"].items():
            out.append(f"| {v} | {g['frames']} ({g['frames_scored']}) | {g['objects']} | "
                       f"{_f(g['precision'])} | {_f(g['recall'])} | {_f(g['f_measure'])} | "
                       f"{_f(g['one_piece_pct'], 0, True)} | {_f(g['split_pct'], 0, True)} | "
                       f"{_f(g['merged_per_frame'], 1)} | {_f(g['false_per_frame'], 1)} | "
                       f"{_f(g['centroid_median_cm'], 1)} cm | {_f(g['centroid_p90_cm'], 1)} cm "
                       f"(n={g['centroid_n']}) | {g['missing_masks']} |")
        out.append("")
    if s["foreground"]:
        out += ["**Foreground masks** (union of the predicted object masks, flat items "
                "excluded, vs mask.png; means over frames)", "",
                "| source | frames (scored) | precision | recall | F | masks missing |",
                "|---|---|---|---|---|---|"]
        for src, g in s["foreground"].items():
            out.append(f"| {src} | {g['frames']} ({g['frames_scored']}) | {_f(g['precision'])} | "
                       f"{_f(g['recall'])} | {_f(g['f_measure'])} | {g['missing_masks']} |")
        out.append("")
    out += ["**All frames**", "",
            "| source | frames | errors | objects / frame | flat items / frame | status | "
            "latency median | p95 | max |", "|---|---|---|---|---|---|---|---|---|"]
    rows = list(s["sources"].items()) + [("**all**", {**s["overall"], "statuses": {}})]
    for src, g in rows:
        st = ", ".join(f"{k} {v}" for k, v in g["statuses"].items()) or "-"
        out.append(f"| {src} | {g['frames']} | {g['errors']} | {_f(g['objects_per_frame'], 1)} | "
                   f"{_f(g['flat_per_frame'], 1)} | {st} | {_f(g['latency_median_ms'], 0)} ms | "
                   f"{_f(g['latency_p95_ms'], 0)} ms | {_f(g['latency_max_ms'], 0)} ms |")
    sl = s["overall"]["slowest"]
    if sl:
        out += ["", f"Slowest frame: `{sl['dir']}` ({sl['size'][0]}x{sl['size'][1]}), "
                    f"{sl['latency_ms']:.0f} ms"
                    + (f" (of which plane_frame_pose {sl['pose_ms']:.0f} ms)"
                       if sl["pose_ms"] else "")
                    + "."]
        if sl["timing_ms"]:
            out += ["", "| stage | " + " | ".join(sl["timing_ms"]) + " |",
                    "|---|" + "---|" * len(sl["timing_ms"]),
                    "| ms | " + " | ".join(f"{v:.0f}" for v in sl["timing_ms"].values()) + " |"]
    errs = [r for r in res["frames"] if "error" in r]
    if errs:
        out += ["", "Frames that failed:"] + [f"- `{r['dir']}`: {r['error']}" for r in errs]
    return "\n".join(out)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return _num(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(default_data()),
                    help="the real_rgbd folder (default $SPATIALPIN_REAL_RGBD or "
                         "<repo>/../shared/real_rgbd)")
    ap.add_argument("--frames", type=int, default=0, help="only the first N selected frames")
    ap.add_argument("--sources", default="", help="comma-separated sources (default: all)")
    ap.add_argument("--overlays", default="", help="write one overlay PNG per frame here")
    ap.add_argument("--json", default=str(DEFAULT_JSON), help="results file")
    ap.add_argument("--backend", default="geometric")
    args = ap.parse_args(argv)
    if not (Path(args.data) / "index.json").exists():
        raise SystemExit(f"no index.json in {args.data}: pass --data or set SPATIALPIN_REAL_RGBD")
    t0 = time.perf_counter()
    res = run(args)
    res["meta"]["wall_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(res), indent=1) + "\n")
    print(markdown(res))
    print(f"\n(wrote {out}; {res['meta']['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
