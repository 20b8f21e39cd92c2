"""SyncNet network (upstream weight layout), its checkpoint loading, and the offset search.

No trained SyncNet weights are available offline, so networks here are randomly initialised;
the offset search is checked with embeddings built so the right answer is known."""

from __future__ import annotations

import copy
import itertools

import av
import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.preprocess_config import SyncConfig
from models.runtimes import TorchRuntime
from models.syncnet import SyncNet, convert_syncnet_v2, load_syncnet_v2, syncnet_v2_to_ours
from preprocess.audio import mfcc as compute_mfcc
from preprocess.latency import (
    SyncNetScorer,
    SyncNetWeightsMissing,
    TooShortForSync,
    _lip_batch,
    offset_search,
    sampled_starts,
)
from tests.conftest import shared_media
from tests.test_audio import decode_audio
from weights.store import WeightsError, save_weights


def _upstream_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of joonson/syncnet_python's ``S`` state dict (SyncNetModel.py), written out
    by hand from the upstream layer list, without BatchNorm counters (old-torch checkpoint)."""
    layout: dict[str, tuple[int, ...]] = {}

    def conv_bn(prefix: str, index: int, weight: tuple[int, ...]) -> None:
        layout[f"{prefix}.{index}.weight"] = weight
        layout[f"{prefix}.{index}.bias"] = weight[:1]
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{index + 1}.{name}"] = weight[:1]

    for index, weight in [
        (0, (64, 1, 3, 3)),
        (4, (192, 64, 3, 3)),
        (8, (384, 192, 3, 3)),
        (11, (256, 384, 3, 3)),
        (14, (256, 256, 3, 3)),
        (18, (512, 256, 5, 4)),
    ]:
        conv_bn("netcnnaud", index, weight)
    for index, weight in [
        (0, (96, 3, 5, 7, 7)),
        (4, (256, 96, 1, 5, 5)),
        (8, (256, 256, 1, 3, 3)),
        (11, (256, 256, 1, 3, 3)),
        (14, (256, 256, 1, 3, 3)),
        (18, (512, 256, 1, 6, 6)),
    ]:
        conv_bn("netcnnlip", index, weight)
    for head in ("netfcaud", "netfclip"):
        conv_bn(head, 0, (512, 512))
        layout[f"{head}.3.weight"] = (1024, 512)
        layout[f"{head}.3.bias"] = (1024,)
    return layout


def _upstream_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in _upstream_layout().items():
        t = torch.randn(shape, generator=gen) * 0.05
        out[key] = t.abs() + 0.5 if key.endswith("running_var") else t
    return out


def test_state_dict_matches_upstream_layout():
    ours = {
        k: tuple(v.shape) for k, v in SyncNet().state_dict().items() if not k.endswith("num_batches_tracked")
    }
    assert ours == _upstream_layout()


def test_forward_shapes_and_independent_batches():
    net = SyncNet().eval()
    with torch.inference_mode():
        audio = torch.randn(3, 1, 13, 20)
        lip, aud = net(torch.rand(2, 3, 5, 224, 224) * 255, audio)
        assert lip.shape == (2, 1024) and aud.shape == (3, 1024)
        assert torch.allclose(net.forward_aud(audio[:1]), aud[:1], atol=1e-5)  # per-sample in eval


# --- checkpoint loading -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(_upstream_state_dict(), path)
    return path


def test_load_syncnet_v2_into_our_network(upstream_file):
    state_dict = load_syncnet_v2(upstream_file)
    net = SyncNet()
    net.load_state_dict(syncnet_v2_to_ours(state_dict))  # strict
    expected = _upstream_state_dict()
    for key, value in expected.items():
        assert torch.equal(net.state_dict()[key], value), key


def test_converted_safetensors_and_upstream_file_give_the_same_scorer(upstream_file, tmp_path):
    converted = convert_syncnet_v2(upstream_file, tmp_path / "syncnet")
    assert converted.name == "syncnet.safetensors" and (tmp_path / "syncnet.json").is_file()
    from_ours = SyncNetScorer.from_weights(converted)
    from_upstream = SyncNetScorer.from_weights(upstream_file)
    audio = np.random.default_rng(0).normal(size=(4, 1, 13, 20)).astype(np.float32)
    video = np.zeros((1, 3, 5, 224, 224), np.float32)
    a, b = from_ours.runtime(video, audio), from_upstream.runtime(video, audio)
    np.testing.assert_array_equal(a[1], b[1])
    # and the weights really were loaded: a fresh network embeds differently
    assert not np.allclose(a[1], SyncNetScorer(SyncNet()).runtime(video, audio)[1])


def test_missing_weights_raise_a_specific_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AVDF_WEIGHTS", str(tmp_path))
    with pytest.raises(SyncNetWeightsMissing, match="syncnet.safetensors"):
        SyncNetScorer.from_weights("syncnet")
    with pytest.raises(FileNotFoundError):
        SyncNetScorer.from_weights(tmp_path / "nowhere" / "syncnet_v2.model")


def test_weights_of_another_model_are_refused(tmp_path):
    path = save_weights(tmp_path / "syncnet", SyncNet().state_dict(), "fusion_timesformer", {}, None)
    with pytest.raises(WeightsError, match="holds a 'fusion_timesformer' model, not 'syncnet'"):
        SyncNetScorer.from_weights(path)


def _saved(tmp_path, state_dict, name="bad.model"):
    path = tmp_path / name
    torch.save(state_dict, path)
    return path


def test_corrupt_and_mismatched_checkpoints_name_file_and_problem(tmp_path):
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(WeightsError, match=r"corrupt\.model: not a readable torch checkpoint"):
        load_syncnet_v2(corrupt)

    missing = _upstream_state_dict()
    del missing["netcnnlip.4.weight"]
    with pytest.raises(WeightsError, match=r"bad\.model.*missing keys: netcnnlip\.4\.weight"):
        load_syncnet_v2(_saved(tmp_path, missing))

    wrong = _upstream_state_dict()
    wrong["netfcaud.3.weight"] = torch.zeros(512, 512)
    with pytest.raises(WeightsError, match=r"netfcaud\.3\.weight \(512, 512\) vs model \(1024, 512\)"):
        load_syncnet_v2(_saved(tmp_path, wrong))

    with pytest.raises(WeightsError, match="expected a state dict of tensors"):
        load_syncnet_v2(_saved(tmp_path, [torch.zeros(3)]))

    with pytest.raises(WeightsError, match="not found"):
        load_syncnet_v2(tmp_path / "absent.model")


# --- offset search with known answers -----------------------------------------------------------


@pytest.mark.parametrize("audio_lag", [-4, -1, 0, 3, 7])
def test_offset_sign_convention(audio_lag):
    """Audio lagging the video by k frames (lip frame f sounds at audio frame f + k) → offset -k;
    audio leading (k < 0) → positive offset, as syncnet_python reports."""
    rng = np.random.default_rng(abs(audio_lag))
    n = 60
    lip = rng.normal(size=(n, 16)).astype(np.float32)
    aud = rng.normal(size=(n, 16)).astype(np.float32)
    for f in range(n):
        if 0 <= f + audio_lag < n:
            aud[f + audio_lag] = lip[f]
    result = offset_search(lip, aud, vshift=15)
    assert result.offset == -audio_lag
    assert result.distances.shape == (31,) and int(np.argmin(result.distances)) == 15 + audio_lag
    assert result.min_distance == pytest.approx(result.distances.min())
    assert result.confidence == pytest.approx(np.median(result.distances) - result.distances.min())
    assert result.confidence > 1.0 and result.vector().shape == (33,)
    assert result.frame_confidence.shape == (n,)


class WindowProbe:
    """A stand-in runtime whose embeddings are the windows' contents: lip → mean brightness of each
    of the 5 frames, audio → MFCC row 0 at the first column of each video frame. Records calls."""

    name = "probe"

    def __init__(self):
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __call__(self, video, audio):
        self.calls.append((video.shape, audio.shape))
        assert video.dtype == np.float32 and video.shape[1:] == (3, 5, 224, 224)
        assert audio.dtype == np.float32 and audio.shape[1:] == (1, 13, 20)
        return video.mean(axis=(1, 3, 4)), audio[:, 0, 0, ::4]


def _track(n_frames: int, audio_lag: int, n_mfcc: int | None = None, seed: int = 0):
    """Gray faces whose brightness follows a random sequence, and MFCCs carrying the same sequence
    delayed by ``audio_lag`` frames."""
    n_mfcc = 4 * n_frames - 1 if n_mfcc is None else n_mfcc
    levels = np.random.default_rng(seed).integers(0, 256, max(n_frames, n_mfcc // 4) + 40)
    faces = np.broadcast_to(levels[:n_frames, None, None, None], (n_frames, 224, 224, 3)).astype(np.uint8)
    mfcc = np.zeros((13, n_mfcc), np.float32)
    for col in range(n_mfcc):
        mfcc[0, col] = levels[col // 4 - audio_lag] if col // 4 - audio_lag >= 0 else -1000.0
    return faces, mfcc


@pytest.mark.parametrize(("audio_lag", "stride"), [(2, 1), (-3, 1), (5, 3), (-6, 2)])
def test_scorer_recovers_offset_through_windows(audio_lag, stride):
    probe = WindowProbe()
    faces, mfcc = _track(40, audio_lag)
    result = SyncNetScorer(probe, SyncConfig(windows=0, stride=stride, batch_size=4)).latency(faces, mfcc)
    assert result.offset == -audio_lag
    n_windows = 40 - 5  # (4*40 - 1 - 20) // 4 + 1, the official count
    assert sum(v[0] for v, _ in probe.calls) == len(range(0, n_windows, stride))  # lip windows
    assert sum(a[0] for _, a in probe.calls) == n_windows  # audio windows: every frame
    assert max(v[0] for v, _ in probe.calls) <= 4  # batch_size
    assert result.frame_confidence.shape == (len(range(0, n_windows, stride)),)


@pytest.mark.parametrize(("count", "windows", "runs"), [(246, 16, 2), (246, 16, 4), (71, 24, 3), (30, 16, 2)])
def test_sampled_windows_form_even_runs_inside_the_track(count, windows, runs):
    starts = sampled_starts(count, windows, runs)
    assert len(starts) == windows and starts.min() >= 0 and starts.max() < count
    assert (np.diff(starts) > 0).all()
    gaps = np.flatnonzero(np.diff(starts) > 1)
    assert len(gaps) <= runs - 1  # runs of consecutive frames (neighbours may merge)
    if count >= 4 * windows:  # spread: one run near each end, not all at the start
        assert starts.min() < count / runs and starts.max() > count - count / runs


def test_sampling_covers_every_frame_of_a_short_track():
    np.testing.assert_array_equal(sampled_starts(12, 16, 2), np.arange(12))
    np.testing.assert_array_equal(sampled_starts(40, 0, 2), np.arange(40))


@pytest.mark.parametrize("audio_lag", [-7, -2, 0, 4, 10])
def test_sampled_search_recovers_the_offset_and_embeds_only_what_it_reads(audio_lag):
    probe = WindowProbe()
    faces, mfcc = _track(200, audio_lag, seed=audio_lag + 20)
    scorer = SyncNetScorer(probe, SyncConfig(windows=16, runs=2, batch_size=8))
    plan = scorer.plan(len(faces), mfcc.shape[1])
    result = scorer.latency(faces, mfcc)
    assert result.offset == -audio_lag
    assert sum(v[0] for v, _ in probe.calls) == 16
    # two runs of 8 lip windows read 8 + 2 * 15 audio windows each
    assert sum(a[0] for _, a in probe.calls) == len(plan.audio) == 2 * (8 + 30)
    assert result.frame_confidence.shape == (16,)


def test_sampled_search_equals_the_full_search_on_the_same_windows():
    """Embedding only the audio windows that are read changes nothing: the curve is the full
    search's distances averaged over the sampled lip windows."""
    faces, mfcc = _track(120, audio_lag=3, seed=5)
    sampled = SyncNetScorer(WindowProbe(), SyncConfig(windows=12, runs=3))
    plan = sampled.plan(len(faces), mfcc.shape[1])
    lip, aud, frames = SyncNetScorer(WindowProbe(), SyncConfig(windows=0)).embed(faces, mfcc)
    expected = offset_search(lip[plan.lip], aud, frames[plan.lip])
    got = sampled.latency(faces, mfcc)
    np.testing.assert_array_equal(got.distances, expected.distances)
    assert (got.offset, got.confidence) == (expected.offset, expected.confidence)


