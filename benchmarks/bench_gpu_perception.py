"""GPU benchmark of the "models" perception backend (RGB-only frame -> 3D priors) and of the
transformers VLM backend, with real-size model configs and random weights.

    PYTHONPATH=spatialpin_ros python3 benchmarks/bench_gpu_perception.py [--iters 50] [--out F]
    scripts/run python benchmarks/bench_gpu_perception.py --size tiny --iters 3   # CPU dry run

Random weights time the same as trained ones (same shapes, same kernels), and nothing is
downloaded: every model is built from a transformers config class:

* depth: Depth Anything V2 Large, metric head (DINOv2-L/14 backbone, DPT neck; 640x480 in ->
  518x686 model input -> 640x480 metres out);
* detection: OWLv2 base/16 (960x960 input), 10 text queries in one call;
* segmentation: SAM ViT-B (1024x1024 input), 10 boxes in one mask-decoder call;
* lifting: the geometric backend's code on the CPU (support plane, per-mask fits, priors);
* VLM: LLaVA-1.5-7B-size (CLIP ViT-L/14-336 + Llama-2-7B-size decoder), fp16, through
  ``TransformersVLM.generate`` in each ``--vlm-modes`` decode mode (``generate``: transformers'
  loop, the baseline; ``graphs``: static KV cache and a CUDA-graph decode step; ``compile``: the
  same with a torch.compile'd forward): time to first token and decode tokens/s for a
  SpatialPIN-style prompt of ~640 text tokens plus one image (576 image tokens), and the
  memory-bandwidth limit of a decode step (decoder weights + KV cache over the measured
  device-to-device copy bandwidth).

The frame is synthesised with numpy (a table and 10 boxes and cylinders ray-cast from a camera
0.6 m above the table, 640x480). Per-stage times use CUDA events on one stream (median, p90 over
``--iters`` iterations after warm-up). The end-to-end time is the wall time of
``backend.perceive(frame)`` on the RGB-only frame (depth all zeros). Because random weights give
meaningless depth and masks, the lifting of the end-to-end run is handed the synthetic frame's
true depth and object masks instead (after the models have run on the image and their outputs
have been finished on the host), so that the CPU lifting does the work a trained model's outputs
would give it.

Variants (``--variants``): eager fp16 and CUDA graphs (the frame's device work as one graph),
each sequential (models, then the lifting) or with the overlapped lifting
(:mod:`spatialpin_ros.perception.frame_pipeline`: the depth-only half of the lifting on the host
while the GPU runs the detector and SAM); overlapped CUDA graphs with a 364 px depth input and
a 768 px detector input (faster, coarser); optionally ``--compile`` (torch.compile, slow start).

Prints a Markdown table (with the GPU's name) and writes JSON to ``--out`` (default
``$OUT/gpu_perception.json`` when $OUT is set, else benchmarks/results/gpu_perception.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import gc
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "spatialpin_ros"))

import torch  # noqa: E402

from spatialpin_ros.core.types import CameraModel, RGBDFrame, look_at  # noqa: E402
from spatialpin_ros.perception.base import Segmentation  # noqa: E402

TARGET_MS = 25.0          # issue 14: median <= 25 ms, p90 <= 30 ms
TARGET_P90_MS = 30.0
N_OBJECTS = 10
OBJECT_NAMES = ["red box", "blue box", "green cylinder", "yellow box", "purple cylinder",
                "orange box", "cyan cylinder", "pink box", "white cylinder", "brown box"]


def pct(v, q):
    return float(np.percentile(v, q)) if len(v) else float("nan")


def stats(v) -> dict:
    return {"median": round(pct(v, 50), 3), "p90": round(pct(v, 90), 3), "n": len(v)}


# ------------------------------------------------------------------------------------------------
# Synthetic frame

def synth_frame(width=640, height=480, seed=0):
    """(RGB-only frame, true depth, Segmentation of the visible objects) of a ray-cast table."""
    rng = np.random.default_rng(seed)
    cam = CameraModel.from_fov(width, height, 58.0)
    pose = look_at([1.05, 0.0, 0.6], [0.5, 0.0, 0.02])
    R, C = pose.rotation.as_matrix(), pose.position
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    d_opt = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u, float)], -1)
    D = d_opt.reshape(-1, 3) @ R.T                                   # world ray per pixel, t=depth
    n = D.shape[0]
    t_best = np.where(D[:, 2] < 0, -C[2] / np.minimum(D[:, 2], -1e-9), np.inf)
    owner = np.full(n, -1)
    normal = np.tile([0.0, 0.0, 1.0], (n, 1))
    objs = []
    xs = np.linspace(0.38, 0.68, 4)
    ys = np.linspace(-0.2, 0.2, 3)
    cells = [(x, y) for x in xs for y in ys]
    rng.shuffle(cells)
    palette = [(200, 30, 30), (30, 60, 200), (30, 160, 50), (230, 210, 30), (130, 40, 160),
               (240, 130, 20), (20, 200, 210), (240, 120, 170), (235, 235, 235), (120, 70, 30)]
    for i in range(N_OBJECTS):
        x, y = cells[i]
        x += rng.uniform(-0.02, 0.02)
        y += rng.uniform(-0.02, 0.02)
        kind = "box" if i % 2 == 0 else "cyl"
        objs.append(dict(kind=kind, c=np.array([x, y]), h=rng.uniform(0.03, 0.09),
                         half=rng.uniform(0.018, 0.035, 2), r=rng.uniform(0.018, 0.03),
                         yaw=rng.uniform(0, math.pi), color=palette[i]))
    for k, o in enumerate(objs):
        O = C - np.array([o["c"][0], o["c"][1], 0.0])
        if o["kind"] == "box":
            cy, sy = math.cos(o["yaw"]), math.sin(o["yaw"])
            Rz = np.array([[cy, sy, 0], [-sy, cy, 0], [0, 0, 1.0]])  # world -> box
            o_l, d_l = Rz @ O, D @ Rz.T
            lo = np.array([-o["half"][0], -o["half"][1], 0.0])
            hi = np.array([o["half"][0], o["half"][1], o["h"]])
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (lo - o_l) / d_l, (hi - o_l) / d_l
            tmin3, tmax3 = np.minimum(t1, t2), np.maximum(t1, t2)
            tmin, tmax = np.nanmax(tmin3, axis=1), np.nanmin(tmax3, axis=1)
            hit = (tmax >= tmin) & (tmin > 0) & (tmin < t_best)
            ax = np.argmax(tmin3, axis=1)
            nl = np.zeros((n, 3))
            nl[np.arange(n), ax] = -np.sign(d_l[np.arange(n), ax])
            nw = nl @ Rz
            t_best = np.where(hit, tmin, t_best)
        else:
            a = D[:, 0] ** 2 + D[:, 1] ** 2
            b = 2 * (O[0] * D[:, 0] + O[1] * D[:, 1])
            c = O[0] ** 2 + O[1] ** 2 - o["r"] ** 2
            disc = b * b - 4 * a * c
            with np.errstate(invalid="ignore", divide="ignore"):
                ts = (-b - np.sqrt(disc)) / (2 * a)
                zs = O[2] + ts * D[:, 2]
                side = (disc >= 0) & (zs >= 0) & (zs <= o["h"]) & (ts > 0)
                tt = (o["h"] - O[2]) / D[:, 2]
                px, py = O[0] + tt * D[:, 0], O[1] + tt * D[:, 1]
                top = (px ** 2 + py ** 2 <= o["r"] ** 2) & (tt > 0)
            t_obj = np.where(top, tt, np.where(side, ts, np.inf))
            hit = t_obj < t_best
            P = O + t_obj[:, None] * D
            nw = np.where(top[:, None], np.array([0, 0, 1.0]),
                          np.stack([P[:, 0], P[:, 1], np.zeros(n)], 1) / o["r"])
            t_best = np.where(hit, t_obj, t_best)
        owner = np.where(hit, k, owner)
        normal = np.where(hit[:, None], nw, normal)
    light = np.array([0.4, 0.3, 1.0]) / np.linalg.norm([0.4, 0.3, 1.0])
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0, 1)
    base = np.tile(np.array([150.0, 125.0, 95.0]), (n, 1))          # wooden table
    for k, o in enumerate(objs):
        base[owner == k] = o["color"]
    rgb = np.clip(base * shade[:, None] + rng.normal(0, 3, (n, 3)), 0, 255)
    rgb = rgb.reshape(height, width, 3).astype(np.uint8)
    depth = np.where(np.isfinite(t_best), t_best, 0).reshape(height, width).astype(np.float32)
    owner = owner.reshape(height, width)
    masks = [owner == k for k in range(len(objs)) if (owner == k).sum() > 50]
    seg = Segmentation(masks=masks, names=[OBJECT_NAMES[i] for i in range(len(masks))],
                       scores=[0.9] * len(masks))
    frame = RGBDFrame(rgb=rgb, depth=np.zeros_like(depth), camera=cam, camera_pose=pose)
    return frame, depth, seg


# ------------------------------------------------------------------------------------------------
# Models from config classes

def build_perception_models(size: str, device, dtype):
    from transformers import (DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config,
                              Owlv2Config, Owlv2ForObjectDetection, SamConfig, SamModel)
    DPTImageProcessorPil, Owlv2ImageProcessorPil, SamImageProcessorPil = (
        image_processor_class(n) for n in ("DPTImageProcessor", "Owlv2ImageProcessor",
                                           "SamImageProcessor"))

    real = size == "real"
    if real:
        bb = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                          mlp_ratio=4, image_size=518, patch_size=14, out_indices=[5, 12, 18, 24],
                          reshape_hidden_states=False, layerscale_value=1.0)
        dcfg = DepthAnythingConfig(backbone_config=bb, reassemble_hidden_size=1024,
                                   neck_hidden_sizes=[256, 512, 1024, 1024],
                                   fusion_hidden_size=256, head_hidden_size=32,
                                   depth_estimation_type="metric", max_depth=20)
        dsize, osize = 518, 960
        ocfg = Owlv2Config(text_config=dict(vocab_size=49408, hidden_size=512,
                                            intermediate_size=2048, num_hidden_layers=12,
                                            num_attention_heads=8, max_position_embeddings=16),
                           vision_config=dict(hidden_size=768, intermediate_size=3072,
                                              num_hidden_layers=12, num_attention_heads=12,
                                              image_size=960, patch_size=16),
                           projection_dim=512)
        scfg = SamConfig()                                     # the defaults are ViT-B
        slong = 1024
    else:
        bb = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2,
                          image_size=56, patch_size=14, out_indices=[1, 2, 3, 4],
                          reshape_hidden_states=False)
        dcfg = DepthAnythingConfig(backbone_config=bb, reassemble_hidden_size=32,
                                   neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                                   head_hidden_size=8, depth_estimation_type="metric",
                                   max_depth=20)
        dsize, osize = 56, 64
        ocfg = Owlv2Config(text_config=dict(vocab_size=600, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=2,
                                            max_position_embeddings=16),
                           vision_config=dict(hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=2,
                                              image_size=64, patch_size=16), projection_dim=32)
        from transformers import SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig
        scfg = SamConfig(vision_config=SamVisionConfig(hidden_size=32, output_channels=16,
                                                       num_hidden_layers=2, num_attention_heads=2,
                                                       image_size=64, patch_size=16, window_size=2,
                                                       global_attn_indexes=[1], mlp_dim=64,
                                                       num_pos_feats=8),
                         prompt_encoder_config=SamPromptEncoderConfig(
                             hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4),
                         mask_decoder_config=SamMaskDecoderConfig(
                             hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             mlp_dim=32, iou_head_hidden_dim=16))
        slong = 64
    torch.manual_seed(0)
    with torch.device(device):
        depth = DepthAnythingForDepthEstimation(dcfg).to(dtype).eval()
        owl = Owlv2ForObjectDetection(ocfg).to(dtype).eval()
        sam = SamModel(scfg).to(dtype).eval()
    dproc = DPTImageProcessorPil(size={"height": dsize, "width": dsize}, keep_aspect_ratio=True,
                                 ensure_multiple_of=14, resample=3,
                                 image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    oproc = Owlv2ImageProcessorPil(size={"height": osize, "width": osize})
    sproc = SamImageProcessorPil(size={"longest_edge": slong},
                                 pad_size={"height": slong, "width": slong})
    return (depth, dproc), (owl, oproc, clip_like_tokenizer()), (sam, sproc)


def image_processor_class(name: str):
    """The PIL image processor class (transformers >= 5 names it ...Pil), else the plain one."""
    import transformers

    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)


def clip_like_tokenizer():
    """A byte-level CLIP tokenizer with no merges (the text tower's cost does not depend on the
    vocabulary; its embeddings are computed once per name list anyway)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token="!", model_max_length=16)


