"""preprocess.media on clips encoded on the fly (tests/clips.py) and on real clips in ../shared."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from clips import make_audio_only, make_clip, make_png, pattern, read_index, tone
from conftest import shared_media

from core.preprocess_config import MediaConfig
from core.preprocess_data import PreprocessError
from preprocess import media
from preprocess.media import FrameBuffer, decode, probe, write_video

SR = 16000


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


def expected_sources(source_times: np.ndarray, count: int, fps: float = 25.0) -> list[int]:
    """Index of the source frame on screen at each slot time (the last one not later)."""
    slots = np.arange(count) / fps
    return list(np.searchsorted(source_times, slots + 1e-4, side="right") - 1)


def indices(frames: np.ndarray) -> list[int]:
    return [read_index(f) for f in frames]


def error_code(path) -> str:
    with pytest.raises(PreprocessError) as caught:
        decode(path)
    assert caught.value.path == str(path)
    return caught.value.code


# ---------------------------------------------------------------------------------------------
# frame rates and timestamps


@pytest.mark.parametrize("fps", [12.5, 22.13, 29.97, 50.0])
def test_resamples_any_frame_rate_by_timestamp(workdir, fps):
    path = make_clip(workdir / f"rate_{fps}.mp4", seconds=2.0, fps=fps)
    info = probe(path)
    assert info.fps == pytest.approx(fps, rel=1e-3)
    assert not info.variable_fps
    clip = decode(path)
    count = round(2.0 * fps)
    shown_until = count / fps  # the last source frame stays on screen for one frame interval
    assert len(clip.frames) == int(np.ceil(shown_until * 25 - 1e-3))
    assert indices(clip.frames) == expected_sources(np.arange(count) / fps, len(clip.frames))
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[1:] == (120, 160, 3)
    assert np.allclose(
        clip.timestamps, np.array(expected_sources(np.arange(count) / fps, len(clip.frames))) / fps
    )
    assert len(clip.audio) == round(len(clip.frames) / 25 * SR)
    assert clip.warnings == []


def test_variable_frame_rate(workdir):
    times = np.concatenate([np.arange(0, 1, 1 / 30), 1 + np.arange(0, 1, 1 / 10)])
    path = make_clip(workdir / "vfr.mp4", fps=30, timestamps=times)
    assert probe(path).variable_fps
    clip = decode(path)
    assert clip.info.variable_fps
    assert len(clip.frames) == 50
    assert indices(clip.frames) == expected_sources(times, 50)
    assert not probe(make_clip(workdir / "cfr.mp4", fps=30)).variable_fps


def test_window_and_downscale(workdir):
    path = make_clip(workdir / "window.mp4", seconds=2.0, size=(320, 240))
    clip = decode(path, MediaConfig(window_s=1.0, max_side=160))
    assert clip.frames.shape == (25, 120, 160, 3)
    assert indices(clip.frames) == list(range(25))
    assert len(clip.audio) == SR
    assert clip.duration == pytest.approx(1.0)


def test_memory_guard_downscales(workdir, monkeypatch):
    path = make_clip(workdir / "guard.mp4", seconds=1.0, size=(320, 240))
    monkeypatch.setattr(media, "MAX_FRAME_BYTES", 25 * 160 * 120 * 3)
    clip = decode(path, MediaConfig(window_s=1.0))
    assert len(clip.frames) == 25 and clip.frames.nbytes <= media.MAX_FRAME_BYTES
    height, width = clip.frames.shape[1:3]
    assert 100 <= width <= 160 and width / height == pytest.approx(4 / 3, abs=0.03)
    assert any(w.startswith("downscaled_for_memory") for w in clip.warnings)


def test_wrong_declared_duration(workdir, monkeypatch):
    """Frames beyond what the container declares still all arrive (the output array grows)."""
    path = make_clip(workdir / "understated.mp4", seconds=2.0)
    monkeypatch.setattr(media, "_stream_seconds", lambda stream: 0.1)
    clip = decode(path)
    assert indices(clip.frames) == list(range(50))


def test_frame_buffer_is_reused(workdir):
    first = make_clip(workdir / "buf_a.mp4", seconds=1.0)
    second = make_clip(workdir / "buf_b.mp4", seconds=0.6)
    buffer = FrameBuffer()
    a = decode(first, buffer=buffer)
    assert np.array_equal(a.frames, decode(first).frames)
    size = buffer.nbytes
    b = decode(second, buffer=buffer)
    assert buffer.nbytes == size  # the smaller clip fits: no new memory
    assert np.shares_memory(a.frames, b.frames)
    assert indices(b.frames) == list(range(15))


@pytest.mark.parametrize("understated", [False, True])
def test_on_frames_reports_filled_slots_that_stay_put(workdir, monkeypatch, understated):
    """The hook sees slots as they fill; what it saw never changes (also across the array growing
    when the container understates its duration)."""
    path = make_clip(workdir / "hook.mp4", seconds=2.0, fps=10.0)  # each frame fills 2-3 slots
    if understated:
        monkeypatch.setattr(media, "_stream_seconds", lambda stream: 0.1)
    seen: list[tuple[int, list[int], int]] = []  # count, slot indices read then, array id

    def hook(frames: np.ndarray, count: int) -> None:
        seen.append((count, indices(frames[:count]), id(frames)))

    clip = decode(path, on_frames=hook)
    counts = [count for count, _, _ in seen]
    assert counts == sorted(set(counts)) and counts[-1] == len(clip.frames) == 50
    assert max(np.diff([0, *counts])) >= 2  # one source frame filled several slots in one call
    final = indices(clip.frames)
    for count, read, _ in seen:
        assert read == final[:count]
    assert (len({array for _, _, array in seen}) > 1) == understated


def test_on_frames_error_aborts_decode(workdir):
    path = make_clip(workdir / "hook_abort.mp4", seconds=1.0)
    calls = []

    def hook(frames: np.ndarray, count: int) -> None:
        calls.append(count)
        if count >= 5:
            raise RuntimeError("consumer gave up")

    with pytest.raises(RuntimeError, match="consumer gave up"):
        decode(path, on_frames=hook)
    assert calls[-1] == 5


# ---------------------------------------------------------------------------------------------
# orientation, codecs, containers


def ffmpeg_first_frame(path: Path, width: int, height: int) -> np.ndarray:
    """FFmpeg's own (auto-rotated) rendering of the first frame: the reference for rotation."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1"]
    raw = subprocess.run(
        [*cmd, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(workdir, rotation):
    path = make_clip(workdir / f"rot{rotation}.mp4", seconds=0.4, size=(160, 96), rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((96, 160) if rotation in (90, 270) else (160, 96))
    clip = decode(path)
    assert clip.frames.shape[1:3] == (info.height, info.width)
    assert np.array_equal(clip.frames[0], ffmpeg_first_frame(path, info.width, info.height))
    # Turning the frames back gives the coded pattern.
    assert indices(np.rot90(clip.frames, k=rotation // 90, axes=(1, 2))) == list(range(10))


def test_vertical_video(workdir):
    clip = decode(make_clip(workdir / "vertical.mp4", seconds=0.4, size=(96, 160)))
    assert clip.frames.shape == (10, 160, 96, 3)
    assert clip.info.rotation == 0


@pytest.mark.parametrize(
    ("name", "codec", "decoded_as", "audio_codec"),
    [
        ("hevc.mp4", "libx265", "hevc", "aac"),
        ("mpeg1.mpg", "mpeg1video", "mpeg1video", "mp2"),
        ("part2.mp4", "mpeg4", "mpeg4", "aac"),
        ("h264.mkv", "libx264", "h264", "aac"),
        ("h264.mov", "libx264", "h264", "aac"),
    ],
)
def test_codecs_and_containers(workdir, name, codec, decoded_as, audio_codec):
    try:
        av.codec.Codec(codec, "w")
    except av.codec.codec.UnknownCodecError:
        pytest.skip(f"PyAV's FFmpeg has no {codec} encoder to make the test clip")
    path = make_clip(workdir / name, seconds=1.0, codec=codec)
    info = probe(path)
    assert (info.video_codec, info.audio_codec) == (decoded_as, audio_codec)
    clip = decode(path)
    assert indices(clip.frames) == list(range(25))
    assert len(clip.audio) == SR


def test_single_frame_clip(workdir):
    clip = decode(make_clip(workdir / "one.mp4", seconds=0.04))
    assert clip.frames.shape == (1, 120, 160, 3)
    assert read_index(clip.frames[0]) == 0
    assert len(clip.audio) == SR // 25


def test_decoded_pixels_match_the_source(workdir):
    clip = decode(make_clip(workdir / "pixels.mp4", seconds=0.2, crf=10))
    error = np.abs(clip.frames[3].astype(int) - pattern(3, (160, 120)).astype(int))
    assert error.mean() < 4


# ---------------------------------------------------------------------------------------------
# audio


def test_no_audio_stream(workdir):
    clip = decode(make_clip(workdir / "silent.mp4", audio=False))
    assert clip.audio is None and not clip.has_audio
    assert "no_audio" in clip.warnings
    assert not probe(workdir / "silent.mp4").has_audio


def test_audio_longer_than_video_is_trimmed(workdir):
    clip = decode(make_clip(workdir / "long_audio.mp4", seconds=2.0, audio_seconds=3.0))
    assert len(clip.frames) == 50 and len(clip.audio) == 2 * SR
    assert any(w.startswith("audio_longer_than_video") for w in clip.warnings)


def test_audio_shorter_than_video_is_padded(workdir):
    clip = decode(make_clip(workdir / "short_audio.mp4", seconds=2.0, audio_seconds=1.0))
    assert len(clip.audio) == 2 * SR
    assert np.abs(clip.audio[: SR - 800]).max() > 4000
    assert not clip.audio[SR + 1200 :].any()
    assert any(w.startswith("audio_shorter_than_video") for w in clip.warnings)


def test_audio_within_tolerance_is_silent(workdir):
    clip = decode(make_clip(workdir / "near_audio.mp4", seconds=2.0, audio_seconds=2.05))
    assert not clip.warnings


@pytest.mark.parametrize("suffix", [".mp4", ".mpg"])
def test_audio_is_aligned_with_video(workdir, suffix):
    """Noise bursts come back at the same sample offsets: no shift from codec priming."""
    rng = np.random.default_rng(0)
    sound = np.zeros(2 * SR, np.int16)
    for k in range(6):
        sound[5000 * k + 1000 : 5000 * k + 1400] = (rng.standard_normal(400) * 6000).astype(np.int16)
    frames = np.stack([pattern(i, (64, 48)) for i in range(50)])
    path = workdir / f"bursts{suffix}"
    write_video(path, frames, 25, audio=sound, codec="mpeg1video" if suffix == ".mpg" else "libx264")
    got = decode(path).audio.astype(np.float64)
    assert len(got) == len(sound)
    score = np.correlate(got, sound[2000:30000].astype(np.float64), mode="valid")  # lags -2000..2000
    assert int(np.argmax(score)) - 2000 == 0


def test_audio_is_resampled_to_mono(workdir):
    """A 44.1 kHz tone comes out at 16 kHz with its frequency intact."""
    frames = np.stack([pattern(i, (64, 48)) for i in range(25)])
    path = workdir / "tone44k.mp4"
    write_video(path, frames, 25, audio=tone(1.0, 44100, freq=1000.0), sample_rate=44100)
    assert probe(path).audio_sample_rate == 44100
    audio = decode(path).audio.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / SR)[np.argmax(spectrum)] == pytest.approx(1000, abs=2)


# ---------------------------------------------------------------------------------------------
# bad input


def test_missing_and_empty_files(workdir):
    assert error_code(workdir / "nope.mp4") == "not_found"
    (workdir / "empty.mp4").write_bytes(b"")
    assert error_code(workdir / "empty.mp4") == "empty_file"
    with pytest.raises(PreprocessError) as caught:
        probe(workdir / "empty.mp4")
    assert caught.value.code == "empty_file"


def test_not_a_video(workdir):
    (workdir / "noise.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 20000, np.uint8).tobytes())
    assert error_code(workdir / "noise.mp4") == "not_a_video"
    assert error_code(make_png(workdir / "image.mp4")) == "not_a_video"
    (workdir / "notes.mp4").write_text("hello, this is not a video\n" * 50)
    assert error_code(workdir / "notes.mp4") == "not_a_video"
    assert error_code(workdir) == "not_a_video"  # a directory


def test_audio_only_file(workdir):
    path = make_audio_only(workdir / "speech.m4a")
    assert error_code(path) == "no_video_stream"
    with pytest.raises(PreprocessError, match="no_video_stream"):
        probe(path)


def test_truncated_file_keeps_decodable_part(workdir):
    path = make_clip(workdir / "whole.mp4", seconds=4.0)  # faststart: the index comes first
    cut = workdir / "cut.mp4"
    data = path.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    clip = decode(cut)
    assert 10 < len(clip.frames) < 90
    assert indices(clip.frames) == list(range(len(clip.frames)))
    assert any(w.startswith("video_truncated") for w in clip.warnings)


def test_truncated_file_without_frames(workdir):
    path = make_clip(workdir / "whole2.mp4", seconds=1.0)
    data = path.read_bytes()
    cut = workdir / "header_only.mp4"
    cut.write_bytes(data[: data.find(b"mdat") + 40])
    assert error_code(cut) == "decode_error"


def test_truncated_real_file_missing_its_index(workdir):
    """DFDC files keep the MP4 index (moov) at the end: cut short, nothing can be located."""
    data = shared_media("real", "dfdc_REAL_lynaeydofd.mp4").read_bytes()
    cut = workdir / "dfdc_cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert error_code(cut) == "decode_error"


# ---------------------------------------------------------------------------------------------
# writing


def test_write_video_is_atomic(workdir):
    target = workdir / "atomic" / "out.mp4"
    target.parent.mkdir()
    frames = np.stack([pattern(i, (64, 48)) for i in range(5)])
    write_video(target, frames, 25)
    first = target.read_bytes()
    with pytest.raises(ValueError, match="even"):
        write_video(target, frames[:, :47], 25)
    assert target.read_bytes() == first  # a failed write leaves the old file alone
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.mp4"]
    with pytest.raises(ValueError):
        write_video(workdir / "atomic" / "bad.mp4", frames[0], 25)
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.mp4"]


# ---------------------------------------------------------------------------------------------
# real clips


def check_real(path: Path, cfg: MediaConfig | None = None):
    cfg = cfg or MediaConfig()
    info = probe(path)
    clip = decode(path, cfg)
    span = min(info.duration, cfg.window_s)
    assert abs(len(clip.frames) - span * 25) <= 2
    assert len(clip.audio) == round(len(clip.frames) / 25 * SR)
    assert abs(len(clip.audio) - span * SR) <= 2 * SR / 25
    assert clip.frames.std() > 5  # real picture content, not a blank buffer
    return info, clip


@pytest.mark.shared
def test_real_mpeg1_ps():
    info, clip = check_real(shared_media("real", "lipnet_GRID_bbaf2n.mpg"))
    assert (info.video_codec, info.audio_codec, info.audio_channels) == ("mpeg1video", "mp2", 2)
    assert clip.frames.shape == (75, 288, 360, 3)


@pytest.mark.shared
def test_real_face_crop_clip():
    info, clip = check_real(shared_media("real", "pcavs_Audio_Source_00086.mp4"))
    assert clip.frames.shape[1:] == (224, 224, 3) and info.audio_sample_rate == SR


@pytest.mark.shared
def test_real_50fps_mpeg4():
    info, clip = check_real(
        shared_media("fake", "zzww_syncshow_face_dain_50fps.mp4"), MediaConfig(max_side=350)
    )
    assert info.fps == 50 and info.video_codec == "mpeg4"
    assert np.allclose(np.diff(clip.timestamps), 0.04, atol=1e-3)
    assert clip.frames.shape[1:] == (350, 350, 3)


@pytest.mark.shared
def test_real_variable_rate_clip():
    info, clip = check_real(shared_media("real", "retalking_face_1.mp4"), MediaConfig(max_side=350))
    assert info.fps == pytest.approx(22.13, abs=0.01) and info.variable_fps
    assert np.all(np.diff(clip.timestamps) >= 0)


@pytest.mark.shared
def test_real_1080p_window():
    path = shared_media("real", "dfdc_REAL_lynaeydofd.mp4")
    info = probe(path)
    assert (info.width, info.height, info.num_frames) == (1920, 1080, 300)
    clip = decode(path, MediaConfig(window_s=2.0, max_side=640))
    assert clip.frames.shape == (50, 360, 640, 3)
    assert len(clip.audio) == 2 * SR and clip.warnings == []


def test_damaged_middle_keeps_frames_and_audio_sync(workdir):
    rng = np.random.default_rng(0)
    sound = np.zeros(3 * SR, np.int16)
    for k in range(12):
        sound[4000 * k + 500 : 4000 * k + 900] = (rng.standard_normal(400) * 6000).astype(np.int16)
    frames = np.stack([pattern(i, (64, 48)) for i in range(75)])
    path = workdir / "damaged.mp4"
    write_video(path, frames, 25, audio=sound)
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 3000] = rng.integers(0, 256, 3000, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    clip = decode(path)
    assert len(clip.frames) == 75 and len(clip.audio) == 3 * SR
    assert any(w.startswith("decode_errors") for w in clip.warnings)
    # After the damage, audio is where it belongs (lost packets became silence, not a shift).
    tail = clip.audio[2 * SR - 2000 :].astype(np.float64)
    score = np.correlate(tail, sound[2 * SR : 3 * SR - 2000].astype(np.float64), mode="valid")
    assert int(np.argmax(score)) == 2000