def test_crops_of_the_planned_frames_alone_give_the_same_latency():
    faces, mfcc = _track(150, audio_lag=-4, seed=9)
    scorer = SyncNetScorer(WindowProbe(), SyncConfig(windows=10, runs=2))
    plan = scorer.plan(len(faces), mfcc.shape[1])
    frames = np.union1d(plan.video_frames, [0, 149])  # plus frames the sample keeps anyway
    assert len(plan.video_frames) == 10 + 2 * 4  # two runs of 5 windows of 5 frames
    partial = scorer.latency(faces[frames], mfcc, frames, plan)
    whole = scorer.latency(faces, mfcc)
    np.testing.assert_array_equal(partial.distances, whole.distances)
    short = np.setdiff1d(frames, plan.video_frames[:1])
    with pytest.raises(ValueError, match="lack frames"):
        scorer.latency(faces[short], mfcc, short, plan)


def test_max_frames_caps_the_windows():
    probe = WindowProbe()
    faces, mfcc = _track(60, audio_lag=1)
    result = SyncNetScorer(probe, SyncConfig(max_frames=20)).latency(faces, mfcc)
    assert sum(a[0] for _, a in probe.calls) == 16 and result.offset == -1


def test_mismatched_lengths_use_the_overlap():
    faces, mfcc = _track(40, audio_lag=0, n_mfcc=100)  # audio covers 25 frames only
    lip, aud, frames = SyncNetScorer(WindowProbe(), SyncConfig(windows=0)).embed(faces, mfcc)
    assert len(aud) == (100 - 20) // 4 + 1 and len(lip) == len(frames) == len(aud)
    faces, mfcc = _track(12, audio_lag=0, n_mfcc=400)  # video shorter than the audio
    assert len(SyncNetScorer(WindowProbe()).embed(faces, mfcc)[1]) == 12 - 4


