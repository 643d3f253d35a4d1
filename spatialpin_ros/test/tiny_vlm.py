"""Build a tiny, randomly initialised image-text-to-text model fully offline (a test helper).

The model is a LLaVA: a 2-layer CLIP vision tower (32x32 px input, 8 px patches, so 16 image
tokens) feeding a 2-layer Llama of hidden size 32, with a byte-level BPE tokenizer trained here
on a few sentences. It answers gibberish, but it goes through exactly the code paths of a real
VLM: ``AutoProcessor`` (tokenizer + image processor + chat template), ``AutoModelForImageTextToText``
and ``transformers serve``. Nothing is downloaded from the Hugging Face hub.

``build_fixed_reply_vlm`` builds the same model with a few weights set by hand so that its greedy
output is one given string (an "oracle" VLM for end-to-end tests of code that parses replies), and
``serve_models`` runs ``transformers serve`` on 127.0.0.1 for the OpenAI-compatible client.

This is not a test module (pytest does not collect it); tests import from it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN]
IMAGE_SIZE = 32  # pixels (square, after resizing and cropping)
PATCH_SIZE = 8  # pixels

# A LLaVA-style template that reads both string and list-of-parts contents (what the processor,
# `transformers serve` and the chat-completions format all hand it).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] | upper }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

_CORPUS = [
    "Is the red block to the left of the blue cup?",
    "Yes, the red block is left of the blue cup.",
    "No. The green sphere is behind the yellow box.",
    "How far is the mug from the bowl in metres? About 0.25 m.",
    "Which object is closest to the robot? The small cylinder on the table.",
    "You are a careful spatial reasoning assistant. Answer briefly.",
    "above below left right in front of behind near far on top under next to between",
    "SYSTEM USER ASSISTANT: 0 1 2 3 4 5 6 7 8 9 . , ; : ? ! ( ) [ ] { } \" ' - + = / *",
]


def _build_tokenizer(**kwargs):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknowns
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_max_length=512,
        padding_side="left",
        **kwargs,
    )


def build_tiny_vlm(path: str | Path, seed: int = 0) -> str:
    """Build the tiny LLaVA and ``save_pretrained`` model + processor into ``path``; return ``str(path)``.

    Deterministic for a given ``seed``. About 0.3 MB of float32 weights.
    """
    return _build(path, seed, reply=None)


def build_fixed_reply_vlm(path: str | Path, reply: str, seed: int = 0) -> str:
    """Build a tiny LLaVA whose greedy output is exactly ``reply`` (then EOS), whatever it is shown.

    Same architecture, processor and chat template as :func:`build_tiny_vlm`, randomly initialised
    (vision tower, projector, attention and MLP input weights), with these weights then set by hand:

    * ``reply`` is one ordinary (not special) added vocabulary token ``R``, so decoding with
      ``skip_special_tokens=True`` gives back the text exactly;
    * every decoder layer's ``o_proj`` and ``down_proj`` are zero, so each layer adds nothing to the
      residual stream: the hidden state at a position is the embedding of the token there, and the
      language model becomes a bigram model, logits = lm_head(RMSNorm(embed[last token]));
    * the embeddings are small random vectors plus a unit "signal" direction: e0 for every token
      but ``R``, e1 for ``R``; the (untied) lm_head is zero except row ``R`` = 10 e0 and row EOS
      = 10 e1.

    So after any prompt (the chat template ends with ``ASSISTANT:``) the argmax is ``R`` by a wide
    margin (about 55 against under 2), and after ``R`` it is EOS: the reply is ``reply`` exactly,
    in 2 generated tokens, through ``generate()`` of the real model, in-process or in
    ``transformers serve``.
    """
    if not reply or not isinstance(reply, str):
        raise ValueError("reply must be a non-empty string")
    return _build(path, seed, reply=reply)


def _build(path: str | Path, seed: int, reply: Optional[str]) -> str:
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fixed = reply is not None
    tokenizer = _build_tokenizer(clean_up_tokenization_spaces=False) if fixed else _build_tokenizer()
    if fixed:
        from tokenizers import AddedToken

        tokenizer.add_tokens([AddedToken(reply, special=False, normalized=False)])
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLIP [CLS] token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )

    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=not fixed,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=not fixed,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    if fixed:
        reply_id = tokenizer.convert_tokens_to_ids(reply)
        if tokenizer.decode([reply_id], skip_special_tokens=True) != reply:
            raise RuntimeError(f"the reply token does not decode back to {reply!r}")
        _wire_fixed_reply(model, reply_id, tokenizer.eos_token_id)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def _wire_fixed_reply(model, reply_id: int, eos_id: int) -> None:
    """Set the weights that make ``model`` a bigram model: anything -> reply, reply -> EOS."""
    import torch

    lm = model.model.language_model
    head = model.get_output_embeddings().weight
    emb = lm.embed_tokens.weight
    if head.data_ptr() == emb.data_ptr():
        raise RuntimeError("the lm_head must not be tied to the embeddings")
    with torch.no_grad():
        for layer in lm.layers:  # each layer becomes the identity on the residual stream
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb.mul_(0.01)  # keep a little of the random init
        emb[:, 0] += 1.0
        emb[reply_id, 0] -= 1.0
        emb[reply_id, 1] += 1.0
        head.zero_()
        head[reply_id, 0] = 10.0
        head[eos_id, 1] = 10.0


# ---------------------------------------------------------------------------------- `transformers serve`

SERVE_PACKAGES = ("fastapi", "uvicorn", "openai", "pydantic", "accelerate")


def serve_missing_packages() -> list[str]:
    """Packages ``transformers serve`` needs that are not installed (transformers[serving], and
    accelerate because serve loads with a device_map)."""
    return [m for m in SERVE_PACKAGES if importlib.util.find_spec(m) is None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _transformers_cli() -> list[str]:
    exe = Path(sys.executable).parent / "transformers"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())"]


@contextlib.contextmanager
def serve_models(workdir: str | Path, model: Optional[str] = None, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``transformers serve`` on a free 127.0.0.1 port, on the CPU, offline; yield its base URL
    (``http://127.0.0.1:PORT/v1``) once ``/health`` answers, and stop it on exit.

    ``model``: preload this model and pin the server to it (requests must name exactly it);
    ``None``: the server loads whichever local model directory a request names, on first use.
    Raises RuntimeError (with the end of the server's log) when it exits or is not healthy in time.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "hf_cache").mkdir(exist_ok=True)
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(workdir / "hf_cache"),
               TOKENIZERS_PARALLELISM="false")
    log_path = workdir / "serve.log"
    args = [*_transformers_cli(), "serve", *([model] if model else []), "--host", "127.0.0.1",
            "--port", str(port), "--device", "cpu"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`transformers serve` exited with code {proc.returncode}:\n{log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1.0) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"`transformers serve` not healthy after {timeout_s:.0f} s:\n{log_tail()}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


if __name__ == "__main__":  # python tiny_vlm.py OUT_DIR
    import sys

    print(build_tiny_vlm(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tiny_vlm"))
