"""VLM clients: a local transformers model, a real `transformers serve` process, and fake servers.

Everything is offline: the model is a tiny random LLaVA built by tiny_vlm.py into a tmp dir, and
all network traffic goes to 127.0.0.1.
"""

import base64
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from spatialpin_ros.core.errors import ImageError, SpatialPinError
from spatialpin_ros.vlm import (OpenAICompatibleClient, TransformersVLM, VLMClient, VLMError, VLMReply,
                                make_vlm)
from tiny_vlm import build_tiny_vlm, free_port, serve_missing_packages, serve_models

SYSTEM = "You are a careful spatial reasoning assistant. Answer briefly."
PROMPT = "Is the red block to the left of the blue cup?"
FAKE_KEY = "sk-test-0123456789abcdef-not-a-real-key"


def _image(h=48, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny_vlm_path(tmp_path_factory) -> str:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="module")
def local_vlm(tiny_vlm_path):
    vlm = TransformersVLM(tiny_vlm_path, device="cpu")
    yield vlm
    vlm.close()


@pytest.fixture(scope="module")
def served_model(tiny_vlm_path, tmp_path_factory):
    """`transformers serve` with the tiny model preloaded, on a free 127.0.0.1 port: (base_url, model name)."""
    missing = serve_missing_packages()
    if missing:  # transformers[serving] needs them; accelerate because serve loads with a device_map
        pytest.skip(f"`transformers serve` cannot start: missing packages {missing} (pip install {' '.join(missing)})")
    try:
        with serve_models(tmp_path_factory.mktemp("serve"), model=tiny_vlm_path) as base_url:
            # A server pinned to a model answers only requests naming exactly that model.
            yield base_url, tiny_vlm_path
    except RuntimeError as e:
        pytest.fail(str(e))


class FakeOpenAIServer:
    """A local http.server that records each request and answers with ``status`` and ``body``."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.body: bytes = b"{}"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers.items()),
                                       "json": json.loads(raw) if raw else None})
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            do_GET = do_POST = _answer

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def reply(self, status: int, payload) -> None:
        self.status = status
        self.body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server():
    server = FakeOpenAIServer()
    yield server
    server.close()


@pytest.fixture
def silent_server():
    """A socket server that accepts connections and never answers: base URL."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept_forever():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/v1"
    stop.set()
    t.join(timeout=2)
    for c in held:
        c.close()
    srv.close()


