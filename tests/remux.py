"""Real MP4 layouts for tests: a stream copy of a clip with its index (``moov``) at the front,
as ``ffmpeg -c copy -movflags +faststart`` writes it (the same libavformat muxer, via PyAV), or
at the end (the muxer's default), and cuts of a file's bytes."""

from __future__ import annotations

from pathlib import Path

import av


def remux(src: Path, dst: Path, faststart: bool = True) -> Path:
    """Copy ``src``'s video and audio packets into the MP4 ``dst`` without re-encoding."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options=options) as out:
        streams = {
            s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")
        }
        for packet in inp.demux(*[s for s in inp.streams if s.index in streams]):
            if packet.dts is None:  # the demuxer's flush packets
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


def moov_first(path: Path) -> bool:
    """Whether the MP4's index comes before its media data (a faststart file)."""
    data = path.read_bytes()
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    return 0 <= moov < mdat


def cut(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``src``'s bytes, as an interrupted download leaves it."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
