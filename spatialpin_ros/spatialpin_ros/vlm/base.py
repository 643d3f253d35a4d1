"""The one interface every vision-language-model backend implements, and the factory that picks one.

A client moves a system prompt, a user prompt and zero or more RGB images to a model and returns
its text. It knows nothing about spatial questions: building the prompts is the caller's job.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.core.errors import ImageError, SpatialPinError


class VLMError(SpatialPinError, RuntimeError):
    """A vision-language model could not answer.

    ``reason`` says why, as one of :attr:`REASONS`:

    * ``"unreachable"``: the server is down, refused the connection or dropped it;
    * ``"timeout"``: the server did not answer within the client's timeout;
    * ``"http"``: the server answered with a non-2xx status (``status`` holds it);
    * ``"malformed"``: the server answered 2xx, but not with a chat completion;
    * ``"load"``: a local model or its processor could not be loaded;
    * ``"generate"``: a loaded local model failed while generating;
    * ``"closed"``: the client was used after ``close()``.
    """

    REASONS = ("unreachable", "timeout", "http", "malformed", "load", "generate", "closed")

    def __init__(self, message: str, reason: str, status: Optional[int] = None) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown VLMError reason {reason!r}; known: {', '.join(self.REASONS)}")
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass
class VLMReply:
    """A model's answer.

    ``latency_s`` is the wall time of the request or of the local generation, in seconds.
    Token counts are ``None`` where the backend does not report them.
    """

    text: str
    model: str
    latency_s: float
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None


class VLMClient(ABC):
    """A vision-language model behind one call. Usable as a context manager (closes on exit)."""

    #: A short, log-safe name of the backend and model, e.g. ``"openai:gpt-4o-mini"``.
    name: str = "vlm"

    @abstractmethod
    def generate(
        self,
        system: str,
        prompt: str,
        images: Sequence[np.ndarray] = (),
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> VLMReply:
        """Ask the model.

        Args:
            system: the system prompt ("" for none).
            prompt: the user's text, placed after the images in the user turn.
            images: (H, W, 3) uint8 RGB arrays, in the order the prompt refers to them.
            max_tokens: the most tokens to generate (>= 1).
            temperature: sampling temperature (>= 0); 0 means greedy decoding.

        Raises:
            VLMError: the model could not answer (see ``VLMError.reason``).
            ImageError: an image is not an (H, W, 3) uint8 array.
            ValueError: ``max_tokens`` or ``temperature`` is out of range.
        """

    def close(self) -> None:
        """Release the model, connections or memory held. Idempotent."""

    def __enter__(self) -> "VLMClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_generate_args(images: Sequence[np.ndarray], max_tokens: int, temperature: float) -> list[np.ndarray]:
    """Validate ``generate``'s arguments; return the images as C-contiguous uint8 arrays."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if not isinstance(temperature, (int, float, np.floating)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ImageError("images must be a sequence of (H, W, 3) arrays; wrap a single image in a list")
    out = []
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray):
            raise ImageError(f"image {i} must be a numpy array, got {type(img).__name__}")
        if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
            raise ImageError(f"image {i} must have shape (H, W, 3) (RGB), got {img.shape}")
        if img.dtype != np.uint8:
            raise ImageError(f"image {i} must be uint8 RGB, got dtype {img.dtype}")
        out.append(np.ascontiguousarray(img))
    return out


#: kind -> (module, class) of each backend; modules are imported on first use.
_BACKENDS = {
    "openai": ("spatialpin_ros.vlm.openai_client", "OpenAICompatibleClient"),
    "transformers": ("spatialpin_ros.vlm.transformers_client", "TransformersVLM"),
}

KNOWN_KINDS = tuple(_BACKENDS)


def make_vlm(kind: str, **params) -> VLMClient:
    """Build the client named ``kind`` with its constructor's keyword ``params``.

    ``"openai"``: :class:`~spatialpin_ros.vlm.openai_client.OpenAICompatibleClient` (any server with
    an OpenAI chat-completions API: OpenAI, vLLM, Ollama, llama.cpp, ``transformers serve``);
    ``"transformers"``: :class:`~spatialpin_ros.vlm.transformers_client.TransformersVLM` (a local
    Hugging Face model, in this process).

    Raises:
        ValueError: ``kind`` is unknown (the message lists the known kinds).
    """
    import importlib

    key = str(kind).strip().lower()
    if key not in _BACKENDS:
        raise ValueError(f"unknown VLM kind {kind!r}; known kinds: {', '.join(KNOWN_KINDS)}")
    module, cls = _BACKENDS[key]
    return getattr(importlib.import_module(module), cls)(**params)