def nparams(m) -> float:
    return round(sum(p.numel() for p in m.parameters()) / 1e6, 1)


# ------------------------------------------------------------------------------------------------
# Perception benchmark

def make_backend_variant(parts, device, dtype, graphs=False, det_size=None, depth_size=None,
                         compile=False, concurrent=True, overlap=False, lifting="numpy",
                         lifting_compile=False, lifting_threads=1):
    from spatialpin_ros.perception.models import (ModelBackend, OpenVocabDetector,
                                                  PromptableSegmenter, TransformersDepth)

    (dm, dp), (om, op, tok), (sm, sp) = parts
    depth = TransformersDepth(dm, processor=dp, device=device, dtype=dtype, cuda_graphs=graphs,
                              input_size=depth_size, compile=compile)
    det = OpenVocabDetector(om, processor=op, tokenizer=tok, device=device, dtype=dtype,
                            names=OBJECT_NAMES, max_detections=N_OBJECTS, box_threshold=0.0,
                            input_size=det_size, cuda_graphs=graphs, compile=compile)
    sam = PromptableSegmenter(sm, processor=sp, device=device, dtype=dtype, cuda_graphs=graphs,
                              compile=compile)

    class BenchBackend(ModelBackend):
        """Runs the models for real, then lifts the synthetic frame's true depth and masks
        (random weights' outputs are meaningless)."""
        gt_depth = None
        gt_seg = None
        gt_seg_dev = None         # the same masks on the device (the torch lifting's input)
        gt_bounds = None

        def finish_depth(self, dh, frame):
            super().finish_depth(dh, frame)             # the real host work, then the truth
            return self.gt_depth

        def finish_segmentation(self, host):
            super().finish_segmentation(host)
            # what the segmenter reports with a frame's masks: their common bounds
            self._last_seg = self.gt_seg_dev if self.torch_lifting else self.gt_seg
            self.segmenter.last["bounds"] = self.gt_bounds
            return self._last_seg

    return BenchBackend(depth_model=depth, detector_model=det, segmenter_model=sam,
                        object_names=OBJECT_NAMES, device=device, dtype=dtype,
                        cuda_graphs=graphs, compile=compile, concurrent=concurrent,
                        overlap_lifting=overlap, lifting=lifting,
                        lifting_compile=lifting_compile, lifting_threads=lifting_threads)


