"""A server with an understanding model beside the generation model (Emu3-Chat beside Emu3-Gen):
chat completions are answered by the reader, on its own scheduler; images still by the generator."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from tests.serve.conftest import SERVE_EXTRA, running_server

httpx = pytest.importorskip("httpx", reason=SERVE_EXTRA)


@pytest.fixture(scope="module")
def reader(pipe):
    from tests.helpers.tiny_pipeline import tiny_pipeline

    return tiny_pipeline(seed=1, vq=pipe.vq)  # other weights, the same vision tokenizer (as chat/ has)


def _png(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_chat_goes_to_the_reader_and_images_to_the_generator(pipe, reader):
    from emu3.generate.pipeline import Turn

    image = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    turn = [Turn("user", (image, "What is it?"))]
    assert reader.chat(turn) != pipe.chat(turn)  # else this test could not tell them apart
    content = [{"type": "image_url", "image_url": {"url": _png(image)}}, {"type": "text", "text": "What is it?"}]
    with running_server(pipe, reader, max_batch=4, max_queue=8) as url:
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["status"] == "ok" and health["max_rows"] == 8  # two schedulers of 4 rows
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]},
                       timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == reader.chat(turn)
        assert r.json()["model"] == health["chat_model"] == "emu3-chat" and health["model"] == "emu3"
        body = {"prompt": "a blue square", "size": "32x32", "seed": 3}
        r = httpx.post(f"{url}/v1/images/generations", json=body, timeout=60)
        assert r.status_code == 200, r.text
        from PIL import Image

        served = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"]))).convert("RGB"))
        assert np.array_equal(served, pipe.text_to_image("a blue square", image_size=(32, 32), seed=3)[0])
        assert "emu3_generated_tokens_total" in httpx.get(f"{url}/metrics", timeout=10).text


def test_serve_command_answers_chat_with_the_folders_understanding_model(pipe, reader, tmp_path, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn", reason=SERVE_EXTRA)
    from emu3.cli import main

    folder = pipe.save(tmp_path / "model")
    reader.save(folder / "chat")
    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: apps.append(app))
    main(["serve", "--model", str(folder), "--dtype", "fp32", "--port", "0"])
    main(["serve", "--model", str(folder), "--dtype", "fp32", "--port", "0", "--generation-model"])
    with_reader, without = (a.state.server for a in apps)
    assert with_reader.reader is not with_reader.pipe and with_reader.chat_worker is not with_reader.worker
    assert without.reader is without.pipe and without.workers == [without.worker]