def test_too_short_tracks_raise_value_error():
    scorer = SyncNetScorer(WindowProbe())
    faces, mfcc = _track(4, audio_lag=0, n_mfcc=200)
    with pytest.raises(TooShortForSync, match="got 4 frames"):
        scorer.latency(faces, mfcc)
    faces, mfcc = _track(30, audio_lag=0, n_mfcc=19)
    with pytest.raises(ValueError, match="19 MFCC frames"):
        scorer.latency(faces, mfcc)


def test_bad_shapes_and_window_are_rejected():
    scorer = SyncNetScorer(WindowProbe())
    with pytest.raises(ValueError, match="224, 224, 3"):
        scorer.latency(np.zeros((10, 112, 112, 3), np.uint8), np.zeros((13, 40), np.float32))
    with pytest.raises(ValueError, match="window must be 5"):
        SyncNetScorer(WindowProbe(), SyncConfig(window=7))


def test_lip_batch_is_bgr_0_255():
    faces = np.zeros((6, 224, 224, 3), np.uint8)
    faces[..., 0] = 255  # pure red in RGB
    batch = _lip_batch(faces, np.arange(6), np.array([0, 1]))
    assert batch.shape == (2, 3, 5, 224, 224) and batch.dtype == np.float32
    assert batch[:, 2].min() == 255 and batch[:, :2].max() == 0  # red is the last (BGR) channel


