"""Plumbing shared by the learned perception parts (:mod:`~spatialpin_ros.perception.models`).

* device and dtype choice (CUDA in float16 when there is a GPU, else the CPU in float32 with a
  warning);
* loading a transformers checkpoint from a hub id or a local directory with clear errors
  (:class:`~spatialpin_ros.core.errors.ModelLoadError`): a missing path, an id that is neither
  cached nor downloadable, a checkpoint of another model type;
* the image upload (one host-to-device copy per frame, through a pinned buffer) and torch image
  resizing, so that pre-processing runs on the GPU;
* :class:`GraphedFunction`: a pure-GPU function replayed through a captured CUDA graph (optional,
  with a fallback to eager mode when capture fails), and :func:`maybe_compile` (torch.compile
  with a fallback);
* :func:`cache_position_interpolation`: ViT position embeddings interpolated once per input
  size instead of on every call.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import threading
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from spatialpin_ros.core.errors import ImageError, ModelLoadError

log = logging.getLogger("spatialpin_ros.perception.models")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_cpu_warned = False


def pick_device(device: Any = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU (with a one-time warning); ``"cpu"``,
    ``"cuda"``, ``"cuda:N"`` or a torch.device. A CUDA device that is not available falls back to
    the CPU with the same warning."""
    global _cpu_warned
    if isinstance(device, torch.device):
        want = str(device)
    else:
        want = str(device or "auto").strip().lower()
    if want == "auto" or want.startswith("cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda" if want == "auto" else want)
        if not _cpu_warned:
            log.warning("no CUDA device (device=%r): the perception models run on the CPU in "
                        "float32, which is slow for real-size models (seconds per frame)", device)
            _cpu_warned = True
        return torch.device("cpu")
    if want == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def pick_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """``"auto"``: float16 on CUDA, float32 on the CPU; else ``"float32"``, ``"float16"``,
    ``"bfloat16"`` or a torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype or "auto").replace("torch.", "").lower()
    if key == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if key not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}")
    if device.type == "cpu" and _DTYPES[key] == torch.float16:
        log.warning("float16 on the CPU is slow and partly unsupported; using float32")
        return torch.float32
    return _DTYPES[key]


def _looks_like_local_path(name: str) -> bool:
    """A name that can only be a filesystem path (hub ids are ``name`` or ``org/name``)."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name))


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def resolve_source(kind: str, source: Any) -> tuple[str, str]:
    """(path or id to load, words for messages). Raises ModelLoadError for a local path that
    does not exist or holds no config.json."""
    if not source or not isinstance(source, (str, os.PathLike)):
        raise ModelLoadError(f"{kind}: give a Hugging Face hub id, a local directory written by "
                             f"save_pretrained, or a loaded model; got {source!r}")
    src = os.path.expanduser(os.fspath(source))
    if os.path.isdir(src):
        if not os.path.isfile(os.path.join(src, "config.json")):
            raise ModelLoadError(f"cannot load the {kind} from local directory {src!r}: it holds "
                                 "no config.json (not a directory written by save_pretrained)")
        return src, f"local directory {src!r}"
    if os.path.exists(src):
        raise ModelLoadError(f"cannot load the {kind} from {src!r}: it is a file; give the "
                             "model's directory (written by save_pretrained) or a hub id")
    if _looks_like_local_path(os.fspath(source)):
        raise ModelLoadError(f"cannot load the {kind} from {src!r}: no such local directory "
                             "(tried it as a local path; a Hugging Face hub id looks like "
                             "'org/name')")
    return src, f"Hugging Face hub id {src!r} (local cache or download)"