def bench_perception(parts, device, dtype, frame, gt_depth, gt_seg, iters, warmup, variants,
                     hang_s=0, partial=None):
    from spatialpin_ros.perception.model_utils import to_host, upload_image

    cuda = device.type == "cuda"
    results = {}
    gt_frame = dataclasses.replace(frame, depth=gt_depth)
    for name, kw in variants:
        print(f"[perception] variant {name} ...", flush=True)
        if hang_s:
            faulthandler.dump_traceback_later(hang_s, exit=True)
        t_build = time.perf_counter()
        try:
            b = make_backend_variant(parts, device, dtype, **kw)
        except Exception as e:  # noqa: BLE001
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
            continue
        b.gt_depth, b.gt_seg = gt_depth, gt_seg
        b.gt_seg_dev = Segmentation(masks=[torch.from_numpy(m).to(device) for m in gt_seg.masks],
                                    names=list(gt_seg.names), scores=list(gt_seg.scores))
        lift_seg = b.gt_seg_dev if b.torch_lifting else gt_seg
        anym = np.any(gt_seg.masks, axis=0)
        r, c = np.flatnonzero(anym.any(axis=1)), np.flatnonzero(anym.any(axis=0))
        b.gt_bounds = (int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1)
        rgb = frame.rgb
        stage = {k: [] for k in ("upload", "depth", "detection", "segmentation", "d2h",
                                 "gpu_sequential", "lift", "sequential_total")}
        e2e, e2e_models, e2e_lift = [], [], []
        e2e_parts: dict = {}
        try:
            with torch.inference_mode():
                for it in range(warmup + iters):
                    # per stage, one stream, CUDA events
                    if cuda:
                        ev = [torch.cuda.Event(enable_timing=True) for _ in range(6)]
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    if cuda:
                        ev[0].record()
                    img = upload_image(rgb, device)
                    if cuda:
                        ev[1].record()
                    d = b.depth_estimator.estimate_gpu(img)
                    if cuda:
                        ev[2].record()
                    boxes, scores, labels, valid = b.detector.detect_gpu(img)
                    if cuda:
                        ev[3].record()
                    masks, iou = b.sam.segment_gpu(img, boxes)
                    if cuda:
                        ev[4].record()
                    to_host([d, masks, scores, labels, valid, iou])
                    if cuda:
                        ev[5].record()
                        torch.cuda.synchronize()
                    t1 = time.perf_counter()
                    b._last_seg, b.segmenter.last["bounds"] = lift_seg, b.gt_bounds
                    b.lift(gt_frame, lift_seg)
                    if cuda:
                        torch.cuda.synchronize()
                    t2 = time.perf_counter()
                    # end to end: the backend's own perceive on the RGB-only frame
                    if cuda:
                        torch.cuda.synchronize()
                    t3 = time.perf_counter()
                    scene = b.perceive(frame)
                    t4 = time.perf_counter()
                    if it < warmup:
                        continue
                    if cuda:
                        for k, (a, c) in zip(("upload", "depth", "detection", "segmentation",
                                              "d2h"), zip(ev[:-1], ev[1:])):
                            stage[k].append(a.elapsed_time(c))
                        stage["gpu_sequential"].append(ev[0].elapsed_time(ev[5]))
                    else:
                        stage["gpu_sequential"].append(1000 * (t1 - t0))
                    stage["lift"].append(1000 * (t2 - t1))
                    stage["sequential_total"].append(1000 * (t2 - t0))
                    e2e.append(1000 * (t4 - t3))
                    e2e_models.append(b.last["model_timing_ms"]["models"])
                    e2e_lift.append(b.last["model_timing_ms"]["lift"])
                    for k, v in b.last["model_timing_ms"].items():
                        e2e_parts.setdefault(k, []).append(v)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        results[name] = {
            "settings": {k: v for k, v in kw.items()},
            "detector_input": b.detector.input_size,
            "graphs_active": {"depth": b.depth_estimator._graphed.enabled,
                              "detect+segment": b.segmenter._graphed.enabled},
            "stages_ms": {k: stats(v) for k, v in stage.items() if v},
            "end_to_end_ms": stats(e2e),
            "end_to_end_models_ms": stats(e2e_models),
            "end_to_end_lift_ms": stats(e2e_lift),
            "end_to_end_parts_ms": {k: stats(v) for k, v in e2e_parts.items()},
            "overlapped": bool(b.last.get("overlapped")),
            "lifting": b.last.get("lifting"),
            "lifting_graphs": [f.enabled for f in b._torch_lift._fns.values()],
            "lifting_compile_failed": [getattr(f.fn, "failed", None)
                                       for f in b._torch_lift._fns.values()],
            "objects_summary": [(o.label, o.shape, [round(float(x), 4) for x in o.size])
                                for o in scene.objects],
            "objects": len(scene.objects),
            "build_and_run_s": round(time.perf_counter() - t_build, 1),
        }
        print(json.dumps(results[name]["end_to_end_ms"]), flush=True)
        faulthandler.cancel_dump_traceback_later()
        if partial:
            Path(partial).write_text(json.dumps(results, indent=2) + "\n")
        del b
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return results


