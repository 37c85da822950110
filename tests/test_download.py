"""Published-head registry and the safe downloader, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import os
import socket
import stat
import sys
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from readout_core.heads.download import DownloadCancelled, download_and_load_head, download_head, manual_download_hint
from readout_core.errors import HeadFileError
from readout_core.heads.files import load_head
from readout_core.heads.published import (
    PUBLISHED_HEADS,
    find_published_head,
    get_published_head,
    published_head_names,
)
from published_spec import published_config, published_state_dict

TINY_DIMS = [256, 128, 128, 64]
POSE = "readout_sdv15_spatial_pose.pt"


def head_bytes(output_channels=3, **config_kw) -> bytes:
    """A small checkpoint laid out like the released ones (step, config, weights, optimizer state)."""
    state = published_state_dict(TINY_DIMS, projection_dim=128, output_channels=output_channels, seed=3)
    config = published_config(TINY_DIMS, output_channels=output_channels, projection_dim=128, **config_kw)
    buffer = io.BytesIO()
    torch.save({"step": 5000, "config": config, "aggregation_network": state, "optimizer_state_dict": {}}, buffer)
    return buffer.getvalue()


POSE_BYTES = head_bytes(control_type="pose", run_name="readout_sdv15_spatial_pose")


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (status, headers, body, content_length)``.

    ``content_length`` None sends the body's length, an int sends that number (a lie
    when it exceeds the body: the connection then closes early), -1 sends none.
    """

    def do_GET(self):  # noqa: N802 (http.server API)
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404, "Not Found")
            return
        status, headers, body, length = route
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if length != -1:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Keep proxies from the environment away from 127.0.0.1."""
    for key in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def serve(server, path, body, status=200, headers=None, length=None) -> str:
    server.routes[path] = (status, {"Content-Type": "application/octet-stream", **(headers or {})}, body, length)
    return server.base + path + "?download=true"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_manual_hint(message: str, url: str, folder: Path, name: str = POSE) -> None:
    assert f"Could not download {name}" in message
    assert url in message and str(folder / name) in message
    assert "retry" in message


# --- registry -----------------------------------------------------------------------------------------


def test_registry_has_the_twelve_published_heads():
    names = published_head_names()
    assert len(PUBLISHED_HEADS) == 12 and len(set(names)) == 12
    assert names == [head.name for head in PUBLISHED_HEADS]
    for head in PUBLISHED_HEADS:
        assert head.url.startswith("https://huggingface.co/g-luo/readout-guidance/resolve/main/")
        assert head.url.endswith(f"/{head.name}?download=true")
        assert head.name.startswith("readout_") and head.name.endswith(".pt")
        assert head.family == ("sdxl" if "_sdxl_" in head.name else "sd15")
        assert ("_sdv15_" in head.name) == (head.family == "sd15")
        folder = "readout_pose" if head.kind == "keypoint" else "weights"
        assert f"/resolve/main/{folder}/{head.name}" in head.url
        if head.kind == "spatial":
            assert head.control_type in ("pose", "depth", "edge")
            assert head.name.endswith(f"_spatial_{head.control_type}.pt")
        elif head.kind == "keypoint":
            assert head.name.endswith("_pose_keypoint.pt") and head.control_type == "pose_keypoint"
        else:
            assert head.kind in ("appearance", "correspondence") and head.name.endswith(f"_drag_{head.kind}.pt")
            assert head.control_type is None
    kinds = [(h.family, h.kind) for h in PUBLISHED_HEADS]
    for family in ("sd15", "sdxl"):
        assert kinds.count((family, "spatial")) == 3
        assert all(kinds.count((family, kind)) == 1 for kind in ("keypoint", "appearance", "correspondence"))


def test_registry_lookup_by_name_stem_and_subfolder():
    head = find_published_head("readout_sdxl_drag_appearance.pt")
    assert head is not None and (head.kind, head.family) == ("appearance", "sdxl")
    assert find_published_head("readout_sdxl_drag_appearance") is head
    assert find_published_head("published/readout_sdxl_drag_appearance.pt") is head
    assert find_published_head("readout_sdxl_drag_appearance.safetensors") is None
    assert find_published_head("pose.pt") is None
    with pytest.raises(HeadFileError, match="readout_sdv15_spatial_pose.pt"):
        get_published_head("pose.pt")
    published_head_names().clear()  # a fresh list each call
    assert len(published_head_names()) == 12


# --- successful downloads -------------------------------------------------------------------------------


def test_download_valid_head_with_progress(server, tmp_path):
    url = serve(server, "/weights/" + POSE, POSE_BYTES)
    calls = []
    folder = tmp_path / "readout_heads"
    path = download_head(POSE, folder, progress=lambda *args: calls.append(args), url=url, chunk_size=4096)
    assert path == folder / POSE and path.read_bytes() == POSE_BYTES
    assert sorted(os.listdir(folder)) == [POSE]
    dones = [done for done, _ in calls]
    assert dones[0] == 0 and dones[-1] == len(POSE_BYTES) and len(dones) > 3
    assert all(a < b for a, b in zip(dones, dones[1:]))
    assert {total for _, total in calls} == {len(POSE_BYTES)}
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert load_head(path).info.control_type == "pose"


def test_download_without_content_length_and_via_same_origin_redirect(server, tmp_path):
    serve(server, "/file.pt", POSE_BYTES, length=-1)
    url = serve(server, "/redirect", b"", status=302, headers={"Location": "/file.pt"})
    calls = []
    path = download_head(get_published_head(POSE), tmp_path, progress=lambda *a: calls.append(a), url=url)
    assert path.read_bytes() == POSE_BYTES and os.listdir(tmp_path) == [POSE]
    assert calls[-1] == (len(POSE_BYTES), None)


def test_download_and_load_returns_the_checked_head_without_reading_the_file_again(server, tmp_path, monkeypatch):
    import dataclasses

    import readout_core.heads.download as download_module

    published = dataclasses.replace(get_published_head(POSE), url=serve(server, "/pose.pt", POSE_BYTES))
    reads = []
    real_read = download_module.read_head_file
    monkeypatch.setattr(download_module, "read_head_file", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    head = download_and_load_head(published, tmp_path)
    assert len(reads) == 1 and ".partial" in str(reads[0][0])  # only the check of the download read it
    expected = load_head(tmp_path / POSE)
    assert head.info == expected.info and not head.training
    assert not any(p.requires_grad for p in head.parameters())
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in head.state_dict().items())
    again = download_and_load_head(published, tmp_path)  # already there: loaded from the file, no network
    assert len(reads) == 1 and again.info == expected.info


def test_existing_file_is_kept_unless_overwrite(server, tmp_path):
    (tmp_path / POSE).write_bytes(b"old")
    offline = f"http://127.0.0.1:{unused_port()}/x.pt"
    assert download_head(POSE, tmp_path, url=offline).read_bytes() == b"old"  # no network needed
    url = serve(server, "/x.pt", POSE_BYTES)
    assert download_head(POSE, tmp_path, url=url, overwrite=True).read_bytes() == POSE_BYTES
    assert os.listdir(tmp_path) == [POSE]


# --- failures leave nothing behind -------------------------------------------------------------------------


def test_truncated_response_is_rejected(server, tmp_path):
    url = serve(server, "/x.pt", POSE_BYTES[:5000], length=len(POSE_BYTES))
    with pytest.raises(HeadFileError) as info:
        download_head(POSE, tmp_path, url=url)
    message = str(info.value)
    assert f"after 5000 of {len(POSE_BYTES)} bytes" in message
    assert_manual_hint(message, url, tmp_path)
    assert os.listdir(tmp_path) == []


def test_truncated_response_without_length_fails_the_head_check(server, tmp_path):
    url = serve(server, "/x.pt", POSE_BYTES[: len(POSE_BYTES) // 2], length=-1)
    with pytest.raises(HeadFileError, match="not a usable readout head") as info:
        download_head(POSE, tmp_path, url=url)
    assert ".partial" not in str(info.value)  # the message names the head, not the temporary file
    assert os.listdir(tmp_path) == []


def test_http_404_names_manual_download(server, tmp_path):
    url = server.base + "/missing/" + POSE + "?download=true"
    with pytest.raises(HeadFileError) as info:
        download_head(POSE, tmp_path / "heads", url=url)
    message = str(info.value)
    assert "HTTP 404" in message
    assert_manual_hint(message, url, tmp_path / "heads")
    assert os.listdir(tmp_path / "heads") == []


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html; charset=utf-8", "web page"),
        (b"\n<html><body>Sign in</body></html>", "application/octet-stream", "web page"),
        (b"\x00\x01 not a checkpoint at all" * 10, "application/octet-stream", "not a usable readout head"),
    ],
)
def test_served_file_that_is_not_a_head(server, tmp_path, body, content_type, expected):
    url = serve(server, "/x.pt", body, headers={"Content-Type": content_type})
    with pytest.raises(HeadFileError, match=expected) as info:
        download_head(POSE, tmp_path, url=url)
    assert_manual_hint(str(info.value), url, tmp_path)
    assert os.listdir(tmp_path) == []


def test_valid_head_of_the_wrong_kind_is_rejected(server, tmp_path):
    url = serve(server, "/x.pt", POSE_BYTES)  # an SD1.5 pose head served for the SDXL depth head
    with pytest.raises(HeadFileError, match="spatial head for SD15.*depth spatial head for SDXL"):
        download_head("readout_sdxl_spatial_depth.pt", tmp_path, url=url)
    assert os.listdir(tmp_path) == []


def test_unreachable_host_gives_offline_message(tmp_path):
    url = f"http://127.0.0.1:{unused_port()}/weights/{POSE}?download=true"
    with pytest.raises(HeadFileError) as info:
        download_head(POSE, tmp_path, url=url, timeout=2)
    message = str(info.value)
    assert message.startswith(f"Could not download {POSE} (")
    assert "offline" in message
    assert_manual_hint(message, url, tmp_path)
    assert os.listdir(tmp_path) == []


def test_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.pt"
        with pytest.raises(HeadFileError, match=r"no answer within 0\.3 s"):
            download_head(POSE, tmp_path, url=url, timeout=0.3)
    assert os.listdir(tmp_path) == []


def test_registry_url_is_named_when_offline(tmp_path):
    class OfflineOpener:
        def open(self, request, timeout=None):
            assert request.full_url == get_published_head(POSE).url
            raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    with pytest.raises(HeadFileError) as info:
        download_head(POSE, tmp_path, opener=OfflineOpener())
    message = str(info.value)
    assert "could not be resolved" in message and "offline" in message
    assert message.endswith(manual_download_hint(POSE, get_published_head(POSE).url, tmp_path / POSE))
    assert os.listdir(tmp_path) == []


def test_redirect_away_from_https_is_refused(server, tmp_path):
    other = f"http://localhost:{server.server_address[1]}/file.pt"  # another origin, plain http
    serve(server, "/file.pt", POSE_BYTES)
    url = serve(server, "/redirect", b"", status=302, headers={"Location": other})
    with pytest.raises(HeadFileError, match="not an https address") as info:
        download_head(POSE, tmp_path, url=url)
    assert_manual_hint(str(info.value), url, tmp_path)
    assert os.listdir(tmp_path) == []


def test_unsupported_scheme_and_unsafe_names(tmp_path):
    with pytest.raises(HeadFileError, match="only http and https"):
        download_head(POSE, tmp_path, url=f"file://{tmp_path}/x.pt")
    for name in ("../evil.pt", "sub/x.pt", "x.exe", "..", ""):
        with pytest.raises(HeadFileError):
            download_head(name, tmp_path, url="http://127.0.0.1:9/x.pt")
    with pytest.raises(HeadFileError, match="not one of the published"):
        download_head("my_head.pt", tmp_path)
    assert os.listdir(tmp_path) == []


# --- stopping -------------------------------------------------------------------------------------------


def test_should_stop_mid_download_aborts_and_cleans_up(server, tmp_path):
    url = serve(server, "/x.pt", POSE_BYTES)
    calls = []

    def should_stop():
        return bool(calls) and calls[-1][0] >= 2048  # after two chunks

    with pytest.raises(DownloadCancelled, match="cancelled"):
        download_head(POSE, tmp_path, progress=lambda *a: calls.append(a), should_stop=should_stop, url=url,
                      chunk_size=1024)
    assert isinstance(DownloadCancelled("x"), HeadFileError)
    assert calls[-1][0] == 2048
    assert os.listdir(tmp_path) == []


def test_callback_exceptions_and_keyboard_interrupt_propagate_after_cleanup(server, tmp_path):
    url = serve(server, "/x.pt", POSE_BYTES)

    class HostInterrupted(Exception):
        pass

    def host_interrupt():
        raise HostInterrupted

    with pytest.raises(HostInterrupted):
        download_head(POSE, tmp_path, should_stop=host_interrupt, url=url)

    def progress(done, total):
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_head(POSE, tmp_path, progress=progress, url=url, chunk_size=1024)
    assert os.listdir(tmp_path) == []


def test_local_write_errors_are_reported_but_callback_os_errors_propagate(server, tmp_path, monkeypatch):
    url = serve(server, "/x.pt", POSE_BYTES)

    def progress(done, total):
        if done > 0:
            raise PermissionError("the caller's own failure")

    with pytest.raises(PermissionError, match="caller's own"):
        download_head(POSE, tmp_path, progress=progress, url=url)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(HeadFileError, match="No space left on device") as info:
        download_head(POSE, tmp_path, url=url)
    assert_manual_hint(str(info.value), url, tmp_path)
    assert os.listdir(tmp_path) == []
