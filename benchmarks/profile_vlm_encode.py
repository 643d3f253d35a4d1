"""Where the in-process VLM's processor time goes (issue 14): the TTFT's host part before the
prefill (``TransformersVLM._encode``: the image to PIL, the chat template, the tokenizer, the image
processor, the tensors to the GPU), each part timed alone, medians / p90 of ``--runs`` calls,
milliseconds, in several settings of torch's intra-op threads. The processor is the
LLaVA-1.5-7B-size one of ``bench_gpu_perception.py`` (336 px CLIP, the 1,245-token prompt).

    PYTHONPATH=spatialpin_ros python3 benchmarks/profile_vlm_encode.py --runs 30 --out x.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "spatialpin_ros"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_gpu_perception import (CHAT_TEMPLATE, SYSTEM, spatialpin_prompt, stats,  # noqa: E402
                                  vlm_tokenizer)


def build(image_size: int = 336):
    import transformers
    from transformers import LlavaProcessor

    tok = vlm_tokenizer()
    proc = LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size}, do_center_crop=True),
        tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE, image_token="<image>")
    n = 4
    while len(tok(SYSTEM + "\n" + spatialpin_prompt(n))["input_ids"]) < 600 and n < 400:
        n += 1
    return proc, tok, spatialpin_prompt(n)


def parts(proc, tok, prompt, img, device, sync):
    """One encode, split: (template, tokenizer, image processor, apply_chat_template, to device)
    in milliseconds."""
    from PIL import Image

    pil = Image.fromarray(img)
    msgs = [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
            {"role": "user", "content": [{"type": "image", "image": pil},
                                         {"type": "text", "text": prompt}]}]
    t = [time.perf_counter()]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    t.append(time.perf_counter())
    tok(text, return_tensors="pt")
    t.append(time.perf_counter())
    proc.image_processor(pil, return_tensors="pt")
    t.append(time.perf_counter())
    inputs = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                      return_dict=True, return_tensors="pt")
    t.append(time.perf_counter())
    sync()
    t0 = time.perf_counter()                       # the copy's own time, after a sync
    inputs = inputs.to(device)
    sync()
    copy = time.perf_counter() - t0
    return [1000 * (b - a) for a, b in zip(t[:-1], t[1:])] + [1000 * copy]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", default="0,1,4", help="torch intra-op threads to try (0: as is)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    proc, tok, prompt = build()
    img = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    default = torch.get_num_threads()
    names = ("template", "tokenizer", "image_processor", "apply_chat_template", "to_device")
    out = {"device": str(device), "gpu": torch.cuda.get_device_name() if device.type == "cuda"
           else None, "default_threads": default,
           "image_processor": type(proc.image_processor).__name__, "settings": {}}
    for n in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(n or default)
        for _ in range(3):
            parts(proc, tok, prompt, img, device, sync)
        rows = [parts(proc, tok, prompt, img, device, sync) for _ in range(args.runs)]
        out["settings"][f"threads={n or default}"] = {
            k: stats([r[i] for r in rows]) for i, k in enumerate(names)}
    torch.set_num_threads(default)
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