def profile_stages(parts, device, dtype, frame, path):
    """torch.profiler tables (top CUDA kernels) of each stage, eager."""
    from torch.profiler import ProfilerActivity, profile

    from spatialpin_ros.perception.model_utils import upload_image

    b = make_backend_variant(parts, device, dtype)
    img = upload_image(frame.rgb, device)
    stages = {"depth": lambda: b.depth_estimator.estimate_gpu(img),
              "detection": lambda: b.detector.detect_gpu(img)}
    boxes = b.detector.detect_gpu(img)[0].clone()
    stages["segmentation"] = lambda: b.sam.segment_gpu(img, boxes)
    lines = []
    with torch.inference_mode():
        for name, fn in stages.items():
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                fn()
                torch.cuda.synchronize()
            lines.append(f"=== {name}\n" + prof.key_averages().table(
                sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
    Path(path).write_text("\n".join(lines))
    print(f"profile written to {path}", flush=True)


# ------------------------------------------------------------------------------------------------
# VLM benchmark

SYSTEM = ("You are a spatial reasoning assistant for a robot. You are given an image of a "
          "tabletop and 3D priors of the objects in it (metres, world frame: x away from the "
          "robot, y to its left, z up). Answer the question precisely and briefly.")


def spatialpin_prompt(n_lines: int) -> str:
    lines = ["Scene priors:"]
    for i in range(n_lines):
        lines.append(f"Object obj_{i}: {OBJECT_NAMES[i % len(OBJECT_NAMES)]}, center "
                     f"({0.4 + 0.01 * i:.3f}, {-0.2 + 0.013 * i:.3f}, {0.03 + 0.002 * i:.3f}), size "
                     f"({0.05:.3f}, {0.04:.3f}, {0.06:.3f}), yaw {10 + i} deg, local axes: front, "
                     f"left, up; support: table.")
    lines.append("Question: Is the red box closer to the robot than the blue box, and how far "
                 "apart are their centers? Think step by step about the coordinates, then answer.")
    return "\n".join(lines)


def vlm_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000,
                                  special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([SYSTEM, spatialpin_prompt(40)] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   extra_special_tokens={"image_token": "<image>"},
                                   model_max_length=4096, padding_side="left")


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] | upper }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def measure_bandwidth(device, gib: float = 2.0) -> float:
    """Device-to-device copy bandwidth (TB/s, bytes read plus written), median of 20."""
    n = int(gib * 2 ** 30) // 2
    a = torch.randn(n, device=device, dtype=torch.float16)
    b = torch.empty_like(a)
    times = []
    for _ in range(25):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        b.copy_(a)
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    ms = float(np.median(times[5:]))
    del a, b
    return round(2 * n * 2 / (ms * 1e-3) / 1e12, 2)


