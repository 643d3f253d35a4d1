"""A client for any server that speaks the OpenAI chat-completions API.

Tested against ``transformers serve``; the same request works with OpenAI, vLLM, Ollama
(``http://HOST:11434/v1``) and llama.cpp's ``llama-server`` (``http://HOST:8080/v1``).
Only the standard library does the HTTP (no ``openai``/``requests``/``httpx`` at runtime); images
are encoded with Pillow as PNG (lossless, default) or JPEG ``data:`` URLs.

The API key is read from the environment variable named by ``api_key_env`` at each call, so it is
never held by the client, and it is never written to logs, ``repr()`` or error messages. It goes
only to ``base_url``'s host: HTTP redirects are never followed (a 3xx reply is an error naming
where it pointed), so a server, or anything between, cannot send the ``Authorization`` header on
to another host. The endpoint is fixed for the client's life (the spatial QA node makes it
read-only; a new endpoint needs a new client).
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from spatialpin_ros.vlm.base import VLMClient, VLMError, VLMReply, check_generate_args

log = logging.getLogger(__name__)

_EXCERPT_CHARS = 300  # how much of an error body goes into a VLMError message
_IMAGE_FORMATS = ("png", "jpeg")


def encode_image_data_url(image: np.ndarray, fmt: str = "png", jpeg_quality: int = 90) -> str:
    """An (H, W, 3) uint8 RGB array as a ``data:image/...;base64,...`` URL."""
    from PIL import Image

    buf = io.BytesIO()
    pil = Image.fromarray(image)  # (H, W, 3) uint8 -> mode "RGB"
    if fmt == "png":
        pil.save(buf, format="PNG")
    elif fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=int(jpeg_quality))
    else:
        raise ValueError(f"image format must be one of {_IMAGE_FORMATS}, got {fmt!r}")
    return f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _is_loopback(host: Optional[str]) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would resend the request's headers, ``Authorization``
    included, to whatever host the ``Location`` names. A 3xx reply becomes an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


def _excerpt(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout)) or "timed out" in str(exc).lower()


class OpenAICompatibleClient(VLMClient):
    """POSTs ``{base_url}/chat/completions`` with the system prompt, the images and the user prompt.

    Args:
        base_url: the API root, including its version, e.g. ``"https://api.openai.com/v1"`` or
            ``"http://127.0.0.1:8000/v1"``.
        model: the model name the server expects (for ``transformers serve MODEL``, exactly MODEL).
        api_key_env: the environment variable holding the API key, read at each call; when it is
            unset or empty no ``Authorization`` header is sent (fine for local servers).
        timeout_s: seconds allowed to connect, and for each read from the socket (seconds).
        extra_headers: more HTTP headers sent with each request (e.g. ``OpenAI-Organization``).
            Their values are treated as secrets, like the key.
        image_format: ``"png"`` (lossless) or ``"jpeg"`` (smaller requests).

    Requests to loopback hosts (localhost, 127.0.0.0/8, ::1) bypass any ``http(s)_proxy`` set in
    the environment; other hosts honour it.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 30.0,
        extra_headers: Optional[Mapping[str, str]] = None,
        image_format: str = "png",
    ) -> None:
        parsed = urllib.parse.urlsplit(str(base_url))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if not model:
            raise ValueError("model must be a non-empty model name")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
        if image_format not in _IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {_IMAGE_FORMATS}, got {image_format!r}")
        self.base_url = str(base_url).rstrip("/")
        self.model = str(model)
        self.api_key_env = str(api_key_env)
        self.timeout_s = float(timeout_s)
        self.image_format = image_format
        self._extra_headers = dict(extra_headers or {})
        self.name = f"openai:{self.model}"
        handlers: list = [_NoRedirects()]
        if _is_loopback(parsed.hostname):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        extra = f", extra_headers=<{len(self._extra_headers)} hidden>" if self._extra_headers else ""
        return (f"OpenAICompatibleClient(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, timeout_s={self.timeout_s}{extra})")

    # ------------------------------------------------------------------ public API

    def generate(
        self,
        system: str,
        prompt: str,
        images: Sequence[np.ndarray] = (),
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> VLMReply:
        imgs = check_generate_args(images, max_tokens, temperature)
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": encode_image_data_url(img, self.image_format)}}
            for img in imgs
        ]
        content.append({"type": "text", "text": str(prompt)})
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": str(system)})
        messages.append({"role": "user", "content": content})
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
            "stream": False,
        }
        t0 = time.perf_counter()
        data = self._request("POST", "/chat/completions", body)
        latency = time.perf_counter() - t0

        text = self._content_of(data)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        model = data.get("model") if isinstance(data.get("model"), str) and data.get("model") else self.model
        log.debug("%s answered %d chars in %.3f s", self.name, len(text), latency)
        return VLMReply(
            text=text,
            model=model,
            latency_s=latency,
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
        )

    def list_models(self) -> list[str]:
        """The model ids the server lists at ``GET {base_url}/models`` (may be empty)."""
        data = self._request("GET", "/models", None)
        items = data.get("data")
        if not isinstance(items, list):
            raise VLMError(f"malformed reply from {self.base_url}/models: no 'data' list", reason="malformed")
        return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]

    def close(self) -> None:
        """Nothing to release: each request opens and closes its own connection."""

    # ------------------------------------------------------------------ internals

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self._extra_headers)
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _redact(self, text: str) -> str:
        """Remove the key and the extra header values from ``text`` (e.g. a body that echoes them)."""
        secrets = [os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""]
        secrets += [str(v) for v in self._extra_headers.values()]
        for s in secrets:
            if len(s) >= 4:
                text = text.replace(s, "***")
        return text

    def _fail(self, message: str, reason: str, status: Optional[int] = None) -> VLMError:
        return VLMError(self._redact(message), reason=reason, status=status)

    def _request(self, method: str, path: str, body: Optional[dict]) -> dict:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, headers=self._headers(), method=method)
        where = f"{method} {url}"
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                status = resp.status
                raw = resp.read()
        except urllib.error.HTTPError as e:
            try:
                detail = _excerpt(e.read())
            except Exception:  # noqa: BLE001 - the body is only a hint
                detail = ""
            finally:
                e.close()
            if 300 <= e.code < 400:
                where_to = _excerpt(str(e.headers.get("Location", "") if e.headers else "").encode())
                raise self._fail(f"{where} answered HTTP {e.code}, a redirect to "
                                 f"{where_to or '(no Location)'}; redirects are not followed, so "
                                 "the API key goes only to base_url (set base_url to the final "
                                 "address if the move is genuine)", reason="http",
                                 status=e.code) from None
            raise self._fail(f"{where} failed with HTTP {e.code} {e.reason}: {detail or '(empty body)'}",
                             reason="http", status=e.code) from None
        except urllib.error.URLError as e:
            if _is_timeout(e.reason if isinstance(e.reason, BaseException) else e):
                raise self._fail(f"{where} timed out after {self.timeout_s:g} s (timeout_s); "
                                 "the server is busy, slow or hung", reason="timeout") from None
            raise self._fail(f"the VLM server at {self.base_url} is down or unreachable "
                             f"({where}: {e.reason})", reason="unreachable") from None
        except (TimeoutError, socket.timeout):
            raise self._fail(f"{where} timed out after {self.timeout_s:g} s (timeout_s) waiting for the "
                             "reply; the server is busy, slow or hung", reason="timeout") from None
        except (ConnectionError, http.client.RemoteDisconnected) as e:
            raise self._fail(f"the VLM server at {self.base_url} is down or unreachable: the connection "
                             f"failed or was dropped ({where}: {type(e).__name__}: {e})",
                             reason="unreachable") from None
        except (http.client.HTTPException, OSError) as e:
            if _is_timeout(e):
                raise self._fail(f"{where} timed out after {self.timeout_s:g} s (timeout_s)",
                                 reason="timeout") from None
            raise self._fail(f"{where} failed: {type(e).__name__}: {e}", reason="unreachable") from None

        if not 200 <= status < 300:  # 1xx/3xx that urllib did not turn into an HTTPError
            raise self._fail(f"{where} failed with HTTP {status}: {_excerpt(raw)}", reason="http", status=status)
        try:
            parsed = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self._fail(f"malformed reply from {where}: not JSON: {_excerpt(raw) or '(empty body)'}",
                             reason="malformed") from None
        if not isinstance(parsed, dict):
            raise self._fail(f"malformed reply from {where}: expected a JSON object, got "
                             f"{type(parsed).__name__}", reason="malformed")
        return parsed

    def _content_of(self, data: dict) -> str:
        """``choices[0].message.content`` as a string, or a 'malformed reply' VLMError."""
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._fail(f"malformed reply from {self.base_url}/chat/completions: no "
                             f"choices[0].message.content in {_excerpt(json.dumps(data).encode())}",
                             reason="malformed") from None
        if isinstance(content, list):  # some servers return content parts
            texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if texts and all(isinstance(t, str) for t in texts):
                return "".join(texts)
        if not isinstance(content, str):
            raise self._fail(f"malformed reply from {self.base_url}/chat/completions: "
                             f"choices[0].message.content is {type(content).__name__}, not text "
                             f"(refusal or tool call?)", reason="malformed")
        return content


def _int_or_none(v: Any) -> Optional[int]:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
