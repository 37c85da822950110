"""Download a published readout head into a folder, safely (standard library only).

`download_head` fetches one head with `urllib` and only ever leaves either nothing or
a complete, checked head file behind:

- The bytes go to a hidden temporary file in the destination folder (`atomic_file`,
  e.g. ``.readout_sdxl_spatial_pose.4242.0.partial.pt``), renamed only when complete.
- The size is checked against ``Content-Length`` when the server sends one, the file
  is opened with `read_head_file` (weights-only unpickling) and built strictly with
  `build_head`; for a published head its kind, family and control type must match
  the registry. Only then is it made world-readable and renamed to ``<folder>/<name>``.
- On any failure the temporary file is removed. Network, HTTP, size and format
  problems raise `HeadFileError` whose message names the URL to fetch by hand and
  the exact path to save it as. Exceptions raised by the caller's own callbacks
  (``progress``, ``should_stop``) and ``KeyboardInterrupt`` propagate unchanged
  (after the clean-up), so a host's own "interrupted" exception keeps its meaning.
- A process killed outright (SIGKILL, power loss) can leave a hidden ``*.partial.*``
  file behind; it is never mistaken for the head itself and can be deleted.

Redirects: Hugging Face answers ``/resolve/`` with a redirect to its CDN over https.
The default opener follows at most `MAX_REDIRECTS` redirects, and only to https
addresses or to the same scheme and host as the address being redirected (so an
https download is never downgraded to http, and never sent to ``file:``/``ftp:``).
A caller-supplied ``opener`` is used as given, with its own redirect rules. Proxies
set in the environment (``https_proxy`` ...) are honoured, as `urllib` does.

Timeouts: ``timeout`` seconds for connecting and for each read from the socket.
"""

from __future__ import annotations

import http.client
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ..atomic_files import SaveFailed, atomic_file
from ..errors import HeadFileError
from .files import HEAD_EXTENSIONS, build_head, load_head, read_head_file, ready_for_guidance
from .network import ReadoutHead
from .published import PublishedHead, find_published_head, get_published_head

DEFAULT_TIMEOUT = 30.0
CHUNK_SIZE = 256 * 1024
MAX_BYTES = 512 * 1024 * 1024  # published heads are ~20-110 MB with their optimizer state
MAX_REDIRECTS = 5
USER_AGENT = "comfyui-readout-guidance (python urllib)"

ProgressCallback = Callable[[int, "int | None"], None]


class DownloadCancelled(HeadFileError):
    """The download was stopped because ``should_stop()`` returned True; nothing was kept."""


class _RedirectRefused(Exception):
    """Raised by the redirect handler; turned into a `HeadFileError` by `download_head`."""


class _Failure(Exception):
    """Internal: a reason (for the user-facing message) why the download failed."""


