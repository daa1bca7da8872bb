"""Deterministic audio files by name, for the simulator's play endpoints (standard library only).

A name ending in ``.wav`` (any case) is a RIFF/WAVE PCM file, 8 kHz, 16-bit, mono: the 44-byte
header, then a tone whose pitch and loudness come from the name, with a little seeded noise. Any
other name is an MP3: an ID3v2.3 tag (its title the name; zero padding sized so the file has
exactly the size asked), then silent MPEG-1 Layer III frames of 32 kbit/s, 32 kHz, mono, 144 bytes
each (a header, 17 bytes of zero side information, then 123 bytes of ancillary data from the
name, never 0xFF, so no false sync word).

Nothing is held whole: a file is its header, then one pattern of about 64 KiB, the same for every
file of that name, repeated and sliced as it goes out. ``audio_sha256`` hashes by streaming too.

``check_audio(path)`` is the other side: it checks a delivered file with the standard library
(``wave``; a walk over every MPEG frame header) and says what it holds.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import struct
import wave
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

#: The sizes of files the simulator makes up when nothing says otherwise (bytes, inclusive).
DEFAULT_MIN_SIZE = 4 * 1024
DEFAULT_MAX_SIZE = 256 * 1024
#: Bytes per piece of ``audio_chunks`` (the last piece of a file may be shorter).
CHUNK_SIZE = 64 * 1024

WAV_RATE = 8000  # samples per second
WAV_HEADER_SIZE = 44
WAV_CONTENT_TYPE = "audio/wav"
MP3_CONTENT_TYPE = "audio/mpeg"

# MPEG-1 Layer III, no CRC, 32 kbit/s, 32 kHz, no padding, mono: 144 * 32000 / 32000 = 144 bytes.
MP3_FRAME_HEADER = bytes((0xFF, 0xFB, 0x18, 0xC0))
MP3_FRAME_SIZE = 144
MP3_FRAME_SECONDS = 1152 / 32000  # samples per MPEG-1 Layer III frame / sample rate
_SIDE_INFO = 17  # MPEG-1 mono
_ANCILLARY = MP3_FRAME_SIZE - len(MP3_FRAME_HEADER) - _SIDE_INFO
_PATTERN_FRAMES = CHUNK_SIZE // MP3_FRAME_SIZE  # 455 frames, 65,520 bytes
_MIN_MP3_FRAMES = 4  # what MP3 readers (mutagen) want before they trust a stream


def is_wav(name: str) -> bool:
    return name.lower().endswith(".wav")


def content_type(name: str) -> str:
    """``audio/wav`` for a ``.wav`` name, ``audio/mpeg`` for any other."""
    return WAV_CONTENT_TYPE if is_wav(name) else MP3_CONTENT_TYPE


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:8], "big")


def default_size(name: str, lo: int = DEFAULT_MIN_SIZE, hi: int = DEFAULT_MAX_SIZE) -> int:
    """A size in ``[lo, hi]`` chosen by the name (crc32), the same on every run."""
    if hi < lo:
        raise ValueError("hi must be >= lo")
    return lo + zlib.crc32(name.encode("utf-8", "surrogatepass")) % (hi - lo + 1)


def _id3_title(name: str) -> bytes:
    return name.encode("latin-1", "replace")


def _id3_base(name: str) -> int:
    """The size of the ID3v2.3 tag without padding: header, TIT2 frame header, encoding byte, title."""
    return 10 + 10 + 1 + len(_id3_title(name))


def min_size(name: str) -> int:
    """The smallest file of this name: one WAV sample, or the tag and four MP3 frames."""
    return WAV_HEADER_SIZE + 2 if is_wav(name) else _id3_base(name) + _MIN_MP3_FRAMES * MP3_FRAME_SIZE


def fit_size(name: str, wanted: int) -> int:
    """The size of the file served for ``wanted`` bytes: exactly that for an MP3 (at least
    ``min_size``), the even number at or below it for a WAV (RIFF files have even lengths)."""
    wanted = max(int(wanted), min_size(name))
    if is_wav(name):
        return wanted - (wanted - WAV_HEADER_SIZE) % 2
    return wanted


SizeOf = Callable[[str], int] | Mapping[str, int] | int | None


def audio_size(name: str, size_of: SizeOf = None) -> int:
    """The size of the file ``name`` as served, given the simulator's ``recording_sizes``.

    ``size_of``: a callable ``name -> bytes``, a mapping (names it lacks get ``default_size``),
    one int for every file, or None (``default_size``). The result goes through ``fit_size``.
    """
    if size_of is None:
        wanted = default_size(name)
    elif callable(size_of):
        wanted = size_of(name)
    elif isinstance(size_of, Mapping):
        wanted = size_of[name] if name in size_of else default_size(name)
    else:
        wanted = int(size_of)
    return fit_size(name, wanted)


def _wav_header(size: int) -> bytes:
    data = size - WAV_HEADER_SIZE
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", size - 8),
            b"WAVEfmt ",
            struct.pack("<IHHIIHH", 16, 1, 1, WAV_RATE, WAV_RATE * 2, 2, 16),  # PCM, mono, 16-bit
            b"data",
            struct.pack("<I", data),
        )
    )


def _mp3_header(name: str, size: int) -> bytes:
    """The ID3v2.3 tag, padded so that tag + whole frames is exactly ``size``."""
    title = _id3_title(name)
    padding = (size - _id3_base(name)) % MP3_FRAME_SIZE
    body_size = 10 + 1 + len(title) + padding
    syncsafe = bytes((body_size >> 21 & 0x7F, body_size >> 14 & 0x7F, body_size >> 7 & 0x7F, body_size & 0x7F))
    frame = b"TIT2" + struct.pack(">I", 1 + len(title)) + b"\x00\x00" + b"\x00" + title
    return b"ID3\x03\x00\x00" + syncsafe + frame + bytes(padding)


def audio_header(name: str, size: int) -> bytes:
    """What comes before the repeated pattern: the WAV header, or the MP3's ID3 tag."""
    _check_size(name, size)
    return _wav_header(size) if is_wav(name) else _mp3_header(name, size)


