"""Vision-language-model clients behind one interface.

``make_vlm(kind, **params)`` picks a backend by name:

* ``"openai"``: :class:`OpenAICompatibleClient`, any OpenAI chat-completions server (OpenAI, vLLM,
  Ollama, llama.cpp, ``transformers serve``), standard library HTTP only;
* ``"transformers"``: :class:`TransformersVLM`, a local Hugging Face image-text-to-text model.

Each client's ``generate(system, prompt, images)`` returns a :class:`VLMReply` or raises
:class:`VLMError`. Importing this package does not import torch or transformers.
"""

from spatialpin_ros.vlm.base import KNOWN_KINDS, VLMClient, VLMError, VLMReply, make_vlm
from spatialpin_ros.vlm.openai_client import OpenAICompatibleClient
from spatialpin_ros.vlm.transformers_client import TransformersVLM

__all__ = [
    "KNOWN_KINDS",
    "OpenAICompatibleClient",
    "TransformersVLM",
    "VLMClient",
    "VLMError",
    "VLMReply",
    "make_vlm",
]
