"""The HTTP API against a real server on a loopback port: OpenAI client, SSE streams, auth, limits."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import time

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import API_KEY, SERVE_EXTRA, running_server

httpx = pytest.importorskip("httpx", reason=SERVE_EXTRA)
openai = pytest.importorskip("openai", reason="the official openai client is not installed")
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def client(base_url):
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def oai(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def _data_uri(image: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def _events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event name, data) of every server-sent event in a streamed response."""
    out, name = [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, line[6:]))
            name = "message"
    return out


# ---------------------------------------------------------------- OpenAI client


def test_openai_client_generates_images_equal_to_the_pipeline(oai, pipe):
    result = oai.images.generate(model="emu3", prompt="a red circle", n=2, size="32x32", response_format="b64_json",
                                 extra_body={"seed": 7})  # fmt: skip
    images = [_png(d.b64_json) for d in result.data]
    assert len(images) == 2 and all(i.shape == (32, 32, 3) for i in images)
    # Image i of a request is its own request seeded seed + i: the pipeline alone gives the same pixels.
    for i, image in enumerate(images):
        (expected,) = pipe.text_to_image("a red circle", image_size=(32, 32), seed=7 + i)
        np.testing.assert_array_equal(image, expected)


def test_openai_client_chats_about_an_image_like_the_pipeline(oai, pipe):
    from emu3.generate.pipeline import Turn

    image = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    content = [{"type": "image_url", "image_url": {"url": _data_uri(image)}}, {"type": "text", "text": "What is it?"}]
    reply = oai.chat.completions.create(model="emu3", messages=[{"role": "user", "content": content}])
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == pipe.chat([Turn("user", (image, "What is it?"))])
    assert reply.usage.completion_tokens <= pipe.cfg.max_answer_tokens
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_openai_client_streams_a_chat_answer(oai):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    whole = oai.chat.completions.create(model="emu3", messages=messages, max_tokens=8).choices[0].message.content
    chunks = list(oai.chat.completions.create(model="emu3", messages=messages, max_tokens=8, stream=True,
                                              stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and chunks[-1].usage.completion_tokens <= 8


def test_chat_completions_take_top_k_and_min_p(client):
    """The extensions top_k and min_p reach the sampler: at temperature 1 either of them set to keep only
    the likeliest token gives the greedy answer, which plain temperature-1 sampling does not."""
    body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "seed": 5}

    def said(**extra):
        r = client.post("/v1/chat/completions", json=body | extra)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    greedy = said()
    assert said(temperature=1.0, top_k=1) == greedy
    assert said(temperature=1.0, min_p=1.0) == greedy
    assert said(temperature=1.0) != greedy


# ---------------------------------------------------------------- SSE image stream


def test_image_stream_reports_rows_partial_images_and_the_final_image(client, pipe):
    body = {"prompt": "a blue square", "size": "32x32", "seed": 3}
    with client.stream("POST", "/v1/images/generations", json=body | {"stream": True, "partial_images": 3}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
    names = [n for n, _ in events]
    progress = [json.loads(d) for n, d in events if n == "image_generation.progress"]
    rows = progress[0]["rows"]
    assert [p["rows_done"] for p in progress] == list(range(1, rows + 1)) and rows == 32 // pipe.vq.cfg.spatial_factor
    assert names.count("image_generation.partial_image") == 3 and names[-1] == "image_generation.completed"
    first = names.index("image_generation.partial_image")
    done_before = names[:first].count("image_generation.progress")
    partial = _png(json.loads(events[first][1])["b64_json"])
    assert partial.shape == (32, 32, 3) and (partial[done_before * 32 // rows :] == 128).all()  # rows to come: grey
    final = _png(json.loads(events[-1][1])["b64_json"])
    plain = _png(client.post("/v1/images/generations", json=body).json()["data"][0]["b64_json"])
    np.testing.assert_array_equal(final, plain)


# ---------------------------------------------------------------- video


def test_video_generation_then_extension(client):
    first = client.post("/v1/videos/generations", json={"prompt": "a ball", "frames": 1, "size": "32x32", "seed": 1})
    assert first.status_code == 200, first.text
    clip = first.json()["data"][0]
    assert clip["mime_type"] == "image/gif" and clip["frames"] >= 1
    longer = client.post("/v1/videos/generations", json={"prompt": "a ball", "frames": 1, "video": clip["b64_json"]})
    assert longer.status_code == 200, longer.text
    assert longer.json()["data"][0]["frames"] > clip["frames"]
    gif = Image.open(io.BytesIO(base64.b64decode(longer.json()["data"][0]["b64_json"])))
    assert gif.n_frames == longer.json()["data"][0]["frames"] and gif.size == (32, 32)
    from emu3.serve import media

    given, out = (media.read_gif(base64.b64decode(c)) for c in (clip["b64_json"], longer.json()["data"][0]["b64_json"]))
    assert np.array_equal(out[: len(given)], given)  # the given frames come back as given, as from the pipeline


def test_a_video_longer_than_the_context_is_made_in_windows_as_the_pipeline_makes_it(client, pipe):
    from emu3.serve import media

    h, w = pipe.latent_size((32, 32))
    most = pipe.video_window(len(pipe.tok.encode("a ball")) + 1, h, w)
    assert most < 8  # the 8 latent frames asked for do not fit in one sequence
    r = client.post("/v1/videos/generations", json={"prompt": "a ball", "frames": 8, "size": "32x32", "seed": 4})
    assert r.status_code == 200, r.text
    got = media.read_gif(base64.b64decode(r.json()["data"][0]["b64_json"]))
    expected = pipe.extend_video(None, "a ball", new_frames=8, image_size=(32, 32), seed=4)
    assert len(got) == len(expected) == 8 * pipe.vq.cfg.temporal_downsample_factor
    np.testing.assert_array_equal(got, media.read_gif(base64.b64decode(media.gif_base64(expected, 8))))


def test_video_stream_reports_each_latent_frame_each_window_and_the_same_clip(client, pipe):
    from emu3.serve import media

    body = {"prompt": "a ball", "frames": 8, "size": "32x32", "seed": 4}  # more than one window holds
    with client.stream("POST", "/v1/videos/generations", json=body | {"stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
    names = [n for n, _ in events]
    progress = [json.loads(d) for n, d in events if n == "video_generation.progress"]
    assert [p["latent_frames_done"] for p in progress] == list(range(1, 9))
    windows = progress[0]["windows"]
    assert windows > 1 and sorted({p["window"] for p in progress}) == list(range(windows))
    partial = [json.loads(d) for n, d in events if n == "video_generation.partial_video"]
    assert [p["partial_video_index"] for p in partial] == list(range(windows - 1))
    assert names[-1] == "video_generation.completed" and "error" not in names
    t = pipe.vq.cfg.temporal_downsample_factor
    final = media.read_gif(base64.b64decode(json.loads(events[-1][1])["b64_json"]))
    plain = client.post("/v1/videos/generations", json=body).json()["data"][0]["b64_json"]
    plain = media.read_gif(base64.b64decode(plain))
    np.testing.assert_array_equal(final, plain)
    for p in partial:  # each partial clip is the start of the final one, up to that window's frames
        done = sum(1 for q in progress if q["window"] <= p["partial_video_index"])
        got = media.read_gif(base64.b64decode(p["b64_json"]))
        assert len(got) == p["frames"] == done * t
        np.testing.assert_array_equal(got, final[: len(got)])


def test_a_video_stream_that_fails_or_is_left_ends_its_requests(client, monkeypatch):
    from emu3.serve import tasks

    body = {"prompt": "a ball", "frames": 8, "size": "32x32", "seed": 4, "stream": True}

    def broken(*_args):
        raise RuntimeError("decoder exploded")

    # A failure after the 200 went out: an error event, and nothing left running.
    with monkeypatch.context() as patch:
        patch.setattr(tasks, "finish_video", broken)
        with client.stream("POST", "/v1/videos/generations", json=body) as r:
            events = _events(r)
    assert [n for n, _ in events][-1] == "error" and "video_generation.completed" not in [n for n, _ in events]
    assert json.loads(events[-1][1])["error"]["type"] == "server_error"
    _wait_until(lambda: client.get("/health").json()["rows_in_use"] == 0)
    # The client leaves after the first latent frame: the window it was in is cancelled.
    cancelled = _metric(client, "emu3_requests_cancelled_total")
    with client.stream("POST", "/v1/videos/generations", json=body) as r:
        next(line for line in r.iter_lines() if line.startswith("data: "))
    _wait_until(lambda: _metric(client, "emu3_requests_cancelled_total") == cancelled + 1)
    _wait_until(lambda: client.get("/health").json()["rows_in_use"] == 0)


# ---------------------------------------------------------------- auth, limits, errors


def test_auth_is_required_on_the_api_only(base_url):
    body = {"prompt": "x", "size": "32x32"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        r = httpx.post(f"{base_url}/v1/images/generations", json=body, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{base_url}/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0).images.generate(prompt="x")


IMG = "/v1/images/generations"
CHAT = "/v1/chat/completions"
VIDEO = "/v1/videos/generations"
USER = [{"role": "user", "content": "hi"}]


def _with_image(url: str) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}


def _with_part(part: dict) -> dict:
    return {"messages": [{"role": "user", "content": [part]}]}


BAD_REQUESTS = [
    (IMG, {"prompt": "x", "n": 9}, "n"),
    (IMG, {"prompt": "x", "n": 0}, "n"),
    (IMG, {"prompt": "x", "size": "30x30"}, "size"),
    (IMG, {"prompt": "x", "size": "128x128"}, "size"),  # over max_image_area
    (IMG, {"prompt": "x", "size": "big"}, "size"),
    (IMG, {"prompt": "x", "guidance_scale": 100}, "guidance_scale"),
    (IMG, {"prompt": "x", "guidance_scale": -1}, "guidance_scale"),
    (IMG, {"prompt": "x", "response_format": "url"}, "response_format"),
    (IMG, {"prompt": "x", "quality": "hd"}, "quality"),
    (IMG, {"prompt": "x", "seed": -1}, "seed"),
    (IMG, {"prompt": "x", "stream": True, "n": 2}, "n"),
    (IMG, {"n": 1}, "prompt"),
    (IMG, {"prompt": ""}, "prompt"),
    (IMG, {"prompt": "x" * 9000}, "prompt"),
    (IMG, {"prompt": "a <|image start|> b"}, "prompt"),
    (IMG, {"prompt": "x " * 1500}, "prompt"),  # too many tokens for the context
    (IMG, {"prompt": 5}, "prompt"),
    (IMG, [1, 2], None),
    (CHAT, {"messages": []}, "messages"),
    (CHAT, {"messages": USER, "n": 2}, "n"),
    (CHAT, {"messages": USER, "tools": []}, "tools"),
    (CHAT, {"messages": USER, "max_tokens": 100000}, "max_tokens"),
    (CHAT, {"messages": USER, "temperature": 5}, "temperature"),
    (CHAT, {"messages": USER, "min_p": 2}, "min_p"),
    (CHAT, {"messages": USER, "top_k": -1}, "top_k"),
    (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    (CHAT, {"messages": [{"role": "assistant", "content": "x"}]}, "messages[0].role"),
    (CHAT, {"messages": [*USER, {"role": "assistant", "content": "x"}]}, "messages"),
    (CHAT, _with_image("http://x/a.png"), "messages[0].content[0].image_url.url"),
    (CHAT, _with_image("data:image/png;base64,@@"), "messages[0].content[0].image_url.url"),
    (CHAT, _with_image("data:image/png;base64,AAAA"), "messages[0].content[0].image_url.url"),
    (CHAT, _with_image("data:image/gif;base64,AAAA"), "messages[0].content[0].image_url.url"),
    (CHAT, _with_part({"type": "text"}), "messages[0].content[0]"),
    (CHAT, _with_part({"type": "audio", "text": "x"}), "messages[0].content[0].type"),
    (VIDEO, {"prompt": "x", "frames": 99}, "frames"),
    (VIDEO, {"prompt": "x", "video": "bm90IGEgZ2lm"}, "video"),
    (VIDEO, {"prompt": "x", "fps": 0}, "fps"),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD_REQUESTS)
def test_bad_requests_get_a_400_naming_the_field(client, path, body, param):
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_malformed_json_and_oversized_bodies(client):
    r = client.post(IMG, content=b'{"prompt": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = client.post(IMG, content=b"x" * (8 * 1024 * 1024 + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(9):
            yield b"x" * (1024 * 1024)

    r = client.post(IMG, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get("/nowhere").status_code == 404 and "error" in client.get("/nowhere").json()
    assert client.get(IMG).status_code == 405


def test_a_full_queue_is_a_429_and_cancels_the_rest(pipe):
    # Two rows hold one guided image and the queue one more: the third image of n=3 finds no place.
    with running_server(pipe, max_batch=2, max_queue=1) as url:
        r = httpx.post(f"{url}{IMG}", json={"prompt": "x", "n": 3, "size": "32x32"}, timeout=60)
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        assert r.headers["retry-after"] == "1"
        _wait_until(lambda: httpx.get(f"{url}/health").json()["rows_in_use"] == 0)
        assert httpx.post(f"{url}{IMG}", json={"prompt": "x", "size": "32x32"}, timeout=60).status_code == 200


def test_client_disconnect_cancels_its_requests(base_url, client):
    cancelled = _metric(client, "emu3_requests_cancelled_total")
    # A stream: leave after the first row.
    with client.stream("POST", IMG, json={"prompt": "x", "size": "64x64", "stream": True}) as r:
        next(r.iter_lines())
    _wait_until(lambda: _metric(client, "emu3_requests_cancelled_total") == cancelled + 1)
    # A plain request: close the socket while eight images are being generated.
    body = json.dumps({"prompt": "x", "size": "64x64", "n": 8}).encode()
    head = f"POST {IMG} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    port = int(base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode() + body)
        _wait_until(lambda: _metric(client, "emu3_batch_requests") > 0)
    _wait_until(lambda: _metric(client, "emu3_requests_cancelled_total") == cancelled + 2)
    _wait_until(lambda: client.get("/health").json()["rows_in_use"] == 0)


# ---------------------------------------------------------------- health, metrics, docs, page

_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$|^.* \+Inf$')


def test_health_metrics_docs_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["max_rows"] == 8
    assert health["model"] == health["chat_model"] == "emu3"  # one model draws and answers
    assert client.post(CHAT, json={"messages": USER, "model": "gpt-4o", "max_tokens": 2}).json()["model"] == "emu3"
    client.post(IMG, json={"prompt": "x", "size": "32x32"})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = [line for line in metrics.text.splitlines() if line and not line.startswith("#")]
    assert all(_SAMPLE.match(line) for line in lines), [line for line in lines if not _SAMPLE.match(line)]
    names = ("emu3_queue_depth", "emu3_batch_rows", "emu3_tokens_per_second", "emu3_request_latency_seconds_bucket")
    for name in names:
        assert any(line.startswith(name) for line in lines), name
    assert _metric(client, "emu3_tokens_per_second") > 0
    assert 'emu3_request_latency_seconds_count{route="/v1/images/generations"}' in metrics.text
    spec = client.get("/openapi.json").json()
    assert {IMG, CHAT, VIDEO, "/health", "/metrics"} <= set(spec["paths"])
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and "<script>" in page.text and IMG in page.text


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


def _wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_a_question_first_model_reads_the_question_before_the_image_however_the_client_orders_them(pipe):
    pytest.importorskip("pydantic")
    from emu3.serve.config import Limits
    from emu3.serve.schemas import ChatCompletionRequest
    from emu3.serve.tasks import chat_job

    image = {"type": "image_url", "image_url": {"url": _data_uri(np.full((32, 32, 3), 90, np.uint8))}}
    text = {"type": "text", "text": "What is it?"}

    def prompt(p, parts):
        body = ChatCompletionRequest(messages=[{"role": "user", "content": parts}])
        return chat_job(p, Limits(), body, max_len=4096).request.prompt

    first = pipe.with_config(question_first=True)
    assert prompt(first, [image, text]) == prompt(first, [text, image]) == prompt(pipe, [text, image])
    assert prompt(pipe, [image, text]) != prompt(pipe, [text, image])  # as given by default (BAAI's layout)