@functools.lru_cache(maxsize=64)
def _pattern(name: str) -> bytes:
    """About 64 KiB that repeat after the header: whole seconds of tone, or whole MP3 frames."""
    rng = random.Random(_seed(name))
    if is_wav(name):
        freq = rng.randrange(200, 1000)  # whole Hz: a second holds whole periods, so seconds repeat seamlessly
        amplitude = rng.randrange(4000, 12000)
        samples = [
            int(amplitude * math.sin(2 * math.pi * freq * i / WAV_RATE)) + rng.randrange(-256, 257)
            for i in range(WAV_RATE)
        ]
        second = struct.pack(f"<{WAV_RATE}h", *samples)
        return second * (CHUNK_SIZE // len(second))
    frames = []
    for _ in range(_PATTERN_FRAMES):
        ancillary = rng.randbytes(_ANCILLARY).replace(b"\xff", b"\xfe")
        frames.append(MP3_FRAME_HEADER + bytes(_SIDE_INFO) + ancillary)
    return b"".join(frames)


def _check_size(name: str, size: int) -> None:
    if size != fit_size(name, size):
        raise ValueError(f"{size} is not a size a file named {name!r} can have (see fit_size)")


def audio_chunks(name: str, size: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The file's bytes in pieces of at most ``chunk_size`` (the header alone first), ``size`` in all."""
    header = audio_header(name, size)
    yield header
    pattern = _pattern(name)
    left = size - len(header)
    offset = 0
    while left > 0:
        n = min(left, chunk_size, len(pattern) - offset)
        yield pattern[offset : offset + n]
        left -= n
        offset = (offset + n) % len(pattern)


def audio_bytes(name: str, size: int) -> bytes:
    """The whole file at once: for small files in tests only."""
    return b"".join(audio_chunks(name, size))


def audio_sha256(name: str, size: int) -> str:
    """The lower-case hex SHA-256 of the file, computed by streaming it."""
    digest = hashlib.sha256()
    for chunk in audio_chunks(name, size):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The lower-case hex SHA-256 of a file on disk, read in pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- checking a delivered file


class AudioInfo(NamedTuple):
    kind: str  # "wav" or "mp3"
    frames: int  # WAV sample frames, or MPEG frames
    seconds: float
    size: int


_MPEG_VERSIONS = {0b11: 1, 0b10: 2, 0b00: 25}  # 25: MPEG 2.5
_L3_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000), 25: (11025, 12000, 8000)}