def build_llava(size: str, device, dtype, target_prompt_tokens: int = 600) -> dict:
    """The LLaVA-1.5-7B-size model (random weights; ``size="tiny"``: a tiny one), its processor
    and the SpatialPIN-style prompt: a dict with model, processor, config, prompt, text_tokens,
    image_tokens, lm_params and build_s."""
    from transformers import (CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    import transformers

    # what AutoProcessor gives: the torchvision image processor where torchvision is installed
    # (transformers >= 5), else the PIL one
    CLIPImageProcessorAny = transformers.CLIPImageProcessor

    tok = vlm_tokenizer()
    real = size == "real"
    img_size, patch = (336, 14) if real else (32, 8)
    vision = (CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                               num_attention_heads=16, image_size=336, patch_size=14,
                               projection_dim=768) if real else
              CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, image_size=32, patch_size=8))
    text = (LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                        max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            if real else
            LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                        max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-2,
                         projector_hidden_act="gelu")
    t0 = time.perf_counter()
    old = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)
        with torch.device(device):
            model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(old)
    model = model.to(device=device, dtype=dtype)
    build_s = time.perf_counter() - t0
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=None,
                                               pad_token_id=tok.pad_token_id, do_sample=False)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorAny(size={"shortest_edge": img_size},
                                              crop_size={"height": img_size, "width": img_size},
                                              do_center_crop=True),
        tokenizer=tok, patch_size=patch, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE, image_token="<image>")
    # a prompt of ~target_prompt_tokens text tokens
    n = 4
    while True:
        prompt = spatialpin_prompt(n)
        k = len(tok(SYSTEM + "\n" + prompt)["input_ids"])
        if k >= target_prompt_tokens or n > 400:
            break
        n += 1
    lm_params = sum(p.numel() for name, p in model.named_parameters()
                    if "vision_tower" not in name and "multi_modal_projector" not in name)
    return {"model": model, "processor": processor, "config": config, "prompt": prompt,
            "text_tokens": k, "image_tokens": (img_size // patch) ** 2, "lm_params": lm_params,
            "build_s": build_s}


def _vision_graphs(vlm) -> dict:
    """How many vision-tower CUDA graphs the static decoder captured (and a capture error)."""
    v = getattr(getattr(vlm, "_decoder", None), "_vision", None)
    return {} if v is None else {"captured": len(v._graphs), "failed": v.failed}


def _med(st) -> str:
    """A stats dict's median / p90 as a table cell ("-" without one)."""
    return f"{st['median']:.1f} / {st['p90']:.1f}" if st else "-"


def bench_vlm(size: str, device, dtype, image: np.ndarray, runs: int, new_tokens: int,
              target_prompt_tokens: int = 600, modes=("generate", "graphs")):
    from spatialpin_ros.vlm.transformers_client import TransformersVLM

    b = build_llava(size, device, dtype, target_prompt_tokens)
    model, processor, config, prompt = b["model"], b["processor"], b["config"], b["prompt"]
    lm_params = b["lm_params"]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {"params_B": round(sum(p.numel() for p in model.parameters()) / 1e9, 2),
           "decoder_params_B": round(lm_params / 1e9, 2),
           "build_s": round(b["build_s"], 1), "text_tokens": b["text_tokens"],
           "image_tokens": b["image_tokens"], "new_tokens": new_tokens,
           "image_processor": type(processor.image_processor).__name__, "variants": {}}
    for mode in modes:
        # the repository's backend, around the model built here (no save/load round trip)
        vlm = TransformersVLM.from_loaded(model, processor, "llava-1.5-7b-size-random",
                                          decode=mode)
        ttft, decode, decode_inner, prefill, encode, other = [], [], [], [], [], []
        n_in, texts = None, set()
        t_mode = time.perf_counter()
        try:
            for it in range(runs + 1):
                sync()
                r1 = vlm.generate(SYSTEM, prompt, [image], max_tokens=1)
                first = dict(vlm.last)
                sync()
                rn = vlm.generate(SYSTEM, prompt, [image], max_tokens=new_tokens)
                sync()
                if it == 0:
                    continue                                   # warm-up (and graph capture)
                n_in = r1.prompt_tokens
                texts.add(rn.text)
                ttft.append(1000 * r1.latency_s)
                gen = rn.completion_tokens
                dt = rn.latency_s - r1.latency_s
                decode.append((gen - 1) / dt if dt > 0 and gen > 1 else float("nan"))
                if "prefill_s" in vlm.last:
                    prefill.append(1000 * vlm.last["prefill_s"])
                    decode_inner.append(vlm.last["tokens_per_s"])
                if "encode_s" in first:     # the 1-token reply's parts: processor, the rest
                    encode.append(1000 * first["encode_s"])
                    if "prefill_s" in first:
                        other.append(1000 * (r1.latency_s - first["encode_s"]
                                             - first["prefill_s"]))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            out["variants"][mode] = {"error": f"{type(e).__name__}: {e}"}
            continue
        out["prompt_tokens_total"] = n_in
        out["variants"][mode] = {
            "ttft_ms": stats(ttft), "decode_tokens_per_s": stats(decode),
            "prefill_ms": stats(prefill) if prefill else None,
            # of the TTFT: the processor on the host, and what is neither it nor the prefill
            "ttft_encode_ms": stats(encode) if encode else None,
            "ttft_other_ms": stats(other) if other else None,
            "decode_loop_tokens_per_s": stats(decode_inner) if decode_inner else None,
            "completion_tokens": rn.completion_tokens, "mode_ran": vlm.last.get("mode"),
            "notes": vlm.last.get("notes"), "same_text_every_run": len(texts) == 1,
            "vision_graphs": _vision_graphs(vlm),
            "image_on_device": getattr(vlm, "image_on_device", None),
            "seconds": round(time.perf_counter() - t_mode, 1)}
        print(json.dumps({mode: out["variants"][mode]}), flush=True)
    # the memory-bandwidth limit of one decode step: every decoder weight read once, plus the
    # KV cache up to the answer's middle
    cfg = config.text_config
    ctx = (n_in or 0) + new_tokens // 2
    kv_bytes = 2 * cfg.num_hidden_layers * ctx * cfg.num_key_value_heads * (
        cfg.hidden_size // cfg.num_attention_heads) * torch.finfo(dtype).bits // 8
    step_bytes = lm_params * torch.finfo(dtype).bits // 8 + kv_bytes
    bw = measure_bandwidth(device) if device.type == "cuda" else None
    out["bandwidth"] = {"step_GB": round(step_bytes / 1e9, 2), "kv_GB": round(kv_bytes / 1e9, 3),
                        "measured_copy_TBps": bw, "datasheet_TBps": 4.8}
    if bw:
        out["bandwidth"]["limit_tokens_per_s_measured"] = round(bw * 1e12 / step_bytes, 1)
        out["bandwidth"]["limit_tokens_per_s_datasheet"] = round(4.8e12 / step_bytes, 1)
    del vlm, model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("real", "tiny"), default="real",
                    help="real-size configs (GPU) or tiny ones (a CPU dry run of the script)")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--compile", action="store_true", help="also time a torch.compile variant")
    ap.add_argument("--no-vlm", action="store_true")
    ap.add_argument("--no-perception", action="store_true", help="the VLM part alone")
    ap.add_argument("--vlm-runs", type=int, default=5)
    ap.add_argument("--vlm-new-tokens", type=int, default=128)
    ap.add_argument("--vlm-modes", default="generate,graphs,compile",
                    help="TransformersVLM decode modes to time (generate, graphs, compile, eager)")
    ap.add_argument("--cv2-threads", type=int, default=None,
                    help="cv2.setNumThreads for the host lifting (default: OpenCV's own)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--variants", default=None, help="comma-separated indices of the variants "
                    "to run (0 eager sequential, 1 graphs sequential, 2 eager overlapped, "
                    "3 graphs overlapped, 4 + depth 364 px, 5 + detector 768 px; with the torch "
                    "lifting: 6 graphs sequential, 7 graphs overlapped, 8 + depth 364 px and "
                    "detector 768 px, 9 eager overlapped; 10 and 11: 7 and 8 with the "
                    "lifting's device half torch.compile'd, 12: 11 with the top faces on 4 "
                    "threads; --compile appends the models' torch.compile variant)")
    ap.add_argument("--hang-s", type=float, default=0,
                    help="dump every thread's stack and exit when a variant takes longer")
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="write the top CUDA kernels of each eager stage to FILE")
    args = ap.parse_args(argv)

    import transformers

    from spatialpin_ros.perception.model_utils import pick_device, pick_dtype

    if args.cv2_threads is not None:
        import cv2

        cv2.setNumThreads(args.cv2_threads)
    device = pick_device("auto")
    dtype = pick_dtype(args.dtype, device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "device": str(device),
           "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else "none (CPU)",
           "cuda": torch.version.cuda, "dtype": str(dtype).replace("torch.", ""),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "cv2_threads": __import__("cv2").getNumThreads(),
           "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    print(json.dumps(env), flush=True)

    frame, gt_depth, gt_seg = synth_frame()
    t = time.perf_counter()
    parts = build_perception_models(args.size, device, dtype)
    built = {"depth_M": nparams(parts[0][0]), "detector_M": nparams(parts[1][0]),
             "sam_M": nparams(parts[2][0]), "build_s": round(time.perf_counter() - t, 1)}
    print(json.dumps(built), flush=True)
    small = args.size != "real"
    variants = [("eager fp16, sequential", dict()),
                ("CUDA graphs, sequential (one frame graph)", dict(graphs=True)),
                ("eager fp16, overlapped lifting", dict(overlap=True)),
                ("CUDA graphs, overlapped lifting", dict(graphs=True, overlap=True)),
                ("CUDA graphs, overlapped, depth 364 px",
                 dict(graphs=True, overlap=True, depth_size=42 if small else 364)),
                ("CUDA graphs, overlapped, depth 364 px, detector 768 px",
                 dict(graphs=True, overlap=True, depth_size=42 if small else 364,
                      det_size=48 if small else 768)),
                ("CUDA graphs, sequential, torch lifting", dict(graphs=True, lifting="torch")),
                ("CUDA graphs, overlapped, torch lifting",
                 dict(graphs=True, overlap=True, lifting="torch")),
                ("CUDA graphs, overlapped, torch lifting, depth 364 px, detector 768 px",
                 dict(graphs=True, overlap=True, lifting="torch",
                      depth_size=42 if small else 364, det_size=48 if small else 768)),
                ("eager fp16, overlapped, torch lifting", dict(overlap=True, lifting="torch")),
                ("CUDA graphs, overlapped, torch lifting, compiled",
                 dict(graphs=True, overlap=True, lifting="torch", lifting_compile=True)),
                ("CUDA graphs, overlapped, torch lifting compiled, depth 364 px, detector 768 px",
                 dict(graphs=True, overlap=True, lifting="torch", lifting_compile=True,
                      depth_size=42 if small else 364, det_size=48 if small else 768)),
                ("as 11, top faces on 4 threads (lifting_threads 4)",
                 dict(graphs=True, overlap=True, lifting="torch", lifting_compile=True,
                      lifting_threads=4, depth_size=42 if small else 364,
                      det_size=48 if small else 768))]
    if args.compile:
        variants.append(("torch.compile + CUDA graphs", dict(graphs=True, compile=True)))
    if args.variants:
        keep = [int(i) for i in args.variants.split(",")]
        variants = [variants[i] for i in keep]
    path = Path(args.out) if args.out else (
        Path(os.environ["OUT"]) / "gpu_perception.json" if os.environ.get("OUT")
        else ROOT / "benchmarks" / "results" / "gpu_perception.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    perc = {} if args.no_perception else bench_perception(
        parts, device, dtype, frame, gt_depth, gt_seg, args.iters, args.warmup, variants,
        args.hang_s, partial=path.with_suffix(".partial.json"))
    if args.profile and device.type == "cuda":
        try:
            profile_stages(parts, device, dtype, frame, args.profile)
        except Exception:  # noqa: BLE001 - the profile is optional
            traceback.print_exc()
    del parts
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    vlm = None
    if not args.no_vlm:
        try:
            vlm = bench_vlm(args.size, device, dtype, frame.rgb, args.vlm_runs,
                            args.vlm_new_tokens, modes=tuple(args.vlm_modes.split(",")))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            vlm = {"error": f"{type(e).__name__}: {e}"}

    out = {"env": env, "models": built, "size": args.size, "iters": args.iters,
           "objects_in_frame": len(gt_seg), "queries": len(OBJECT_NAMES),
           "target_ms": TARGET_MS, "perception": perc, "vlm": vlm}
    path.write_text(json.dumps(out, indent=2) + "\n")
    path.with_suffix(".partial.json").unlink(missing_ok=True)

    print(f"\n### Models backend, RGB-only 640x480 frame -> ScenePriors ({env['gpu']}, "
          f"{env['dtype']}, torch {env['torch']}, transformers {env['transformers']}; "
          f"{args.iters} iterations, median / p90 ms)\n")
    cols = ["depth", "detection", "segmentation", "d2h", "gpu_sequential", "lift"]
    print("| variant | " + " | ".join(cols) + " | end-to-end perceive | target <= 25 / p90 <= 30 |")
    print("|---" * (len(cols) + 3) + "|")
    for name, r in perc.items():
        if "error" in r:
            print(f"| {name} | error: {r['error'][:80]} |")
            continue
        st = r["stages_ms"]
        cells = [f"{st[c]['median']:.1f} / {st[c]['p90']:.1f}" if c in st else "-" for c in cols]
        e = r["end_to_end_ms"]
        ok = "yes" if e["median"] <= TARGET_MS and e["p90"] <= TARGET_P90_MS else "no"
        print(f"| {name} | " + " | ".join(cells) + f" | {e['median']:.1f} / {e['p90']:.1f} | "
              f"{ok} |")
    if vlm:
        print(f"\n### Transformers VLM backend, LLaVA-1.5-7B-size, {env['dtype']} ({env['gpu']})\n")
        if "error" in vlm:
            print(f"error: {vlm['error']}")
        else:
            bw = vlm.get("bandwidth", {})
            print(f"prompt {vlm.get('prompt_tokens_total')} tokens ({vlm['text_tokens']} text + "
                  f"{vlm['image_tokens']} image), {vlm['new_tokens']} new; decode step reads "
                  f"{bw.get('step_GB')} GB; copy bandwidth {bw.get('measured_copy_TBps')} TB/s -> "
                  f"limit {bw.get('limit_tokens_per_s_measured')} tokens/s (datasheet 4.8 TB/s: "
                  f"{bw.get('limit_tokens_per_s_datasheet')})\n")
            print("| decode | TTFT median / p90 ms | decode tok/s median / p90 | prefill ms | "
                  "processor ms | rest of TTFT ms |")
            print("|---|---|---|---|---|---|")
            for mode, r in vlm["variants"].items():
                if "error" in r:
                    print(f"| {mode} | error: {r['error'][:80]} |")
                    continue
                pre = r["prefill_ms"]["median"] if r.get("prefill_ms") else float("nan")
                print(f"| {mode} | {r['ttft_ms']['median']:.1f} / {r['ttft_ms']['p90']:.1f} | "
                      f"{r['decode_tokens_per_s']['median']:.1f} / "
                      f"{r['decode_tokens_per_s']['p90']:.1f} | {pre:.1f} | "
                      f"{_med(r.get('ttft_encode_ms'))} | {_med(r.get('ttft_other_ms'))} |")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