def _completion(content="hello"):
    return {"id": "x", "object": "chat.completion", "model": "fake-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}}


# ---------------------------------------------------------------------------------- transformers backend

def test_transformers_backend_generates(local_vlm, tiny_vlm_path):
    reply = local_vlm.generate(SYSTEM, PROMPT, [_image()], max_tokens=6)
    assert isinstance(reply, VLMReply)
    assert isinstance(reply.text, str)
    assert reply.latency_s > 0
    assert reply.model == tiny_vlm_path
    assert reply.prompt_tokens > 16  # the text plus the 16 image tokens of a 32 px image with 8 px patches
    assert 1 <= reply.completion_tokens <= 6
    again = local_vlm.generate(SYSTEM, PROMPT, [_image()], max_tokens=6)
    assert again.text == reply.text  # greedy at temperature 0: deterministic


def test_transformers_backend_text_only_sampling_and_bad_input(local_vlm):
    reply = local_vlm.generate("", "Where is the mug?", max_tokens=3, temperature=0.8)
    assert isinstance(reply.text, str) and reply.completion_tokens <= 3
    with pytest.raises(ImageError):
        local_vlm.generate(SYSTEM, PROMPT, [np.zeros((48, 64), np.uint8)])
    with pytest.raises(ImageError):
        local_vlm.generate(SYSTEM, PROMPT, [np.zeros((48, 64, 3), np.float32)])
    with pytest.raises(ValueError):
        local_vlm.generate(SYSTEM, PROMPT, max_tokens=0)
    with pytest.raises(ValueError):
        local_vlm.generate(SYSTEM, PROMPT, temperature=-1.0)


def test_static_cache_decoding_matches_generate(tiny_vlm_path):
    """The static-cache decoder (the GPU fast path; eager on the CPU, and "graphs" falls back to
    eager there) gives generate's greedy tokens, reply after reply."""
    import torch

    from spatialpin_ros.vlm.static_decode import StaticDecoder

    ref = TransformersVLM(tiny_vlm_path, device="cpu", decode="generate")
    torch.manual_seed(3)
    with torch.no_grad():                    # livelier weights than the tiny model's: varied tokens
        for p in ref._model.parameters():
            p.mul_(6.0)
    fast = TransformersVLM.from_loaded(ref._model, ref._processor, "tiny", decode="graphs")
    assert fast.device.type == "cpu"
    for prompt in (PROMPT, "How far is the mug from the bowl in metres?"):
        a = ref.generate(SYSTEM, prompt, [_image()], max_tokens=24)
        b = fast.generate(SYSTEM, prompt, [_image()], max_tokens=24)
        assert fast.last["mode"] == "eager" and ref.last["mode"] == "generate"
        assert b.text == a.text and b.completion_tokens == a.completion_tokens
        assert fast.last["prefill_s"] > 0
        for last, reply in ((fast.last, b), (ref.last, a)):    # the reply's parts add up
            parts = last["encode_s"] + last["generate_s"] + last["text_s"]
            assert min(last["encode_s"], last["generate_s"], last["text_s"]) >= 0
            assert parts == pytest.approx(reply.latency_s, abs=1e-6)
    # the other prefill (a dynamic cache copied into the static one) gives the same tokens
    dyn = TransformersVLM.from_loaded(ref._model, ref._processor, "tiny", decode="eager")
    dyn._decoder = StaticDecoder(ref._model, mode="eager", prefill="dynamic")
    for prompt in (PROMPT, "How far is the mug from the bowl in metres?"):
        a = ref.generate(SYSTEM, prompt, [_image()], max_tokens=24)
        assert dyn.generate(SYSTEM, prompt, [_image()], max_tokens=24).text == a.text
    # the vision tower's graph wrapper: found, swapped in and out, eager on the CPU
    from spatialpin_ros.vlm.static_decode import _GraphedVision

    gv = _GraphedVision.of(ref._model)
    tower = gv.module
    assert "forward" not in tower.__dict__
    pix = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = tower(pix, output_hidden_states=True).hidden_states[-2]
        with gv.active():
            assert tower.forward == gv._call
            got = tower(pix, output_hidden_states=True).hidden_states[-2]
    assert "forward" not in tower.__dict__ and torch.equal(got, want) and not gv._graphs
    with pytest.raises(ValueError):
        StaticDecoder(ref._model, mode="fast")
    with pytest.raises(ValueError):
        StaticDecoder(ref._model, prefill="later")
    with pytest.raises(ValueError):
        TransformersVLM.from_loaded(ref._model, ref._processor, "tiny", decode="quick")
    ref.close()


def test_make_vlm_transformers_and_close(tiny_vlm_path):
    vlm = make_vlm("transformers", model=tiny_vlm_path, device="cpu")
    assert isinstance(vlm, TransformersVLM) and isinstance(vlm, VLMClient)
    assert vlm.name == f"transformers:{tiny_vlm_path}"
    vlm.close()
    vlm.close()  # idempotent
    with pytest.raises(VLMError) as e:
        vlm.generate(SYSTEM, PROMPT)
    assert e.value.reason == "closed"


def test_transformers_load_errors(tmp_path):
    with pytest.raises(VLMError) as e:
        TransformersVLM("/nonexistent/path")
    assert e.value.reason == "load"
    assert "/nonexistent/path" in str(e.value) and "no such local directory" in str(e.value)
    assert isinstance(e.value, SpatialPinError) and isinstance(e.value, RuntimeError)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VLMError, match="no config.json"):
        TransformersVLM(str(empty))

    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2_dir = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                bos_token_id=0, eos_token_id=0)).save_pretrained(gpt2_dir)
    with pytest.raises(VLMError) as e:
        TransformersVLM(str(gpt2_dir))
    msg = str(e.value)
    assert e.value.reason == "load" and "'gpt2'" in msg and "not an image-text-to-text model" in msg
    assert str(gpt2_dir) in msg


# ---------------------------------------------------------------------------------- openai backend, real server

