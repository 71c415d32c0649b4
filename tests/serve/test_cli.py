"""`emu3 serve` end to end: a saved tiny model folder, a server process on a loopback port, one image."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.serve.conftest import SERVE_EXTRA, need_serve_extra

httpx = pytest.importorskip("httpx", reason=SERVE_EXTRA)


def test_serve_command_loads_a_folder_and_answers(pipe, tmp_path):
    need_serve_extra()
    from tests.helpers.tiny_pipeline import save_tiny_pipeline

    model, vq = save_tiny_pipeline(tmp_path, pipe)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "emu3", "serve", "--model", str(model), "--vq", str(vq), "--dtype", "fp32",
               "--port", str(port), "--api-key", "k", "--max-batch", "4", "--queue", "4"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=1).json()["max_rows"] == 4:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "emu3 serve did not come up"
            time.sleep(0.2)
        r = httpx.post(f"{url}/v1/images/generations", json={"prompt": "x", "seed": 1},
                       headers={"Authorization": "Bearer k"}, timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        assert base64.b64decode(r.json()["data"][0]["b64_json"]).startswith(b"\x89PNG")
    finally:
        server.terminate()
        server.wait(20)


def test_serve_without_the_extra_names_it(monkeypatch):
    from emu3.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now raises ImportError
    with pytest.raises(SystemExit, match=r"pip install 'emu3\[serve\]'"):
        main(["serve", "--port", "0"])
