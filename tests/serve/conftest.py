"""Fixtures for the serve tests: a tiny random pipeline and real uvicorn servers on loopback ports.

Every server listens on 127.0.0.1 on a port the OS picks, runs in a thread of the test process and
is shut down at the end of the module that started it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

API_KEY = "test-key"
SERVE_EXTRA = "the serve extra is not installed: pip install 'emu3[serve]'"


def need_serve_extra() -> None:
    for module in ("fastapi", "uvicorn", "httpx"):
        pytest.importorskip(module, reason=SERVE_EXTRA)


@pytest.fixture(scope="session")
def pipe():
    pytest.importorskip("emu3.vision.vq", reason="emu3.vision (the VQ tokenizer) is not available")
    from tests.helpers.tiny_pipeline import tiny_pipeline

    return tiny_pipeline()


@contextmanager
def running_server(pipe, reader=None, **config) -> Iterator[str]:
    """Serve `pipe` (and `reader` for chat) with ServeConfig(**config) on a free loopback port; yields
    the base URL."""
    need_serve_extra()
    import uvicorn

    from emu3.serve.app import build_app
    from emu3.serve.config import ServeConfig

    app = build_app(pipe, ServeConfig(**config), reader)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def base_url(pipe) -> Iterator[str]:
    """A server with the default limits and an API key."""
    from emu3.serve.config import Limits

    with running_server(pipe, api_key=API_KEY, max_batch=8, max_queue=16, limits=Limits(max_image_area=64 * 64)) as url:
        yield url


@pytest.fixture(scope="module")
def open_url(pipe) -> Iterator[str]:
    """A server without an API key (for schemathesis and the browser)."""
    with running_server(pipe, max_batch=8, max_queue=16) as url:
        yield url