def test_openai_client_against_transformers_serve(served_model, local_vlm):
    base_url, model = served_model
    client = make_vlm("openai", base_url=base_url, model=model, timeout_s=30.0)
    assert isinstance(client, OpenAICompatibleClient)
    reply = client.generate(SYSTEM, PROMPT, [_image()], max_tokens=6)
    assert isinstance(reply.text, str)
    assert reply.latency_s > 0
    assert reply.model.startswith(model)  # the server answers "<path>@main"
    assert reply.prompt_tokens > 16 and 1 <= reply.completion_tokens <= 6
    # Same weights, same chat template, lossless PNG, greedy: the server and the in-process model agree.
    assert reply.text == local_vlm.generate(SYSTEM, PROMPT, [_image()], max_tokens=6).text
    assert isinstance(client.list_models(), list)

    with pytest.raises(VLMError) as e:  # a server pinned to one model refuses others with HTTP 400
        OpenAICompatibleClient(base_url, model="some-other-model").generate(SYSTEM, PROMPT)
    assert e.value.reason == "http" and e.value.status == 400 and "400" in str(e.value)


# ---------------------------------------------------------------------------------- openai backend, failures

def test_server_down_fails_fast():
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    client = OpenAICompatibleClient(base_url, model="m", timeout_s=5.0)
    t0 = time.monotonic()
    with pytest.raises(VLMError) as e:
        client.generate(SYSTEM, PROMPT, [_image()])
    assert time.monotonic() - t0 < 5.0
    assert e.value.reason == "unreachable"
    assert base_url in str(e.value) and "down or unreachable" in str(e.value)