class _HttpsOnlyRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https, or within the same scheme and host."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib API)
        old, new = urlsplit(req.full_url), urlsplit(newurl)
        if new.scheme != "https" and (new.scheme, new.netloc) != (old.scheme, old.netloc):
            raise _RedirectRefused(
                f"the server redirected to {new.scheme}://{new.netloc}/…, which is not an https address; "
                "redirects are only followed to https"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def build_opener() -> urllib.request.OpenerDirector:
    """The opener `download_head` uses by default (environment proxies, https-only redirects)."""
    return urllib.request.build_opener(_HttpsOnlyRedirectHandler())


def manual_download_hint(name: str, url: str, destination: str | os.PathLike[str]) -> str:
    """The sentence telling a user how to fetch a head by hand."""
    return (
        f"Download it from {url} and save it as {destination} (the file name must stay {name}), "
        "or run the workflow again to retry the download."
    )


def download_head(
    head: str | PublishedHead,
    folder: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    overwrite: bool = False,
    opener: urllib.request.OpenerDirector | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """Download a readout head to ``<folder>/<name>`` and return that path.

    Args:
        head: a `PublishedHead`, or a published file name or stem (see
            `find_published_head`). With ``url`` given, any plain head file name
            (``*.pt``, ``*.pth``, ``*.safetensors``) is accepted.
        folder: the heads folder; created if missing.
        progress: called as ``progress(done_bytes, total_bytes_or_None)`` once before
            the first chunk and after every chunk.
        should_stop: checked before connecting and between chunks; when it returns
            True the download stops, the partial file is removed and
            `DownloadCancelled` (a `HeadFileError`) is raised. It may instead raise its
            own exception (e.g. the host's interrupt), which propagates after clean-up.
        url: download from this address instead of the registry's (mirrors, tests).
            http or https; redirects still follow the https-only rule.
        timeout: seconds allowed for connecting and for each read.
        overwrite: replace an existing file. Without it an existing
            ``<folder>/<name>`` is returned at once, without any network access.
        opener: a `urllib.request.OpenerDirector` to use instead of `build_opener()`.
        chunk_size: bytes read per chunk.
        max_bytes: refuse responses larger than this (no readout head is that big).

    Raises:
        HeadFileError: the download failed or the file received is not the expected
            readout head; the message names the URL and destination for a manual download.
        DownloadCancelled: ``should_stop()`` returned True.
    """
    return _download(head, folder, progress, should_stop, url, timeout, overwrite, opener, chunk_size, max_bytes)[0]


def download_and_load_head(head: str | PublishedHead, folder: str | os.PathLike[str],
                           progress: ProgressCallback | None = None, *,
                           should_stop: Callable[[], bool] | None = None) -> ReadoutHead:
    """`download_head`, then the head itself as `load_head` gives it. A head downloaded now is the
    one the download already checked (the file is not read again); one already there is loaded."""
    path, verified = _download(head, folder, progress, should_stop, None, DEFAULT_TIMEOUT, False, None, CHUNK_SIZE,
                               MAX_BYTES)
    return ready_for_guidance(verified) if verified is not None else load_head(path)


def _download(head, folder, progress, should_stop, url, timeout, overwrite, opener, chunk_size,
              max_bytes) -> tuple[Path, ReadoutHead | None]:
    """The download itself: (its path, the checked head, or None when the file was already there)."""
    entry, name = _resolve(head, url)
    source = url or entry.url  # type: ignore[union-attr]
    folder = Path(folder)
    destination = folder / name

    def fail(reason: str) -> HeadFileError:
        return HeadFileError(f"Could not download {name} ({reason}). {manual_download_hint(name, source, destination)}")

    if urlsplit(source).scheme not in ("http", "https"):
        raise fail(f"unsupported address {source!r}: only http and https downloads are made")
    if destination.exists() and not overwrite:
        return destination, None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"the folder {folder} cannot be created: {exc}") from exc

    _check_stop(should_stop, name)
    try:
        with atomic_file(destination) as temp:
            with open(temp, "wb") as out:
                _fetch(source, out, opener or build_opener(), timeout, progress, should_stop, name, chunk_size,
                       max_bytes)
            verified = _verify(temp, entry, name)
    except _Failure as exc:
        raise fail(str(exc)) from exc.__cause__
    except _RedirectRefused as exc:
        raise fail(str(exc)) from None
    except SaveFailed as exc:  # no temporary file in the folder, or the finished file cannot be renamed
        raise fail(str(exc)) from exc
    return destination, verified


def _resolve(head: str | PublishedHead, url: str | None) -> tuple[PublishedHead | None, str]:
    if isinstance(head, PublishedHead):
        return head, head.name
    entry = find_published_head(head)
    if entry is not None:
        return entry, entry.name
    name = str(head)
    if url is None:
        entry = get_published_head(name)  # not published: raises HeadFileError listing the known names
        return entry, entry.name
    plain = Path(name).name == name and "\\" not in name and name not in ("", ".", "..")
    if not plain or Path(name).suffix.lower() not in HEAD_EXTENSIONS:
        raise HeadFileError(
            f"Cannot download to {name!r}: give a plain head file name ending in {', '.join(HEAD_EXTENSIONS)}."
        )
    return None, name


def _check_stop(should_stop: Callable[[], bool] | None, name: str) -> None:
    if should_stop is not None and should_stop():
        raise DownloadCancelled(f"Download of {name} was cancelled; nothing was saved.")


def _fetch(
    source: str,
    out,
    opener: urllib.request.OpenerDirector,
    timeout: float,
    progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
    name: str,
    chunk_size: int,
    max_bytes: int,
) -> None:
    request = urllib.request.Request(source, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _Failure(_http_reason(exc.code, exc.reason)) from exc
    except urllib.error.URLError as exc:
        raise _Failure(_network_reason(exc.reason, timeout)) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _Failure(_network_reason(exc, timeout)) from exc
    with response:
        status = getattr(response, "status", 200)
        if not 200 <= status < 300 or status == 206:
            raise _Failure(_http_reason(status, getattr(response, "reason", "")))
        content_type = (response.headers.get("Content-Type") or "").lower()
        if content_type.startswith("text/html"):
            raise _Failure("the server sent a web page (text/html) instead of the head file")
        total = _content_length(response.headers.get("Content-Length"))
        if total is not None and total > max_bytes:
            raise _Failure(f"the server announced {total} bytes, more than any readout head ({max_bytes} bytes)")
        done = 0
        if progress is not None:
            progress(done, total)
        # Every pass reads at least one byte or ends the loop, and `done` is capped by
        # `max_bytes`, so the loop is bounded; each read is bounded by `timeout`.
        while True:
            _check_stop(should_stop, name)
            want = chunk_size if total is None else max(0, min(chunk_size, total - done))
            if want == 0:
                break
            try:
                chunk = response.read(want)
            except (OSError, http.client.HTTPException) as exc:
                raise _Failure(
                    f"the connection failed after {done} of {_of(total)} bytes: {_network_reason(exc, timeout)}"
                ) from exc
            if not chunk:
                break
            _write(out, chunk)
            done += len(chunk)
            if done > max_bytes:
                raise _Failure(f"the server sent more than {max_bytes} bytes, more than any readout head")
            if progress is not None:
                progress(done, total)
    if total is not None and done != total:
        raise _Failure(f"the connection closed after {done} of {total} bytes; the file is incomplete")
    if done == 0:
        raise _Failure("the server sent an empty file")
    _write(out, None)


def _write(out, chunk: bytes | None) -> None:
    """Write a chunk, or with None flush Python's buffer (`atomic_file` syncs the disk); local errors become a
    `_Failure`."""
    try:
        if chunk is None:
            out.flush()
        else:
            out.write(chunk)
    except OSError as exc:
        raise _Failure(f"writing the downloaded file failed: {exc}") from exc


def _verify(temp: Path, entry: PublishedHead | None, name: str) -> ReadoutHead:
    """The downloaded head, built strictly; a `_Failure` if it is not the head ``name`` should be."""
    try:
        try:
            with open(temp, "rb") as handle:
                start = handle.read(64).lstrip().lower()
        except OSError as exc:
            raise _Failure(f"the downloaded file cannot be read back: {exc}") from exc
        if start.startswith((b"<!doctype html", b"<html")):
            raise _Failure("the server sent a web page (HTML) instead of the head file")
        info, state_dict = read_head_file(temp, kind=entry.kind if entry else None)
        head = build_head(info, state_dict, source=name)
    except HeadFileError as exc:
        # Messages name the temporary file; say it of the download instead.
        message = str(exc).replace(temp.name, name).replace(str(temp), name)
        raise _Failure(f"the file received is not a usable readout head: {message}") from exc
    if entry is not None and (info.kind, info.family, info.control_type) != (entry.kind, entry.family,
                                                                              entry.control_type):
        raise _Failure(f"the file received is a {info.describe()}, but {name} is the {entry.describe()}")
    return head


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value.strip())
    except ValueError:
        return None
    return length if length >= 0 else None


def _http_reason(code: int, reason: object) -> str:
    text = f"HTTP {code} {reason}".strip()
    if code == 404:
        return f"{text}: the file is not at that address"
    if code in (401, 403):
        return f"{text}: the server refused access"
    if code == 429 or code >= 500:
        return f"{text}: the server is busy or failing, try again later"
    return text


def _network_reason(reason: object, timeout: float) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason):
        return f"no answer within {timeout:g} s; are you offline?"
    if isinstance(reason, socket.gaierror):
        return f"the host name could not be resolved ({reason}); are you offline?"
    if isinstance(reason, ConnectionRefusedError):
        return f"the connection was refused ({reason}); are you offline or behind a firewall?"
    return f"network error: {reason}"


def _of(total: int | None) -> str:
    return "an unknown number of" if total is None else str(total)
