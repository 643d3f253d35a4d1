"""A local Hugging Face image-text-to-text model, run in this process.

Loads ``AutoProcessor`` + ``AutoModelForImageTextToText`` once (from a hub id or a local
directory), renders the processor's chat template with the images and the text, generates and
decodes only the new tokens. Uses CUDA in bfloat16 (float16 where bf16 is unsupported) when there
is a GPU, else the CPU in float32 (with a warning: it is slow for real models).

``torch`` and ``transformers`` are imported when a model is built, not when this module is.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from typing import Any, Sequence

import numpy as np

from spatialpin_ros.vlm.base import VLMClient, VLMError, VLMReply, check_generate_args

log = logging.getLogger(__name__)

_DTYPES = ("auto", "float32", "float16", "bfloat16")
_DECODES = ("auto", "generate", "graphs", "compile", "eager")
#: Default torch intra-op threads for the processor (``TransformersVLM.encode_threads``).
ENCODE_THREADS = 4


@contextlib.contextmanager
def torch_threads(n: int):
    """Torch's intra-op threads at most ``n`` inside the block (``n`` 0: unchanged); the
    setting is restored after it."""
    import torch

    old = torch.get_num_threads()
    if n <= 0 or old <= n:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


_VLM_EXAMPLES = "LLaVA, Qwen2-VL / Qwen2.5-VL, SmolVLM, Idefics3, Gemma 3, PaliGemma"


def _looks_like_local_path(model: str) -> bool:
    """A name that can only be a filesystem path (hub ids are ``name`` or ``org/name``)."""
    return (os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") > 1
            or os.sep != "/" and os.sep in model)


class TransformersVLM(VLMClient):
    """A Hugging Face vision-language model (image-text-to-text) loaded into this process.

    Args:
        model: a Hugging Face hub id (e.g. ``"HuggingFaceTB/SmolVLM-256M-Instruct"``, read from the
            local cache or downloaded) or a local directory written by ``save_pretrained``.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
            ``"mps"``. A GPU device that is not available falls back to the CPU with a warning.
        dtype: ``"auto"`` (bfloat16/float16 on CUDA, float32 on CPU), ``"float32"``, ``"float16"``
            or ``"bfloat16"``.
        trust_remote_code: let transformers run model code shipped with the checkpoint.
        decode: how greedy replies are decoded: ``"auto"`` (``"graphs"`` on CUDA, else
            ``"generate"``), ``"generate"`` (transformers' ``generate``), or a
            :class:`~spatialpin_ros.vlm.static_decode.StaticDecoder` mode: ``"graphs"`` (static
            KV cache, CUDA-graph decode step), ``"compile"`` (torch.compile'd step) or
            ``"eager"``. Sampling (temperature > 0) always uses ``generate``.
        encode_threads: torch intra-op threads, at most, for the processor on the host (0:
            torch's own setting; see :attr:`encode_threads`).

    The model is loaded in the constructor and reused by every ``generate`` call; calls are
    serialised by a lock, so one instance may be shared between threads.

    Raises:
        VLMError (reason ``"load"``): the path does not exist, the id cannot be found, the
            checkpoint is not an image-text-to-text model, or loading failed (the message says what
            was tried).
        ValueError: ``dtype`` or ``device`` is not one of the accepted values.
    """

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False, decode: str = "auto",
                 encode_threads: int = ENCODE_THREADS) -> None:
        if not model or not isinstance(model, (str, os.PathLike)):
            raise ValueError(f"model must be a hub id or a local path, got {model!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self.model_id = os.fspath(model)
        self.trust_remote_code = bool(trust_remote_code)
        self.name = f"transformers:{self.model_id}"
        self._lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None
        self.device, self.dtype = self._pick_device_and_dtype(str(device), dtype)
        self._set_decode(decode)
        self.encode_threads = max(0, int(encode_threads))
        self._load()

    @classmethod
    def from_loaded(cls, model: Any, processor: Any, name: str, decode: str = "auto"
                    ) -> "TransformersVLM":
        """Wrap an already loaded model and processor (benchmarks, tests): no loading."""
        self = cls.__new__(cls)
        self.model_id, self.name, self.trust_remote_code = name, f"transformers:{name}", False
        self._lock = threading.Lock()
        self._model, self._processor = model, processor
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self._set_decode(decode)
        return self

    def _set_decode(self, decode: str) -> None:
        if decode not in _DECODES:
            raise ValueError(f"decode must be one of {_DECODES}, got {decode!r}")
        #: Run the image processor on the model's device (a CUDA device and a torchvision
        #: image processor, transformers' default where torchvision is installed): the image
        #: goes up as uint8 and is resized and normalised there. Off by default: on an H100 it
        #: saved ~1 ms (2.0 against 3.0 ms for a 640x480 image to 336 px) but its pixel values
        #: differ from the host's by up to 0.03 (normalised units), so a reply may differ.
        self.image_on_device: bool = False
        #: Torch intra-op threads for the processor on the host (at most; 0: torch's own
        #: setting). transformers' torchvision image processor on 16 threads took 9 ms median
        #: and 25 ms p90 for a 640x480 image on an H100 host, against 3.4 / 4.1 ms on 4 threads
        #: (BENCHMARKS.md, 2026-12-07): the time to first token moved with it. Torch's setting
        #: is process-wide, so for the few milliseconds of the processor other torch work on
        #: the host of this process runs on these threads too.
        self.encode_threads: int = ENCODE_THREADS
        if decode == "auto":
            decode = "graphs" if getattr(self.device, "type", "") == "cuda" else "generate"
        self.decode = decode
        self._decoder: Any = None
        #: The last reply's decoding: mode, prefill (time to first token) and decode seconds.
        self.last: dict = {}

    def __repr__(self) -> str:
        return (f"TransformersVLM(model={self.model_id!r}, device={str(self.device)!r}, "
                f"dtype={str(self.dtype).replace('torch.', '')!r})")

    # ------------------------------------------------------------------ loading

    @staticmethod
    def _pick_device_and_dtype(device: str, dtype: str):
        import torch

        want = device.strip().lower()
        if want == "auto" or want.startswith("cuda"):
            if torch.cuda.is_available():
                dev = torch.device("cuda" if want == "auto" else want)
            else:
                log.warning("no CUDA device available (device=%r): running the VLM on the CPU in float32; "
                            "this is slow for real models", device)
                dev = torch.device("cpu")
        elif want == "mps":
            if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                dev = torch.device("mps")
            else:
                log.warning("MPS is not available: running the VLM on the CPU in float32")
                dev = torch.device("cpu")
        elif want == "cpu":
            dev = torch.device("cpu")
        else:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")

        if dtype != "auto":
            torch_dtype = getattr(torch, dtype)
        elif dev.type == "cuda":
            torch_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif dev.type == "mps":
            torch_dtype = torch.float16
        else:
            torch_dtype = torch.float32
        return dev, torch_dtype

    def _load(self) -> None:
        try:
            import transformers  # noqa: F401  (import errors are load errors too)
            from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
            from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        except ImportError as e:
            raise VLMError(f"cannot load VLM {self.model_id!r}: transformers is not importable ({e})",
                           reason="load") from e

        src = os.path.expanduser(self.model_id)
        if os.path.isdir(src):
            what = f"local directory {src!r}"
            if not os.path.isfile(os.path.join(src, "config.json")):
                raise VLMError(f"cannot load VLM from {what}: it holds no config.json (not a directory "
                               "written by save_pretrained)", reason="load")
        elif os.path.exists(src):
            raise VLMError(f"cannot load VLM from {src!r}: it is a file; give the model's directory "
                           "(written by save_pretrained) or a Hugging Face hub id", reason="load")
        elif _looks_like_local_path(self.model_id):
            raise VLMError(f"cannot load VLM {self.model_id!r}: no such local directory (tried it as a "
                           "local path; a Hugging Face hub id looks like 'org/name')", reason="load")
        else:
            what = f"Hugging Face hub id {src!r} (local cache or download)"
        kw = {"trust_remote_code": self.trust_remote_code}

        t0 = time.perf_counter()
        try:
            config = AutoConfig.from_pretrained(src, **kw)
        except (OSError, ValueError, KeyError) as e:
            raise VLMError(f"cannot load VLM from {what}: its config could not be read "
                           f"({type(e).__name__}: {_first_line(e)})", reason="load") from e

        model_type = getattr(config, "model_type", "?")
        auto_map = getattr(config, "auto_map", None) or {}
        remote_vlm = self.trust_remote_code and "AutoModelForImageTextToText" in auto_map
        if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and not remote_vlm:
            archs = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
            raise VLMError(f"cannot load VLM from {what}: it holds a {model_type!r} model ({archs}), which "
                           f"is not an image-text-to-text model that AutoModelForImageTextToText can load "
                           f"(use a vision-language model such as {_VLM_EXAMPLES})", reason="load")

        try:
            processor = AutoProcessor.from_pretrained(src, **kw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise VLMError(f"cannot load the processor (tokenizer + image processor) of {what}: "
                           f"{type(e).__name__}: {_first_line(e)}", reason="load") from e
        if not hasattr(processor, "image_processor") and not hasattr(processor, "apply_chat_template"):
            raise VLMError(f"cannot load VLM from {what}: AutoProcessor gave a {type(processor).__name__}, "
                           "which cannot handle images", reason="load")
        if not getattr(processor, "chat_template", None) and not getattr(
                getattr(processor, "tokenizer", None), "chat_template", None):
            raise VLMError(f"cannot use VLM from {what}: its processor has no chat template (a base model, "
                           "not an instruction-tuned one?)", reason="load")

        try:
            model = AutoModelForImageTextToText.from_pretrained(src, dtype=self.dtype, **kw)
            model = model.to(self.device).eval()
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            raise VLMError(f"cannot load the weights of {what} with AutoModelForImageTextToText onto "
                           f"{self.device} ({self.dtype}): {type(e).__name__}: {_first_line(e)}",
                           reason="load") from e
        self._processor, self._model = processor, model
        log.info("loaded VLM %s (%s) on %s in %s in %.1f s", self.model_id, type(model).__name__,
                 self.device, self.dtype, time.perf_counter() - t0)

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        system: str,
        prompt: str,
        images: Sequence[np.ndarray] = (),
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> VLMReply:
        imgs = check_generate_args(images, max_tokens, temperature)
        from PIL import Image

        with self._lock:
            if self._model is None:
                raise VLMError(f"{self.name} was closed", reason="closed")
            import torch

            t0 = time.perf_counter()
            pil = [Image.fromarray(a) for a in imgs]
            inputs = self._encode(system, prompt, pil)
            t_enc = time.perf_counter()
            gen = self._generation_config(int(max_tokens), float(temperature))
            n_in = int(inputs["input_ids"].shape[1])
            try:
                if self.decode != "generate" and not gen.do_sample:
                    new = self._static_generate(inputs, gen)
                else:
                    with torch.inference_mode():
                        out = self._model.generate(**inputs, generation_config=gen)
                    new = out[0, n_in:]
                    self.last = {"mode": "generate"}
            except (RuntimeError, ValueError, IndexError) as e:
                raise VLMError(f"{self.name} failed while generating: {type(e).__name__}: {_first_line(e)}",
                               reason="generate") from e
            tokenizer = getattr(self._processor, "tokenizer", self._processor)
            t_gen = time.perf_counter()
            text = tokenizer.decode(new, skip_special_tokens=True).strip()
            latency = time.perf_counter() - t0
            # host seconds of the reply's parts (where the time to first token goes)
            self.last.update(encode_s=t_enc - t0, generate_s=t_gen - t_enc,
                             text_s=latency - (t_gen - t0))
        return VLMReply(text=text, model=self.model_id, latency_s=latency,
                        prompt_tokens=n_in, completion_tokens=int(new.shape[0]))

    def _static_generate(self, inputs: Any, gen: Any) -> Any:
        """Greedy tokens through the static-cache decoder (built on first use)."""
        import torch

        from spatialpin_ros.vlm.static_decode import StaticDecoder

        if self._decoder is None:
            self._decoder = StaticDecoder(self._model, mode=self.decode)
        eos = gen.eos_token_id
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        res = self._decoder.generate(inputs, gen.max_new_tokens, eos)
        self.last = {"mode": res.mode, "prefill_s": res.prefill_s, "decode_s": res.decode_s,
                     "tokens_per_s": res.tokens_per_s, "notes": res.notes}
        return torch.tensor(res.tokens, dtype=torch.long)

    def _encode(self, system: str, prompt: str, images: list) -> Any:
        """The chat template rendered and tokenised, with pixel values, on the model's device."""
        import torch

        user = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": str(prompt)}]
        messages = [{"role": "user", "content": user}]
        if system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": str(system)}]})
        kw = dict(add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
        if images and self._image_on_device():
            kw.update(self._device_kwargs())
        try:
            with torch_threads(self.encode_threads):
                try:
                    inputs = self._processor.apply_chat_template(messages, **kw)
                except Exception as e:  # noqa: BLE001 - some templates reject a system turn
                    if not system or "system" not in str(e).lower():
                        raise
                    user[-1]["text"] = f"{system}\n\n{prompt}"  # fold the system prompt into the user turn
                    inputs = self._processor.apply_chat_template(messages[1:], **kw)
        except Exception as e:  # noqa: BLE001 - template, tokenizer or image processor errors
            raise VLMError(f"{self.name} could not build its input with the processor's chat template: "
                           f"{type(e).__name__}: {_first_line(e)}", reason="generate") from e
        inputs = inputs.to(self.device)
        for k, v in list(inputs.items()):
            if isinstance(v, torch.Tensor) and torch.is_floating_point(v):
                inputs[k] = v.to(self.dtype)
        return inputs

    def _image_on_device(self) -> bool:
        """Whether images are processed on the model's device: ``image_on_device`` is set,
        the model is on CUDA and the image processor is a torchvision one."""
        if not self.image_on_device or getattr(self.device, "type", "") != "cuda":
            return False
        ip = getattr(self._processor, "image_processor", None)
        return ip is not None and "torchvision" in _backend_of(ip)

    def _device_kwargs(self) -> dict:
        """The processor keyword that moves image processing to the model's device, in the
        form this transformers' ``apply_chat_template`` takes (``processor_kwargs`` where it
        has that parameter, else a plain keyword)."""
        import inspect

        params = inspect.signature(self._processor.apply_chat_template).parameters
        dev = str(self.device)
        return {"processor_kwargs": {"device": dev}} if "processor_kwargs" in params else {
            "device": dev}

    def _generation_config(self, max_tokens: int, temperature: float) -> Any:
        gen = copy.deepcopy(self._model.generation_config)
        gen.max_new_tokens = max_tokens
        gen.max_length = None
        if temperature > 0:
            gen.do_sample, gen.temperature = True, temperature
        else:  # greedy; clear sampling knobs so transformers does not warn about them
            gen.do_sample, gen.temperature, gen.top_p, gen.top_k = False, None, None, None
        if gen.pad_token_id is None:
            tok = getattr(self._processor, "tokenizer", self._processor)
            pad = getattr(tok, "pad_token_id", None)
            gen.pad_token_id = pad if pad is not None else gen.eos_token_id
        return gen

    def close(self) -> None:
        """Drop the model and processor (and free cached GPU memory). Later calls raise VLMError."""
        with self._lock:
            if self._model is None:
                return
            on_cuda = getattr(self.device, "type", "") == "cuda"
            self._model = self._processor = self._decoder = None
        if on_cuda:
            import torch

            torch.cuda.empty_cache()


def _backend_of(image_processor: Any) -> str:
    """"torchvision" for transformers' torchvision-backed (fast) image processors, else the
    class's module and name (e.g. a PIL one)."""
    cls = type(image_processor)
    backend = getattr(image_processor, "backend", None)
    if isinstance(backend, str):
        return backend.lower()
    names = " ".join(f"{c.__module__}.{c.__name__}" for c in cls.__mro__).lower()
    if "pil" in cls.__name__.lower():
        return names
    return "torchvision" if ("fast" in names or "torchvision" in names) else names


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."