def test_silent_server_times_out(silent_server):
    client = OpenAICompatibleClient(silent_server, model="m", timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(VLMError) as e:
        client.generate(SYSTEM, PROMPT, [_image()])
    assert 0.9 <= time.monotonic() - t0 < 5.0
    assert e.value.reason == "timeout"
    assert "timed out" in str(e.value) and "timeout" in str(e.value)


@pytest.mark.parametrize("body", [{"foo": 1}, {"choices": []}, {"choices": [{"message": {"content": None}}]},
                                  b"<html>not json</html>", [1, 2]])
def test_garbage_reply_is_malformed(fake_server, body):
    fake_server.reply(200, body)
    with pytest.raises(VLMError, match="malformed") as e:
        OpenAICompatibleClient(fake_server.url, model="m").generate(SYSTEM, PROMPT)
    assert e.value.reason == "malformed"


def test_http_error_has_status_and_excerpt(fake_server):
    fake_server.reply(503, {"error": {"message": "model is loading " + "x" * 2000}})
    with pytest.raises(VLMError) as e:
        OpenAICompatibleClient(fake_server.url, model="m").generate(SYSTEM, PROMPT)
    msg = str(e.value)
    assert e.value.reason == "http" and e.value.status == 503
    assert "503" in msg and "model is loading" in msg and len(msg) < 600


def test_valid_reply_and_request_format(fake_server, monkeypatch):
    monkeypatch.setenv("SPATIALPIN_TEST_VLM_KEY", FAKE_KEY)
    fake_server.reply(200, _completion("hello"))
    img = _image(seed=3)
    client = OpenAICompatibleClient(fake_server.url + "/", model="fake-model", api_key_env="SPATIALPIN_TEST_VLM_KEY",
                                    extra_headers={"X-Trace": "abc"})
    reply = client.generate(SYSTEM, PROMPT, [img], max_tokens=17, temperature=0.0)
    assert reply.text == "hello"
    assert reply.model == "fake-model" and reply.prompt_tokens == 12 and reply.completion_tokens == 1

    (req,) = fake_server.requests
    assert req["method"] == "POST" and req["path"] == "/v1/chat/completions"
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert headers["content-type"] == "application/json" and headers["x-trace"] == "abc"
    body = req["json"]
    assert body["model"] == "fake-model" and body["max_tokens"] == 17 and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    user = body["messages"][1]
    assert user["role"] == "user"
    image_part, text_part = user["content"]
    assert text_part == {"type": "text", "text": PROMPT}
    assert image_part["type"] == "image_url"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    from PIL import Image

    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    np.testing.assert_array_equal(decoded, img)  # PNG is lossless


def test_no_key_no_authorization_and_jpeg(fake_server, monkeypatch):
    monkeypatch.delenv("SPATIALPIN_TEST_VLM_KEY", raising=False)
    fake_server.reply(200, _completion("hi"))
    client = OpenAICompatibleClient(fake_server.url, model="m", api_key_env="SPATIALPIN_TEST_VLM_KEY",
                                    image_format="jpeg")
    assert client.generate("", PROMPT, [_image()]).text == "hi"
    (req,) = fake_server.requests
    assert "authorization" not in {k.lower() for k in req["headers"]}
    assert [m["role"] for m in req["json"]["messages"]] == ["user"]  # no empty system turn
    assert req["json"]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_key_never_in_repr_or_errors(fake_server, monkeypatch):
    monkeypatch.setenv("SPATIALPIN_TEST_VLM_KEY", FAKE_KEY)
    client = OpenAICompatibleClient(fake_server.url, model="m", api_key_env="SPATIALPIN_TEST_VLM_KEY",
                                    extra_headers={"X-Secret": "header-secret-value"})
    assert FAKE_KEY not in repr(client) and "header-secret-value" not in repr(client)
    assert "SPATIALPIN_TEST_VLM_KEY" in repr(client)
    # A server that echoes the key back in its error body: the message must not carry it.
    fake_server.reply(401, {"error": f"invalid api key {FAKE_KEY}"})
    with pytest.raises(VLMError) as e:
        client.generate(SYSTEM, PROMPT)
    assert e.value.status == 401 and FAKE_KEY not in str(e.value) and FAKE_KEY not in repr(e.value)
    assert "***" in str(e.value)
    fake_server.reply(200, {"echo": FAKE_KEY})
    with pytest.raises(VLMError, match="malformed") as e:
        client.generate(SYSTEM, PROMPT)
    assert FAKE_KEY not in str(e.value)
    base_down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(VLMError) as e:
        OpenAICompatibleClient(base_down, model="m", api_key_env="SPATIALPIN_TEST_VLM_KEY").generate(SYSTEM, PROMPT)
    assert FAKE_KEY not in str(e.value)


def test_list_models_fake(fake_server):
    fake_server.reply(200, {"object": "list", "data": [{"id": "a"}, {"id": "b"}]})
    assert OpenAICompatibleClient(fake_server.url, model="a").list_models() == ["a", "b"]
    assert fake_server.requests[0]["method"] == "GET" and fake_server.requests[0]["path"] == "/v1/models"


# ---------------------------------------------------------------------------------- factory

def test_make_vlm_unknown_kind():
    with pytest.raises(ValueError) as e:
        make_vlm("nope")
    assert "openai" in str(e.value) and "transformers" in str(e.value)


def test_make_vlm_openai_and_bad_args():
    client = make_vlm("openai", base_url="http://127.0.0.1:1/v1", model="m")
    assert isinstance(client, OpenAICompatibleClient) and client.name == "openai:m"
    with pytest.raises(ValueError):
        OpenAICompatibleClient("127.0.0.1:8000", model="m")  # no scheme
    with pytest.raises(TypeError):
        make_vlm("openai", base_url="http://127.0.0.1:1/v1", model="m", no_such_param=1)


def test_the_processor_runs_on_bounded_torch_threads(tiny_vlm_path):
    """The processor (chat template, tokenizer, image processor) runs with at most
    ``encode_threads`` torch intra-op threads, and torch's setting is restored after it, also
    when the processor fails."""
    import torch

    vlm = TransformersVLM(tiny_vlm_path, device="cpu")
    assert vlm.encode_threads == 4
    seen = []
    real = vlm._processor.apply_chat_template

    def recording(*a, **kw):
        seen.append(torch.get_num_threads())
        return real(*a, **kw)

    vlm._processor.apply_chat_template = recording
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        vlm.encode_threads = 1
        assert vlm.generate(SYSTEM, PROMPT, [_image()], max_tokens=2).completion_tokens >= 1
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        vlm.encode_threads = 0                      # 0: torch's own setting
        vlm.generate(SYSTEM, PROMPT, [_image()], max_tokens=2)
        assert seen[-1] == 2

        def failing(*a, **kw):
            raise RuntimeError("broken template")

        vlm._processor.apply_chat_template = failing
        vlm.encode_threads = 1
        with pytest.raises(VLMError):
            vlm.generate(SYSTEM, PROMPT, [_image()], max_tokens=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