def load_config(kind: str, src: str, what: str, expected: Sequence[str]):
    """The checkpoint's config; ModelLoadError unless its model_type is one of ``expected``."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(src)
    except (OSError, ValueError, KeyError) as e:
        hint = ("" if what.startswith("local") else
                " (offline? set HF_HUB_OFFLINE=1 with the model in the Hugging Face cache, or "
                "give a local directory)")
        raise ModelLoadError(f"cannot load the {kind} from {what}: its config could not be read "
                             f"({type(e).__name__}: {_first_line(e)}){hint}") from e
    model_type = getattr(config, "model_type", "?")
    if model_type not in expected:
        archs = ", ".join(getattr(config, "architectures", None) or []) or "no architectures"
        raise ModelLoadError(f"cannot load the {kind} from {what}: it holds a {model_type!r} "
                             f"model ({archs}); expected model type "
                             f"{' or '.join(repr(e) for e in expected)}")
    return config


def load_weights(kind: str, cls, src: str, what: str, device: torch.device, dtype: torch.dtype):
    """``cls.from_pretrained`` onto ``device`` in ``dtype``, in eval mode, ModelLoadError on
    failure."""
    try:
        model = cls.from_pretrained(src, dtype=dtype)
        return model.to(device).eval()
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ModelLoadError(f"cannot load the weights of the {kind} from {what} with "
                             f"{cls.__name__} onto {device} ({dtype}): {type(e).__name__}: "
                             f"{_first_line(e)}") from e


def load_part(kind: str, loader: Callable[[str], Any], src: str, what: str, part: str):
    """A processor part (image processor, tokenizer): ModelLoadError on failure."""
    try:
        return loader(src)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelLoadError(f"cannot load the {part} of the {kind} from {what}: "
                             f"{type(e).__name__}: {_first_line(e)}") from e


def prepare_module(model: torch.nn.Module, device: torch.device, dtype: torch.dtype):
    """A model given as an object: moved to ``device``/``dtype`` and put in eval mode."""
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"expected a torch.nn.Module, a hub id or a local path, got "
                             f"{type(model).__name__}")
    return model.to(device=device, dtype=dtype).eval()


# ---------------------------------------------------------------------------------------------
# Processor settings (dicts, SizeDicts or attributes, whichever transformers version wrote them)


def setting(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` or ``obj.key`` or ``default`` (processors and their SizeDicts vary)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        v = obj.get(key, default)
    else:
        v = getattr(obj, key, default)
    return default if v is None else v


def mean_std(processor: Any, device: torch.device, default_mean, default_std):
    """(1, 3, 1, 1) float32 mean and std tensors of the processor's normalisation."""
    mean = setting(processor, "image_mean", default_mean)
    std = setting(processor, "image_std", default_std)
    if isinstance(mean, (int, float)):
        mean = [mean] * 3
    if isinstance(std, (int, float)):
        std = [std] * 3
    return (torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1),
            torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1))


# ---------------------------------------------------------------------------------------------
# Image upload and resizing


class ImageUploader:
    """The host-to-device copy of a frame's uint8 (H, W, 3) image through a reused pinned
    staging buffer (a non-blocking copy; the buffer is only rewritten once the previous copy
    from it has finished). The backend uploads each frame once and hands the device tensor to
    every part."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pinned: Optional[torch.Tensor] = None
        self._done: Optional[torch.cuda.Event] = None

    def __call__(self, rgb: np.ndarray, device: torch.device) -> torch.Tensor:
        check_rgb(rgb)
        src = torch.from_numpy(np.ascontiguousarray(rgb))
        if device.type != "cuda":
            return src
        with self._lock, torch.inference_mode():
            if self._done is not None:
                self._done.synchronize()
            if self._pinned is None or self._pinned.shape != src.shape:
                self._pinned = torch.empty(src.shape, dtype=torch.uint8, pin_memory=True)
            np.copyto(self._pinned.numpy(), src.numpy())   # not torch's copy_ (thread pool)
            dev = self._pinned.to(device, non_blocking=True)
            self._done = torch.cuda.Event()
            self._done.record()
            return dev


#: The process-wide uploader.
upload_image = ImageUploader()


def check_rgb(rgb: Any) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 \
            or rgb.dtype != np.uint8:
        raise ImageError(f"rgb must be an (H, W, 3) uint8 array, got "
                         f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb))}")


def to_nchw_float(img: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in 0..1."""
    return img.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize (N, C, H, W) float to ``size`` (h, w); anti-aliased when shrinking (as PIL)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrink)
    return F.interpolate(x, size=size, mode=mode)


# ---------------------------------------------------------------------------------------------
# CUDA graphs


