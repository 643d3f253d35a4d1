"""Where the in-process VLM's time to first token goes (issue 14): the LLaVA-1.5-7B-size model
of ``bench_gpu_perception.py`` (random weights, the same 1,245-token prompt), one reply of one
token through ``TransformersVLM.generate``, split into its parts, each timed alone (median of
``--runs``, milliseconds):

* ``encode``: the image to PIL and the processor (chat template, tokenizer, image processor)
  with the tensors on the GPU (``TransformersVLM._encode``), host wall time with a sync;
* ``vision``: the vision tower and projector alone (``get_image_features``), CUDA events;
* ``prefill_static`` / ``prefill_dynamic``: ``StaticDecoder._prefill`` over the static cache or
  a dynamic one copied into it, CUDA events and wall; the same with Python's collector off;
* ``ttft``: the whole 1-token reply for each decode mode and prefill, as the benchmark times it.

    PYTHONPATH=spatialpin_ros python3 benchmarks/profile_vlm_ttft.py --runs 7 --out x.json
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "spatialpin_ros"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_gpu_perception import SYSTEM, build_llava, stats, synth_frame  # noqa: E402


def timed(fn, runs: int, cuda: bool):
    """(wall ms list, event ms list) of ``runs`` calls after one warm-up."""
    fn()
    wall, ev = [], []
    for _ in range(runs):
        if cuda:
            torch.cuda.synchronize()
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
        t = time.perf_counter()
        fn()
        if cuda:
            e1.record()
            torch.cuda.synchronize()
            ev.append(e0.elapsed_time(e1))
        wall.append(1000 * (time.perf_counter() - t))
    return wall, ev


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("real", "tiny"), default="real")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--modes", default="graphs,compile")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from PIL import Image

    from spatialpin_ros.vlm.static_decode import StaticDecoder
    from spatialpin_ros.vlm.transformers_client import TransformersVLM

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    b = build_llava(args.size, device, dtype)
    model, processor, prompt = b["model"], b["processor"], b["prompt"]
    image = synth_frame()[0].rgb
    res: dict = {"gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
                 "torch": torch.__version__, "sdpa_flash": torch.backends.cuda.flash_sdp_enabled()}
    import transformers
    res["transformers"] = transformers.__version__
    runs = args.runs

    def show(name, wall, ev=None):
        res[name] = {"wall": stats(wall), "gpu": stats(ev) if ev else None}
        print(name, json.dumps(res[name]), flush=True)

    vlm = TransformersVLM.from_loaded(model, processor, "llava-7b-size", decode="graphs")
    inputs = vlm._encode(SYSTEM, prompt, [Image.fromarray(image)])
    res["prompt_tokens"] = int(inputs["input_ids"].shape[1])
    show("encode", *timed(lambda: vlm._encode(SYSTEM, prompt, [Image.fromarray(image)]), runs,
                          cuda))
    show("pil", *timed(lambda: Image.fromarray(image), runs, False))
    ip = processor.image_processor
    show("image_processor_cpu", *timed(lambda: ip(images=[Image.fromarray(image)],
                                                  return_tensors="pt"), runs, False))
    if cuda:
        try:
            show("image_processor_cuda", *timed(lambda: ip(images=[Image.fromarray(image)],
                                                           return_tensors="pt", device="cuda"),
                                                runs, cuda))
            a = ip(images=[Image.fromarray(image)], return_tensors="pt")["pixel_values"]
            g = ip(images=[Image.fromarray(image)], return_tensors="pt",
                   device="cuda")["pixel_values"].cpu()
            res["image_processor_cuda_maxdiff"] = float((a - g).abs().max())
        except Exception as e:  # noqa: BLE001
            res["image_processor_cuda"] = f"{type(e).__name__}: {e}"
    tok = processor.tokenizer
    text = processor.apply_chat_template(
        [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
         {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
        add_generation_prompt=True, tokenize=False)
    show("chat_template_text", *timed(lambda: processor.apply_chat_template(
        [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
         {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
        add_generation_prompt=True, tokenize=False), runs, False))
    show("tokenizer", *timed(lambda: tok(text), runs, False))
    with torch.inference_mode():
        pv = inputs["pixel_values"]
        fn = getattr(model, "get_image_features", None) or model.model.get_image_features
        show("vision", *timed(lambda: fn(pixel_values=pv, vision_feature_layer=-2,
                                         vision_feature_select_strategy="default"), runs, cuda))
    for mode in args.modes.split(","):
        for prefill in ("static", "dynamic"):
            dec = StaticDecoder(model, mode=mode, prefill=prefill)
            vlm._decoder, vlm.decode = dec, mode
            # warm: compile and capture (a 2-token reply), then the prefill alone
            vlm.generate(SYSTEM, prompt, [image], max_tokens=2)
            n = res["prompt_tokens"]

            def pre():
                with torch.inference_mode():
                    dec._ensure_cache(n + 200)
                    dec._prefill(inputs, n)
            show(f"{mode}_{prefill}_prefill", *timed(pre, runs, cuda))
            gc.disable()
            try:
                show(f"{mode}_{prefill}_prefill_nogc", *timed(pre, runs, cuda))
            finally:
                gc.enable()
            # the benchmark's TTFT: a 1-token reply, processor included; the image processor
            # on the host and on the GPU; Python's collector frozen after a full collection
            for on_dev in (False, True):
                vlm.image_on_device = on_dev
                tag = f"{mode}_{prefill}_img{'gpu' if on_dev else 'cpu'}"
                show(f"{tag}_ttft", *timed(
                    lambda: vlm.generate(SYSTEM, prompt, [image], max_tokens=1), runs, cuda))
                res[f"{tag}_prefill_ms"] = 1000 * vlm.last.get("prefill_s", float("nan"))
                r = vlm.generate(SYSTEM, prompt, [image], max_tokens=24)
                res[f"{tag}_text24"] = r.text
                print(f"{tag} last: {json.dumps(vlm.last)}", flush=True)
            gc.collect()
            gc.freeze()
            show(f"{mode}_{prefill}_imggpu_gcfreeze_ttft", *timed(
                lambda: vlm.generate(SYSTEM, prompt, [image], max_tokens=1), runs, cuda))
            gc.unfreeze()
            vlm.image_on_device = False
            del dec
            vlm._decoder = None
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    print("\n| part | wall median ms | GPU median ms |\n| --- | --- | --- |")
    for k, v in res.items():
        if isinstance(v, dict) and "wall" in v:
            g = v["gpu"]["median"] if v.get("gpu") else "-"
            print(f"| {k} | {v['wall']['median']} | {g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