def mp3_frame_length(header: bytes) -> tuple[int, int, int]:
    """(frame length in bytes, samples, sample rate) of a valid MPEG Layer III frame header, else ValueError."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        raise ValueError("no frame sync")
    version = _MPEG_VERSIONS.get(header[1] >> 3 & 0b11)
    if version is None:
        raise ValueError("reserved MPEG version")
    if header[1] >> 1 & 0b11 != 0b01:
        raise ValueError("not Layer III")
    bitrate_index, rate_index, padding = header[2] >> 4, header[2] >> 2 & 0b11, header[2] >> 1 & 1
    if bitrate_index in (0, 15) or rate_index == 3:
        raise ValueError("free-format or invalid bitrate, or reserved sample rate")
    if header[3] & 0b11 == 0b10:
        raise ValueError("reserved emphasis")
    bitrate = _L3_BITRATES[1 if version == 1 else 2][bitrate_index] * 1000
    rate = _SAMPLE_RATES[version][rate_index]
    samples = 1152 if version == 1 else 576
    return samples // 8 * bitrate // rate + padding, samples, rate


def _skip_id3(f: BinaryIO) -> int:
    head = f.read(10)
    if len(head) == 10 and head[:3] == b"ID3":
        if any(b & 0x80 for b in head[6:10]):
            raise ValueError("ID3 size is not syncsafe")
        size = head[6] << 21 | head[7] << 14 | head[8] << 7 | head[9]
        return 10 + size + (10 if head[5] & 0x10 else 0)  # footer flag
    return 0


def check_audio(path: str | Path, kind: str | None = None) -> AudioInfo:
    """Check a whole audio file with the standard library; ValueError names what is wrong.

    WAV (``kind="wav"``, or a ``.wav`` path): ``wave`` opens it, and its data holds exactly the
    sample frames its header says, with the file ending there. MP3: an optional ID3v2 tag, then
    every byte belongs to a valid MPEG Layer III frame (each header checked), at least one.
    """
    path = Path(path)
    kind = kind or ("wav" if is_wav(path.name) else "mp3")
    size = path.stat().st_size
    if kind == "wav":
        try:
            with wave.open(str(path), "rb") as w:
                params = w.getparams()
                frames = w.getnframes()
                got = 0
                while data := w.readframes(65536):
                    got += len(data) // (params.sampwidth * params.nchannels)
        except (wave.Error, EOFError, struct.error) as e:
            raise ValueError(f"{path.name}: not a readable WAV file: {e}") from None
        if got != frames:
            raise ValueError(f"{path.name}: header says {frames} frames, data holds {got}")
        with open(path, "rb") as f:
            riff = f.read(12)
        if riff[:4] != b"RIFF" or struct.unpack("<I", riff[4:8])[0] != size - 8:
            raise ValueError(f"{path.name}: RIFF size is not the file's size - 8")
        return AudioInfo("wav", frames, frames / params.framerate, size)
    frames = 0
    samples_at: dict[int, int] = {}  # sample rate -> samples
    with open(path, "rb") as f:
        offset = _skip_id3(f)
        while offset < size:
            f.seek(offset)
            try:
                length, samples, rate = mp3_frame_length(f.read(4))
            except ValueError as e:
                raise ValueError(f"{path.name}: invalid MPEG frame header at byte {offset}: {e}") from None
            if offset + length > size:
                raise ValueError(f"{path.name}: the frame at byte {offset} is cut short")
            frames += 1
            samples_at[rate] = samples_at.get(rate, 0) + samples
            offset += length
    if not frames:
        raise ValueError(f"{path.name}: no MPEG frame")
    return AudioInfo("mp3", frames, sum(n / rate for rate, n in samples_at.items()), size)


def describe(name: str, size: int) -> dict[str, Any]:
    """What a test compares a delivered file with: its size, SHA-256 and content type."""
    return {"file": name, "size": size, "sha256": audio_sha256(name, size), "content_type": content_type(name)}
