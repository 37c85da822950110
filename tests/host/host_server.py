"""A real ComfyUI server with the pack installed, for tests that talk to it over HTTP.

The server runs from the host folder with a temporary ``--base-directory`` whose
``custom_nodes`` holds a link to this pack, so nothing is written into the host.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from host_support import PACK_DIR

PACK_FOLDER_NAME = "comfyui-readout-guidance"
START_TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> object:
    """GET ``url`` and parse the JSON body."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


@contextmanager
def running_server(host: Path, base: Path, python: str = sys.executable) -> Iterator[str]:
    """Start ComfyUI (CPU) with the pack; yield its base URL; stop it on exit."""
    custom_nodes = base / "custom_nodes"
    custom_nodes.mkdir(parents=True, exist_ok=True)
    (custom_nodes / PACK_FOLDER_NAME).symlink_to(PACK_DIR, target_is_directory=True)
    port = _free_port()
    log = (base / "server.log").open("w")
    process = subprocess.Popen(
        [python, str(host / "main.py"), "--cpu", "--disable-auto-launch", "--listen", "127.0.0.1", "--port",
         str(port), "--base-directory", str(base)],
        cwd=host, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {process.returncode}; see {base / 'server.log'}")
            try:
                get_json(f"{url}/system_stats")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ComfyUI did not start in {START_TIMEOUT} s; see {base / 'server.log'}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