# --- real clip, real network (random weights), torch and ONNX Runtime ---------------------------


@pytest.fixture(scope="module")
def real_track():
    path = shared_media("real", "pcavs_Audio_Source_00086.mp4")  # 224x224 face crops, 25 fps
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in itertools.islice(container.decode(video=0), 30)]
    audio = decode_audio(path)
    return np.stack(frames), compute_mfcc(audio[: 640 * 30], 16000)


class OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, path):
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, video, audio):
        return tuple(self.session.run(None, {"video": video, "audio": audio}))


@pytest.mark.slow
def test_real_clip_end_to_end_torch_and_onnx(real_track, tmp_path):
    faces, mfcc = real_track
    assert faces.shape == (30, 224, 224, 3) and mfcc.shape == (13, 119)
    torch.manual_seed(0)
    net = SyncNet().eval()
    cfg = SyncConfig(windows=0, stride=2, batch_size=8)
    result = SyncNetScorer(net, cfg).latency(faces, mfcc)
    assert result.distances.shape == (31,) and result.vector().shape == (33,)
    assert result.frame_confidence.shape == (13,)  # 25 windows, every 2nd
    assert np.isfinite(result.vector()).all() and -15 <= result.offset <= 15

    onnx_path = tmp_path / "syncnet.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 5, 224, 224), torch.zeros(2, 1, 13, 20)),
        str(onnx_path),
        input_names=["video", "audio"],
        output_names=["lip", "aud"],
        dynamic_axes={"video": {0: "n_lip"}, "audio": {0: "n_aud"}, "lip": {0: "n_lip"}, "aud": {0: "n_aud"}},
        dynamo=False,
    )
    via_onnx = SyncNetScorer(OnnxRuntime(onnx_path), cfg).latency(faces, mfcc)
    assert via_onnx.offset == result.offset
    np.testing.assert_allclose(via_onnx.distances, result.distances, rtol=1e-4)


