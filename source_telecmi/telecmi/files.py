"""Fetching one audio file TeleCMI holds (`GET /v2/play`, India `/v1/play`) to disk: whole, hashed, or not at all.

The play URL carries the app secret in its query, so it never reaches a line: requests and urllib3
print URLs in their exceptions and DEBUG logs, and every message made here is stripped of the
query (`without_query`) before anything else sees it (the output's masking is a second guard).
The body is streamed to a temporary name beside the target, hashed and counted on the way, and
renamed only when whole; on any failure the temporary file is removed. TeleCMI's 502 envelope
(HTTP 200, JSON) says the file is not published yet, and a 404 that the file is not there:
both come back `pending`, for a later sync to ask again. Every other fault is retried, then
fails the sync naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

import requests
import urllib3
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.http.error_handlers import ResponseAction
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.secrets import one_line
from source_telecmi.telecmi.answers import resolve
from source_telecmi.telecmi.body import body_of, code_of, is_whole, message_of, whole
from source_telecmi.telecmi.page import Fetched
from source_telecmi.telecmi.session import SyncEnded, wait_scale

# Pieces read from the socket and written at a time: memory stays flat whatever the file's size.
PIECE = 1 << 20
# A body must keep coming at this rate on average (after the request timeout's allowance): a trickle is a timeout.
LEAST_BYTES_PER_S = 64 * 1024
FIRST_WAIT_S, LONGEST_WAIT_S = 2.0, 60.0
# TeleCMI's codes in a JSON answer of play that leave the file for a later sync.
NOT_PUBLISHED, NOT_THERE = 502, 404
AUDIO_TYPES = ("audio/", "application/octet-stream", "video/")
_QUERY = re.compile(r"(/play)\?[^\s'\"<>)]*")


def without_query(text: str) -> str:
    """`text` with the query of every play URL in it removed (it carries the app secret)."""
    return _QUERY.sub(r"\1?…", text)


class NoPlayQuery(logging.Filter):
    """urllib3 logs each request's URL at DEBUG (`"GET /v2/play?appid=..&secret=.. HTTP/1.1" 200`): not the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/play?" in message:
            record.msg, record.args = without_query(message), ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(NoPlayQuery())


class Fault(Exception):
    """A fetch that went wrong in a way worth trying again; the message names no secret."""


class FileFailed(AirbyteTracedException):
    """A file could not be fetched, through every retry: the sync fails, naming it."""