def maybe_compile(fn: Callable, name: str, enabled: bool) -> Callable:
    """``torch.compile(fn)`` when ``enabled`` (static shapes), falling back to ``fn`` with a
    warning when compiling fails (at wrapping or at the first call)."""
    if not enabled:
        return fn
    try:
        compiled = torch.compile(fn, dynamic=False)
    except Exception as e:  # noqa: BLE001 - compile is an optional speed-up
        log.warning("torch.compile of %s failed (%s); running it uncompiled", name, e)
        return fn
    state = {"ok": True}

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if state["ok"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001
                log.warning("torch.compile of %s failed (%s: %s); running it uncompiled",
                            name, type(e).__name__, _first_line(e))
                state["ok"] = False
        return fn(*args, **kwargs)

    return call


class GraphedFunction:
    """Calls ``fn(*tensors)`` (a pure-GPU function: no host synchronisation, shapes fixed by
    the inputs' shapes) eagerly, or with ``enabled`` through a CUDA graph captured once per input
    signature (after ``warmup`` eager calls on a side stream): inputs are copied into static
    buffers and the graph is replayed on the current stream. The outputs are the graph's static
    tensors: copy them before the next call.

    When capture fails (an operation that cannot be captured), a warning is logged and the
    function runs eagerly from then on.
    """

    def __init__(self, fn: Callable, name: str, enabled: bool = False, warmup: int = 2):
        self.name, self.enabled, self.warmup = name, bool(enabled), int(warmup)
        self.fn = fn
        self._graphs: dict[tuple, tuple] = {}
        self._stream = None

    def __call__(self, *tensors: torch.Tensor):
        if not self.enabled or tensors[0].device.type != "cuda":
            return self.fn(*tensors)
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(tensors)
            except Exception as e:  # noqa: BLE001 - any capture failure: stay eager
                log.warning("CUDA graph capture of %s failed (%s: %s); running it eagerly",
                            self.name, type(e).__name__, _first_line(e))
                self.enabled = False
                torch.cuda.synchronize()
                return self.fn(*tensors)
            self._graphs[key] = entry
        static_in, graph, static_out = entry
        for s, t in zip(static_in, tensors):
            s.copy_(t, non_blocking=True)
        graph.replay()
        return static_out

    def _capture(self, tensors: Sequence[torch.Tensor]):
        static_in = [t.clone() for t in tensors]
        if self._stream is None:          # this function's own warm-up and capture stream
            self._stream = torch.cuda.Stream(device=static_in[0].device)
        side = self._stream
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            out = self.fn(*static_in)
        torch.cuda.synchronize()
        log.info("captured a CUDA graph of %s for %s", self.name,
                 [tuple(t.shape) for t in tensors])
        return static_in, graph, out


def cache_position_interpolation(model: torch.nn.Module) -> int:
    """Cache each ViT embedding module's interpolated position embeddings per input size.

    DINOv2 (Depth Anything's backbone) and OWL's vision tower interpolate their position
    embeddings bicubically on every call for non-native input sizes; PyTorch's bicubic kernel
    runs one thread per output position looping over all channels, so on a GPU this single
    (1, 1024, 37, 49) resize took half of Depth Anything V2 Large's time. The result depends only
    on the input size (weights are fixed at inference), so it is computed once per size and
    reused (outside autograd only). Returns the number of modules wrapped.
    """
    n = 0
    for mod in model.modules():
        fn = getattr(mod, "interpolate_pos_encoding", None)
        if not callable(fn) or getattr(fn, "_spatialpin_cached", False):
            continue
        try:
            params = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            continue
        if params[:3] != ["embeddings", "height", "width"]:
            continue

        def cached(embeddings, height, width, _fn=fn, _cache={}):
            if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
                return _fn(embeddings, height, width)
            key = (int(embeddings.shape[1]), int(height), int(width), embeddings.dtype,
                   embeddings.device)
            hit = _cache.get(key)
            if hit is None:
                hit = _cache[key] = _fn(embeddings, height, width)
            return hit

        cached._spatialpin_cached = True
        mod.interpolate_pos_encoding = cached
        n += 1
    return n


def to_host(tensors: Iterable[torch.Tensor]) -> list[np.ndarray]:
    """Copy device tensors to host numpy arrays with one synchronisation (pinned, non-blocking
    copies on the current stream, then one wait)."""
    tensors = list(tensors)
    if not tensors or tensors[0].device.type != "cuda":
        return [t.detach().numpy() for t in tensors]
    outs = []
    for t in tensors:
        h = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        h.copy_(t, non_blocking=True)
        outs.append(h)
    torch.cuda.current_stream().synchronize()
    return [h.numpy() for h in outs]


def ceil_to(x: float, m: int) -> int:
    return int(math.ceil(x / m) * m)