def test_channels_last_runtime_embeds_as_the_plain_one():
    torch.manual_seed(1)
    net = SyncNet().eval()
    rng = np.random.default_rng(0)
    video = (rng.random((2, 3, 5, 224, 224)) * 255).astype(np.float32)
    audio = rng.normal(size=(3, 1, 13, 20)).astype(np.float32)
    plain = TorchRuntime(net)(video, audio)
    fast = TorchRuntime(copy.deepcopy(net), channels_last=True)(video, audio)
    for a, b in zip(plain, fast, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_offset_search_matches_pairwise_distance_reference():
    """Curve and per-frame confidence equal a direct loop over torch's pairwise_distance with
    zero-padded audio (the official calc_pdist semantics), including the frame stride."""
    rng = np.random.default_rng(3)
    lip = rng.normal(size=(12, 8)).astype(np.float32)
    aud = rng.normal(size=(30, 8)).astype(np.float32)
    frames = np.arange(0, 24, 2)
    vshift = 4
    padded = torch.nn.functional.pad(torch.from_numpy(aud), (0, 0, vshift, vshift))
    rows = [
        torch.nn.functional.pairwise_distance(torch.from_numpy(lip[[i]]).repeat(9, 1), padded[f : f + 9])
        for i, f in enumerate(frames)
    ]
    reference = torch.stack(rows).numpy()  # (lip windows, offsets)
    result = offset_search(lip, aud, frames, vshift=vshift, smooth=1)
    np.testing.assert_allclose(result.distances, reference.mean(axis=0), rtol=1e-5)
    best = int(np.argmin(reference.mean(axis=0)))
    assert result.offset == vshift - best
    np.testing.assert_allclose(
        result.frame_confidence, np.median(reference.mean(axis=0)) - reference[:, best], rtol=1e-5, atol=1e-5
    )


def test_agreement_measure_on_a_perfect_network():
    """Embeddings of a network that matches lips and sound exactly: every shift is found by the
    full and the sampled search alike, so agreement is complete (and a sign error would show)."""
    from bench.sync_agreement import TrackEmbeddings, compare

    rng = np.random.default_rng(4)
    n, pad = 120, 10
    lip = rng.normal(size=(n, 8)).astype(np.float32)
    audio = np.concatenate([rng.normal(size=(pad, 8)), lip, rng.normal(size=(pad, 8))]).astype(np.float32)
    track = TrackEmbeddings("clip", lip, audio, pad)
    shifts = range(-10, 11)
    [result] = compare([track], [SyncConfig(windows=12, runs=12)], shifts)
    assert result.trials == 21 and result.same_offset == result.kept == result.full_correct == 21
    np.testing.assert_array_equal(track.audio_shifted(3)[5], audio[pad - 3 + 5])  # delayed by 3


def test_bench_margin_at_offset_zero_tells_a_clip_in_sync_from_a_moved_one():
    """``make bench``'s per-clip line: the search finds a moved clip's shift as surely as an
    unmoved clip's 0 (its confidence alone cannot tell them apart), while the margin at offset 0
    is high only for the clip as given."""
    from bench.pipeline import per_clip_offsets
    from bench.sync_agreement import TrackEmbeddings

    rng = np.random.default_rng(0)
    n, pad, dim = 60, 15, 16
    speech = rng.standard_normal((n + 2 * pad, dim)).astype(np.float32)
    speech /= np.linalg.norm(speech, axis=1, keepdims=True)
    lips = speech[pad : pad + n] + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    track = TrackEmbeddings("clip", lips, speech, pad)
    (row,) = per_clip_offsets([track], range(-10, 11), 15, valid_only=True)
    assert row.offset == 0 and row.hits == 21
    assert row.confidence == pytest.approx(row.shifted_confidence, rel=0.2)
    assert row.margin > 0.5 and row.shifted_margin < 0.2 * row.margin