class FileFetcher:
    """Fetches files by name through the sync's one transport (paced with the lists: a 429 on play slows all)."""

    def __init__(
        self,
        transport: Any,
        url: str,
        fill: Callable[[], Mapping[str, Any]],
        timeout_s: float,
        max_retries: int,
    ) -> None:
        self._transport = transport
        self._url = url
        self._fill = fill
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._live: set[Path] = set()  # temporary files being written
        self._abandoned = False
        self._lock = threading.Lock()

    def abandon(self) -> None:
        """The sync is over (it failed): downloads still running stop at their next piece, and no temporary
        file is left behind, whatever the process does next (it may end at once)."""
        with self._lock:
            self._abandoned = True
            live, self._live = set(self._live), set()
        for temporary in live:
            temporary.unlink(missing_ok=True)

    def fetch(self, name: str, target: Path) -> Fetched:
        """The file `name` at `target` (complete, or absent), or why it is pending; FileFailed after every retry."""
        for attempt in range(1, self._max_retries + 2):
            try:
                return self._once(name, target)
            except SyncEnded:
                raise
            except Fault as fault:
                if attempt > self._max_retries:
                    message = (
                        f"Stream recordings: the file {name} could not be downloaded ({attempt} attempts): {fault}"
                    )
                    raise FileFailed(
                        message=message, internal_message=message, failure_type=FailureType.transient_error
                    ) from None
                time.sleep(max(min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** (attempt - 1)) * wait_scale(), 0.001))
        raise AssertionError("unreachable")

    def _once(self, name: str, target: Path) -> Fetched:
        request = requests.Request("GET", self._url, params={**self._fill(), "file": name}).prepare()
        try:
            response, first = self._transport.open(request)
        except (SyncEnded, AirbyteTracedException):
            raise
        except requests.RequestException as error:
            raise Fault(self._said(error)) from None
        try:
            if is_whole(response):  # a small JSON answer, read whole
                return self._answer(response)
            ctype = response.headers.get("Content-Type")
            if response.status_code != 200 or not _audio(ctype, first):
                if response.status_code == 200:
                    raise Fault(f"TeleCMI answered {ctype or 'no Content-Type'} where audio was expected")
                return self._answer(whole(response, first))
            size, digest = self._stream(response, first, target)
            return Fetched("downloaded", size, digest, (ctype or "").split(";")[0].strip() or None)
        finally:
            response.close()

    def _answer(self, response: requests.Response) -> Fetched:
        """A JSON (or short) answer where audio was asked for: not yet published, not there, or a fault."""
        body = body_of(response)
        code, ctype = code_of(body), response.headers.get("Content-Type") or ""
        reason = one_line(without_query(message_of(body) or f"HTTP {response.status_code}"), 120)
        if isinstance(body, dict) and code is not None and ctype.lower().startswith(AUDIO_TYPES):
            raise Fault(f"TeleCMI answered {ctype} but sent an envelope (code {code}: {reason}) instead of audio")
        if response.status_code in (200, 404) and code == NOT_PUBLISHED:
            return Fetched("pending", reason=f"not published yet (code {code}: {reason})")
        if code == NOT_THERE and "parameter" not in reason.lower():
            return Fetched("pending", reason=f"TeleCMI does not have it (code {code}: {reason})")
        row, resolution = resolve(response, api_url=self._url.rsplit("/", 2)[0], what="recordings")
        message = without_query(resolution.error_message or f"HTTP {response.status_code}")
        if resolution.response_action == ResponseAction.RETRY:
            raise Fault(message)
        raise FileFailed(
            message=f"Stream recordings: {message}",
            internal_message=message,
            failure_type=resolution.failure_type or FailureType.system_error,
        )

    def _stream(self, response: requests.Response, first: bytes, target: Path) -> tuple[int, str]:
        """Write the body to a temporary name beside `target`, hashing and counting; rename it when whole."""
        expected = response.headers.get("Content-Length")
        length = int(expected) if expected and expected.isdigit() else None
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        digest, size, started = hashlib.sha256(), 0, time.monotonic()
        with self._lock:
            if self._abandoned:
                raise SyncEnded("the sync is over")
            self._live.add(temporary)
        try:
            with open(temporary, "wb") as out:
                piece = first
                while piece:
                    if self._abandoned:
                        raise SyncEnded("the sync is over")
                    out.write(piece)
                    digest.update(piece)
                    size += len(piece)
                    if time.monotonic() - started > self._timeout_s + size / LEAST_BYTES_PER_S:
                        raise Fault(f"the file came slower than {LEAST_BYTES_PER_S // 1024} KiB/s ({size} bytes read)")
                    piece = response.raw.read1(PIECE, decode_content=True)
            if length is not None and size != length:
                raise Fault(f"the body ended after {size} of its {length} bytes (Content-Length)")
            if size == 0:
                raise Fault("the body was empty")
            os.chmod(temporary, 0o644)  # the destination reads it as another user
            with self._lock:
                if self._abandoned:
                    raise SyncEnded("the sync is over")
                os.replace(temporary, target)
                self._live.discard(temporary)
            return size, digest.hexdigest()
        except SyncEnded:
            raise
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
            if _on_disk(error):
                raise _disk_full(target, error) from None
            raise Fault(f"the body was cut off after {size} bytes ({self._said(error)})") from None
        finally:
            with self._lock:
                self._live.discard(temporary)
            temporary.unlink(missing_ok=True)

    def _said(self, error: BaseException) -> str:
        _, resolution = resolve(error, api_url=self._url.rsplit("/", 2)[0], what="recordings")
        return one_line(without_query(resolution.error_message or type(error).__name__), 200)


def _audio(ctype: Optional[str], first: bytes) -> bool:
    """Whether an answer is audio: an audio (or no, or a binary) Content-Type, and bytes that are not text."""
    if ctype and not ctype.lower().startswith(AUDIO_TYPES):
        return False
    return bool(first) and first.lstrip()[:1] not in (b"{", b"<")


def _on_disk(error: BaseException) -> bool:
    """Whether a fault while writing a file is the disk's (full, read-only, not allowed), not the network's."""
    if not isinstance(error, OSError) or isinstance(error, (ConnectionError, TimeoutError)):
        return False
    return error.filename is not None or error.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT)


def _disk_full(target: Path, error: OSError) -> AirbyteTracedException:
    message = (
        f"Stream recordings: cannot write {target.name} to the staging folder {target.parent} "
        f"({error.strerror or type(error).__name__}): size the staging volume for one sync's recordings"
    )
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.system_error)
