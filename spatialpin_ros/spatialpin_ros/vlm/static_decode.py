"""Greedy decoding of a Hugging Face model with a static KV cache and a CUDA-graph decode step.

``transformers``' ``generate`` spends most of a decode step launching kernels from Python (a 7B
model is about 400 launches a token): on an H200 that is ~40 ms a token where the GPU needs ~3.
:class:`StaticDecoder` removes that overhead:

* one static KV cache (``transformers.StaticCache``), allocated once and reset in place;
* the prompt is prefilled in one forward pass over all its tokens (image included), keeping
  only the last position's logits;
* the decode step (model forward on one token, argmax, the next token written back in place,
  the position advanced) is captured once as a CUDA graph and replayed; the host never waits
  for a token: it replays ``chunk`` steps, then reads them back and stops at an end token;
* ``mode="compile"``: the model's forward is ``torch.compile``'d first (Inductor fuses the many
  small kernels of the norms, rotary embeddings and activations; a first call of a minute or
  more), then the step is captured as a CUDA graph as above; ``mode="eager"``: the same loop
  without a graph (the CPU path, and the fallback when a capture fails).

Greedy only; sampling stays with ``generate``. Results are :class:`DecodeResult`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

log = logging.getLogger(__name__)

MODES = ("graphs", "compile", "eager")
PREFILLS = ("dynamic", "static")


@dataclass
class DecodeResult:
    """New token ids (the first from the prefill), the time to the first token (prefill, s),
    the decoding time of the rest (s) and the mode that ran."""

    tokens: list[int]
    prefill_s: float
    decode_s: float
    mode: str
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        n = len(self.tokens) - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else float("nan")


class StaticDecoder:
    """Greedy generation with a static cache for ``model`` (any ``generate``-capable HF model
    whose forward accepts ``past_key_values`` and ``cache_position``).

    Args:
        model: the loaded model (eval mode, on its device).
        max_cache_len: prompt plus new tokens at most (None: the first request's, rounded up to
            a multiple of 256); a longer request re-allocates the cache (and re-captures the
            graph) at the next multiple of 256.
        mode: ``"graphs"`` (CUDA only; else eager), ``"compile"`` or ``"eager"``.
        chunk: decode steps replayed between two reads of the tokens (end-token checks).
        prefill: ``"static"`` (the pass on the static cache) or ``"dynamic"`` (the prompt's
            pass on a dynamic cache, then copied into the static one: :meth:`_prefill`; not
            faster on an H100 for a 7B LLaVA, kept as an option).
        vision_graphs: in modes graphs and compile on CUDA, the vision tower runs as a CUDA
            graph per image-tensor shape (:class:`_GraphedVision`): its few hundred small
            launches cost more host time than its GPU work.
    """

    def __init__(self, model: Any, max_cache_len: Optional[int] = None, mode: str = "graphs",
                 chunk: int = 16, prefill: str = "static", vision_graphs: bool = True) -> None:
        import torch

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if prefill not in PREFILLS:
            raise ValueError(f"prefill must be one of {PREFILLS}, got {prefill!r}")
        self.prefill = prefill
        self.model = model
        self.device = next(model.parameters()).device
        if mode in ("graphs", "compile") and self.device.type != "cuda":
            mode = "eager"
        self.mode = mode
        #: The vision tower's forward as CUDA graphs during the prefill (mode graphs/compile).
        self._vision = _GraphedVision.of(model) if (
            vision_graphs and mode in ("graphs", "compile")) else None
        self.chunk = max(1, int(chunk))
        self.max_cache_len = int(max_cache_len or 0)
        #: The decode step's forward: the model's, or its compiled version (mode "compile").
        self._fwd = model.forward
        if mode == "compile":
            self._fwd = torch.compile(model.forward, dynamic=False)
        self._cache: Any = None
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        # static buffers of the decode step (fixed addresses: the graph reads and writes them)
        self._ids = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self._pos = torch.zeros((1,), dtype=torch.long, device=self.device)
        self._step = torch.zeros((1,), dtype=torch.long, device=self.device)
        self._out = torch.zeros((max(self.max_cache_len, 1),), dtype=torch.long,
                                device=self.device)

    # ------------------------------------------------------------------ cache and graph
    def _ensure_cache(self, need: int) -> None:
        import torch
        from transformers import StaticCache

        if self._cache is not None and need <= self.max_cache_len:
            self._cache.reset()
            return
        if need > self.max_cache_len:
            self.max_cache_len = int(-(-need // 256) * 256)
            self._out = torch.zeros((self.max_cache_len,), dtype=torch.long, device=self.device)
        self._cache = StaticCache(config=self.model.config, max_cache_len=self.max_cache_len)
        self._graph = None

    def _step_fn(self) -> None:
        """One decode step on the static buffers (captured or compiled as it is)."""
        out = self._fwd(input_ids=self._ids, past_key_values=self._cache,
                        cache_position=self._pos, use_cache=True)
        nxt = out.logits[:, -1].argmax(dim=-1)
        self._out.index_copy_(0, self._step, nxt)
        self._ids.copy_(nxt.view(1, 1))
        self._pos.add_(1)
        self._step.add_(1)
        del out

    def _capture(self) -> None:
        """Capture the decode step; the cache must be initialised (after a prefill). The warm-up
        steps on a side stream write to the cache's free tail only; the caller restores the
        position buffers afterwards."""
        import torch

        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step_fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step_fn()
        self._graph = graph

    # ------------------------------------------------------------------ generation
    def generate(self, inputs: dict, max_new_tokens: int,
                 eos_ids: Sequence[int] = ()) -> DecodeResult:
        """Greedy tokens for one prompt (``inputs``: the processor's tensors on the device,
        batch 1)."""
        import torch

        ids = inputs["input_ids"]
        if ids.shape[0] != 1:
            raise ValueError("StaticDecoder decodes one prompt at a time (batch 1)")
        n = int(ids.shape[1])
        new = max(1, int(max_new_tokens))
        eos = set(int(e) for e in eos_ids)
        notes: list[str] = []
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        with torch.inference_mode():
            self._ensure_cache(n + new + 2 * self.chunk + 2)
            out = self._prefill(inputs, n)
            first = out.logits[:, -1].argmax(dim=-1)
            del out
            first_id = int(first.item())           # the first token is on the host
            t1 = time.perf_counter()
            tokens = [first_id]
            if new > 1 and first_id not in eos:
                tokens += self._decode(first, n, new - 1, eos, notes)
            sync()
            t2 = time.perf_counter()
        return DecodeResult(tokens=tokens, prefill_s=t1 - t0, decode_s=t2 - t1,
                            mode=self.mode, notes=notes)

    def _prefill(self, inputs: dict, n: int) -> Any:
        """The prompt's forward pass, its keys and values left in the static cache at 0..n-1.

        ``prefill="dynamic"``: the pass runs on a fresh ``DynamicCache`` (attention over the
        prompt's own ``n`` keys with a causal mask, which SDPA serves with its flash kernel, as
        ``generate``'s prefill does), then the keys and values are copied into the static
        cache (one copy of ~0.5 GB for a 7B model's 1,250 tokens). Over the static cache the
        same pass would attend to all ``max_cache_len`` slots through an explicit mask (SDPA's
        slower masked kernel). The first prefill of a cache (its layers not allocated yet), or
        a cache whose layers do not have the expected tensors, uses the static pass."""
        import contextlib

        ctx = self._vision.active() if self._vision is not None else contextlib.nullcontext()
        with ctx:
            return self._prefill_pass(inputs, n)

    def _prefill_pass(self, inputs: dict, n: int) -> Any:
        import torch

        if self.prefill == "dynamic" and self._static_layers_ready():
            from transformers import DynamicCache

            dyn = DynamicCache()
            out = self.model(**inputs, past_key_values=dyn, use_cache=True, logits_to_keep=1)
            layers = getattr(out.past_key_values, "layers", None) or ()
            if len(layers) == len(self._cache.layers):
                for src, dst in zip(layers, self._cache.layers):
                    dst.keys[:, :, :n].copy_(src.keys)
                    dst.values[:, :, :n].copy_(src.values)
                    cum = getattr(dst, "cumulative_length", None)
                    if isinstance(cum, torch.Tensor):
                        cum.fill_(n)
                del dyn, layers
                return out
            log.warning("dynamic prefill gave %d cache layers for %d static ones: static "
                        "prefill from now on", len(layers), len(self._cache.layers))
            self.prefill = "static"
            self._cache.reset()
        pos = torch.arange(n, device=self.device)
        return self.model(**inputs, past_key_values=self._cache, cache_position=pos,
                          use_cache=True, logits_to_keep=1)

    def _static_layers_ready(self) -> bool:
        """The static cache's layers hold their key and value tensors (allocated by a first
        pass) and count their length in a tensor or not at all."""
        import torch

        layers = getattr(self._cache, "layers", None)
        if not layers:
            return False
        for layer in layers:
            if not isinstance(getattr(layer, "keys", None), torch.Tensor) or \
                    not isinstance(getattr(layer, "values", None), torch.Tensor):
                return False
            if not getattr(layer, "is_initialized", True):
                return False
        return True

    def _reset_step(self, first, n: int) -> None:
        """The step's buffers at position ``n`` with ``first`` as input; the cache layers that
        count their own length in a tensor (transformers >= 5.x StaticLayer) are set to ``n``
        too, in place (the warm-up and capture steps advanced them)."""
        import torch

        self._ids.copy_(first.view(1, 1))
        self._pos.fill_(n)
        self._step.zero_()
        for layer in getattr(self._cache, "layers", ()):
            cum = getattr(layer, "cumulative_length", None)
            if isinstance(cum, torch.Tensor):
                cum.fill_(n)

    def _decode(self, first, n: int, steps: int, eos: set, notes: list) -> list[int]:
        import torch

        self._reset_step(first, n)
        run = self._step_fn
        if self.mode in ("graphs", "compile"):
            if self._graph is None:
                try:
                    self._capture()
                except Exception as e:  # noqa: BLE001 - any capture failure falls back
                    torch.cuda.synchronize(self.device)
                    log.warning("CUDA graph capture of the decode step failed (%s: %s): eager "
                                "decoding", type(e).__name__, e)
                    notes.append(f"graph capture failed: {type(e).__name__}")
                    self.mode = "eager"
                    self._fwd = self.model.forward
                self._reset_step(first, n)
            if self._graph is not None:
                run = self._graph.replay
        got: list[int] = []
        done = 0
        while done < steps:
            k = min(self.chunk, steps - done)
            for _ in range(k):
                run()
            chunk = self._out[done:done + k].tolist()     # one read per chunk
            done += k
            for t in chunk:
                got.append(int(t))
                if t in eos:
                    return got
        return got


class _GraphedVision:
    """A VLM's vision tower called through CUDA graphs while :meth:`active`: one graph per
    (image tensor shape, dtype, keyword arguments), captured on first use (after two eager
    warm-up calls on a side stream) and replayed with the new pixels copied into its static
    input. Calls with other positional arguments, tensor keywords, CPU inputs or autograd on
    run eagerly, and so does everything after a failed capture (logged once). At most
    ``max_graphs`` shapes are kept (others run eagerly). The outputs are the graph's static
    tensors, consumed by the rest of the forward pass before the next replay."""

    NAMES = ("vision_tower", "visual", "vision_model")

    def __init__(self, module: Any, max_graphs: int = 4) -> None:
        self.module = module
        self.max_graphs = int(max_graphs)
        self._graphs: dict = {}
        self._stream: Any = None
        self.failed: Optional[str] = None

    @classmethod
    def of(cls, model: Any) -> Optional["_GraphedVision"]:
        """The wrapper of ``model``'s vision tower (None when none is found)."""
        for owner in (model, getattr(model, "model", None)):
            for name in cls.NAMES:
                m = getattr(owner, name, None) if owner is not None else None
                if m is not None and callable(getattr(m, "forward", None)):
                    return cls(m)
        return None

    def active(self):
        """A context in which the tower's ``forward`` is this wrapper."""
        import contextlib

        @contextlib.contextmanager
        def swap():
            m = self.module
            own = m.__dict__.get("forward")          # an instance attribute set by others
            self._orig = m.forward
            m.forward = self._call
            try:
                yield
            finally:
                if own is None:
                    del m.forward
                else:
                    m.forward = own
        return swap()

    def _call(self, *args, **kw):
        import torch

        orig = self._orig
        x = args[0] if args else kw.get("pixel_values")
        eager = (self.failed is not None or len(args) > 1 or not isinstance(x, torch.Tensor)
                 or x.device.type != "cuda" or torch.is_grad_enabled()
                 or any(isinstance(v, torch.Tensor) for k, v in kw.items()
                        if k != "pixel_values"))
        if eager:
            return orig(*args, **kw)
        rest = {k: v for k, v in kw.items() if k != "pixel_values"}
        key = (tuple(x.shape), x.dtype, tuple(sorted((k, repr(v)) for k, v in rest.items())))
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:
                return orig(*args, **kw)
            try:
                entry = self._graphs[key] = self._capture(x, rest)
            except Exception as e:  # noqa: BLE001 - any capture failure: eager from now on
                torch.cuda.synchronize(x.device)
                self.failed = f"{type(e).__name__}: {e}".splitlines()[0]
                log.warning("CUDA graph capture of the vision tower failed (%s): eager",
                            self.failed)
                return orig(*args, **kw)
        static_x, graph, out = entry
        static_x.copy_(x, non_blocking=True)
        graph.replay()
        return _fresh(out)

    def _capture(self, x, rest: dict):
        import torch

        static_x = x.clone()
        if self._stream is None:
            self._stream = torch.cuda.Stream(x.device)
        side = self._stream
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._orig(static_x, **rest)
        torch.cuda.current_stream(x.device).wait_stream(side)
        torch.cuda.synchronize(x.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            out = self._orig(static_x, **rest)
        torch.cuda.synchronize(x.device)
        log.info("captured a CUDA graph of the vision tower for %s", tuple(x.shape))
        return static_x, graph, out


def _fresh(out: Any) -> Any:
    """A new container of the same tensors (callers may set fields of what they get)."""
    if isinstance(out, tuple) and not hasattr(out, "keys"):
        return tuple(out)
    if hasattr(out, "keys"):
        try:
            return type(out)(**{k: out[k] for k in out.keys()})
        except Exception:  # noqa: BLE001 - a container that cannot be rebuilt: as it is
            return out
    return out
