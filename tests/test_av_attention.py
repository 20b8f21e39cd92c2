"""The attention-fusion audio-visual detector (``models.av_attention``): its inputs from a
sample, the no-audio path, modality dropout, per-frame outputs, ONNX parity, and learning to
tell audio shifted against the lips on generated clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from submission_fakes import fake_sample

from core.aggregation import per_second
from core.preprocess_config import PreprocessConfig
from models.av_attention import AvAttentionConfig, AvAttentionDetector, mfcc_windows, normalised_mfcc
from models.onnx_export import export_onnx
from models.registry import create_model, load_model
from submission.scoring import DetectorScorer
from weights.store import load_weights, save_weights

TINY = {  # small enough for a CPU test; both per-frame bodies
    "compact": {
        "backbone": "compact",
        "num_frames": 4,
        "img_size": 64,
        "dim": 32,
        "heads": 2,
        "audio_window": 8,
    },
    "mobilenetv2": {"num_frames": 3, "img_size": 64, "dim": 32, "heads": 2, "audio_window": 8},
}


def tiny(backbone: str = "compact", seed: int = 0, **changes) -> AvAttentionDetector:
    torch.manual_seed(seed)
    model = create_model("av_attention", **{**TINY[backbone], **changes}).eval()
    with torch.no_grad():  # trained-looking statistics and a head that is not near zero
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.no_audio_context.normal_()
        model.no_audio_frame.normal_()
        model.head.weight.mul_(10)
    return model


def av_sample(rng: np.random.Generator, name: str, frames: int = 6, seconds: float = 2.0, audio: bool = True):
    """A sample like the cache's: ``frames`` crops spread over a ``seconds`` track at 25 fps,
    and the clip's MFCC at 100 Hz (or none)."""
    sample = fake_sample(name, 0, 0, 1)
    sample.faces = rng.integers(0, 256, (frames, 96, 96, 3), dtype=np.uint8)
    sample.face_frame_indices = np.round(np.linspace(0, seconds * 25 - 1, frames)).astype(np.int64)
    sample.meta.has_audio = audio
    sample.mfcc = rng.normal(0, 5, (13, int(seconds * 100) if audio else 0)).astype(np.float32)
    return sample


def test_config_round_trips_and_outputs_a_logit_and_one_per_frame():
    model = tiny()
    config = AvAttentionConfig.from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert config == model.config
    frames, mfcc, present = model.example_inputs(3)
    assert frames.shape == (3, 4, 3, 64, 64) and mfcc.shape == (3, 13, 4 * 8) and present.shape == (3, 1)
    assert present.flatten().tolist() == [1.0, 0.0, 1.0]  # the export traces both paths
    with torch.no_grad():
        logits, frame_logits = model(frames, mfcc, present)
    assert logits.shape == (3, 1) and frame_logits.shape == (3, 4)
    assert torch.isfinite(frame_logits).all()
    # the sample's logit is the linear head of the frames' mean feature = the mean frame value
    torch.testing.assert_close(logits[:, 0], frame_logits.mean(dim=1))
    assert frame_logits[0].std() > 0  # frames are told apart
    assert AvAttentionDetector.time_logits((logits, frame_logits)) is frame_logits
    with pytest.raises(ValueError, match=r"mfcc must be \(B, 13, 32\)"):
        model(frames, mfcc[:, :, :-1], present)
    with pytest.raises(ValueError, match="multiple of 4"):
        AvAttentionConfig(audio_window=10)
    with pytest.raises(ValueError, match="backbone"):
        AvAttentionConfig(backbone="resnet")


def test_sample_inputs_take_each_frames_audio_window_and_mark_missing_audio():
    rng = np.random.default_rng(0)
    sample = av_sample(rng, "clip.mp4", frames=6, seconds=2.0)
    config = AvAttentionConfig(**TINY["compact"])
    inputs = AvAttentionDetector.sample_inputs(sample, config)
    assert inputs["frames"].shape == (4, 3, 64, 64) and inputs["frames"].dtype == np.float32
    assert inputs["mfcc"].shape == (13, 4 * 8) and inputs["audio_present"].tolist() == [1.0]

    # crops of clip frames 0, 10, 20, 29, 39, 49 at 25 fps; the model reads crops 0, 2, 3, 5
    times = AvAttentionDetector.time_columns(sample, config)
    np.testing.assert_allclose(times, np.array([0, 20, 29, 49]) / 25.0)
    norm = normalised_mfcc(sample.mfcc)
    windows = inputs["mfcc"].reshape(13, 4, 8)
    for k, t in enumerate(
        times
    ):  # the frame shows t .. t + 40 ms; MFCC column c is centred at c·10 + 12.5 ms
        centre = int(round((t + 0.02 - 0.0125) * 100))
        lo = centre - 4
        if lo >= 0 and lo + 8 <= norm.shape[1]:
            np.testing.assert_allclose(windows[:, k], norm[:, lo : lo + 8])
    assert np.all(windows[:, 0, :3] == 0)  # before the audio starts: zero padding
    np.testing.assert_allclose(norm.mean(axis=1), 0, atol=1e-5)  # per-coefficient normalisation

    silent = av_sample(rng, "silent.mp4", audio=False)
    inputs = AvAttentionDetector.sample_inputs(silent, config)
    assert inputs["audio_present"].tolist() == [0.0] and not inputs["mfcc"].any()
    # audio that ends before the track's frames: nothing to read, so no audio either
    short = av_sample(rng, "short.mp4", frames=6, seconds=4.0)
    short.mfcc = short.mfcc[:, :5]
    short.face_frame_indices = short.face_frame_indices + 50
    windows, found = mfcc_windows(short.mfcc, AvAttentionDetector.time_columns(short, config), 25.0, 8)
    assert not found and not windows.any()


def test_without_audio_the_score_is_finite_and_the_mfcc_is_never_read():
    model = tiny()
    frames, mfcc, _ = model.example_inputs(2, seed=3)
    absent, present = torch.zeros(2, 1), torch.ones(2, 1)
    garbage = torch.full_like(mfcc, float("nan"))
    garbage[1] = 1e30
    with torch.no_grad():
        silent = model(frames, mfcc, absent)
        other_mfcc = model(frames, torch.randn_like(mfcc) * 50, absent)
        nan_mfcc = model(frames, garbage, absent)
        heard = model(frames, mfcc, present)
        heard_other = model(frames, torch.randn_like(mfcc) * 5, present)
    for outputs in (silent, nan_mfcc):
        assert all(torch.isfinite(o).all() for o in outputs)
    for a, b in zip(silent, other_mfcc, strict=True):
        assert torch.equal(a, b)  # bit for bit: the MFCC does not reach the outputs
    for a, b in zip(silent, nan_mfcc, strict=True):
        assert torch.equal(a, b)
    assert not torch.allclose(heard[0], silent[0])  # with audio, the audio path counts
    assert not torch.allclose(heard[0], heard_other[0])


def test_modality_dropout_switches_audio_off_only_in_training():
    """With ``audio_dropout`` 0.5 a training batch hides about half the samples' audio: each
    sample's outputs are exactly those of the no-dropout model with or without its audio. In
    eval mode nothing is dropped and repeated calls agree."""
    dropping = tiny(audio_dropout=0.5, dropout=0.0)
    keeping = tiny(audio_dropout=0.0, dropout=0.0)
    keeping.load_state_dict(dropping.state_dict())
    frames, mfcc, _ = dropping.example_inputs(1, seed=5)
    frames, mfcc = frames.repeat(64, 1, 1, 1, 1), mfcc.repeat(64, 1, 1)  # one sample, 64 times
    present, absent = torch.ones(64, 1), torch.zeros(64, 1)
    with torch.no_grad():  # eval first: training-mode calls move the BatchNorm statistics
        evaluated = [dropping(frames, mfcc, present)[0][:, 0] for _ in range(2)]
        reference = keeping(frames, mfcc, present)[0][:, 0]
        dropping.train(), keeping.train()
        torch.manual_seed(0)
        dropped = dropping(frames, mfcc, present)[0][:, 0]
        with_audio = keeping(frames, mfcc, present)[0][:, 0]
        without = keeping(frames, mfcc, absent)[0][:, 0]
    assert (with_audio - without).abs().min() > 1e-4  # the two cases can be told apart
    off = torch.isclose(dropped, without, atol=1e-6)
    on = torch.isclose(dropped, with_audio, atol=1e-6)
    assert bool((off ^ on).all())  # every sample is one case or the other
    assert 16 <= int(off.sum()) <= 48  # about half dropped
    torch.testing.assert_close(evaluated[0], evaluated[1], atol=0, rtol=0)
    torch.testing.assert_close(evaluated[0], reference, atol=0, rtol=0)


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_onnx_export_matches_torch_with_and_without_audio(backbone, tmp_path):
    import onnxruntime as ort

    from train.export import onnx_difference

    model = tiny(backbone)
    path = export_onnx(model, tmp_path / "av.onnx")
    assert onnx_difference(model, path, batch=3) <= 1e-4  # rows with and without audio
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "frame_logits"]
    frames, mfcc, _ = model.example_inputs(2, seed=7)
    absent = torch.zeros(2, 1)
    got = session.run(None, {"frames": frames.numpy(), "mfcc": mfcc.numpy(), "audio_present": absent.numpy()})
    with torch.no_grad():
        want = model(frames, mfcc, absent)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4)


def test_audio_switched_off_reads_no_mfcc_and_keeps_the_inputs(tmp_path):
    import onnxruntime as ort

    model = tiny("compact")
    off = tiny("compact", use_audio=False)
    off.load_state_dict(model.state_dict())
    frames, mfcc, _ = model.example_inputs(2, seed=3)
    present = torch.ones(2, 1)
    with torch.no_grad():
        got = off(frames, mfcc, present)[0]
        assert torch.equal(got, off(frames, mfcc + 5.0, present)[0])  # the sound changes nothing
        assert torch.equal(got, model(frames, mfcc, torch.zeros(2, 1))[0])  # = the vision-only path
        assert not torch.allclose(got, model(frames, mfcc, present)[0])
    assert AvAttentionConfig.from_dict(off.config.to_dict()).use_audio is False
    path = export_onnx(off, tmp_path / "off.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["frames", "mfcc", "audio_present"]
    feeds = {"frames": frames.numpy(), "mfcc": mfcc.numpy(), "audio_present": present.numpy()}
    np.testing.assert_allclose(session.run(None, feeds)[0], got.numpy(), atol=1e-4)


def test_scored_from_the_weights_alone_with_per_second_scores(tmp_path):
    """The weights' JSON names the model; torch and ONNX Runtime agree on samples with and
    without audio; the per-frame outputs become per-second scores."""
    model = tiny("compact", seed=1)
    pre = PreprocessConfig().replace("sample", num_frames=6)
    save_weights(tmp_path / "av", model.state_dict(), "av_attention", model.config.to_dict(), pre.to_dict())
    export_onnx(model, tmp_path / "av.onnx")
    loaded = load_model(tmp_path / "av")
    assert type(loaded.module) is AvAttentionDetector and loaded.preprocess == pre
    rng = np.random.default_rng(2)
    samples = [av_sample(rng, f"v{i}.mp4", audio=i % 2 == 0) for i in range(5)]
    probs = {}
    for runtime in ("torch", "onnxruntime"):
        scorer = DetectorScorer.from_weights(tmp_path / "av", runtime=runtime, batch_size=2)
        probs[runtime] = scorer.score(samples)
    assert probs["torch"].shape == (5,) and np.ptp(probs["torch"]) > 0
    np.testing.assert_allclose(probs["onnxruntime"], probs["torch"], atol=1e-5)

    inputs = [torch.from_numpy(x) for x in AvAttentionDetector.batch_inputs(samples[:1], model.config)]
    with torch.no_grad():
        frame_logits = AvAttentionDetector.time_logits(model(*inputs))[0].numpy()
    seconds = per_second(AvAttentionDetector.time_columns(samples[0], model.config), frame_logits)
    assert [s for s, _ in seconds] == [0, 1] and all(0 < p < 1 for _, p in seconds)
    assert AvAttentionDetector.preprocess_problem(model.config, pre) is None
    assert "13 MFCCs at 100 Hz" in AvAttentionDetector.preprocess_problem(
        model.config, pre.replace("audio", mfcc_hop_s=0.02)
    )


def test_starts_from_the_face_detectors_body_and_keeps_its_first_blocks_fixed():
    model = create_model("av_attention", **TINY["mobilenetv2"])
    upstream = load_weights("retinaface_mobilenetv2").state_dict  # built by make setup
    model.init_from_upstream("retinaface_mobilenetv2")
    for key, value in model.cnn.body.state_dict().items():
        torch.testing.assert_close(value, upstream[f"body.{key}"])
    model.train()
    body = model.cnn.body
    assert not body.stem.training and not body.blocks[5].training and body.blocks[6].training
    assert not any(p.requires_grad for p in body.blocks[5].parameters())
    with pytest.raises(ValueError, match="no upstream checkpoint"):
        tiny("compact").init_from_upstream("retinaface_mobilenetv2")


def test_sync_audio_tower_starts_from_the_shipped_sync_model_reads_raw_mfcc_and_stays_fixed(tmp_path):
    """``audio_tower=syncnet_mouth``: each frame's 0.2 s window goes in raw, ``--init syncnet``
    copies the sync model's audio tower (its embeddings are the sync model's own), ``freeze_audio``
    keeps its weights and statistics through training, ONNX matches, and misfits are refused."""
    from models.syncnet import load_syncnet
    from train.export import onnx_difference

    sync = load_syncnet("syncnet")  # shipped in weights/
    model = tiny("compact", audio_tower="syncnet_mouth", audio_window=20, freeze_audio=True)
    model.init_from_upstream("syncnet")
    rng = np.random.default_rng(1)
    sample = av_sample(rng, "clip.mp4", frames=6, seconds=2.0)
    inputs = AvAttentionDetector.sample_inputs(sample, model.config)
    times = AvAttentionDetector.time_columns(sample, model.config)
    windows = inputs["mfcc"].reshape(13, 4, 20)
    centre = int(round((times[2] + 0.02 - 0.0125) * 100))
    np.testing.assert_array_equal(windows[:, 2], sample.mfcc[:, centre - 10 : centre + 10])  # raw
    batch = torch.from_numpy(windows.transpose(1, 0, 2)).unsqueeze(1)  # (T, 1, 13, 20)
    with torch.no_grad():
        ours = torch.nn.functional.normalize(model.audio_sync(batch), dim=1)
        torch.testing.assert_close(ours, sync.forward_aud(batch), atol=1e-5, rtol=1e-5)

    before = {k: v.clone() for k, v in model.audio_sync.state_dict().items()}
    model.train()
    assert not model.audio_sync.training
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    tensors = {k: torch.from_numpy(v)[None].repeat(2, *[1] * v.ndim) for k, v in inputs.items()}
    for _ in range(2):
        optim.zero_grad()
        model(**tensors)[0].sum().backward()
        optim.step()
    for key, value in model.audio_sync.state_dict().items():
        torch.testing.assert_close(value, before[key])  # weights and running statistics
    model.eval()
    assert onnx_difference(model, export_onnx(model, tmp_path / "av.onnx"), batch=2) <= 1e-4

    with pytest.raises(ValueError, match="audio_window=20"):
        AvAttentionConfig(audio_tower="syncnet_mouth")
    with pytest.raises(ValueError, match="audio_tower=syncnet_mouth"):
        tiny("compact").init_from_upstream("syncnet")
    with pytest.raises(ValueError, match="width.*8, 24"):
        tiny("compact", audio_tower="syncnet_mouth", audio_window=20, audio_width=8).init_from_upstream(
            "syncnet"
        )


# --- learning on generated clips -----------------------------------------------------------------

# Measured with one torch thread (data seed 4, training seeds 0 / 1 / 2): held-out AUC 0.931 /
# 0.931 / 0.924 on 24 test videos after 100 steps (fit 13-16 s; making the clips 20-26 s on a
# busy machine). The bar sits 0.12 below.
LEARN_BAR = 0.80
LEARN_MODEL = {
    "backbone": "compact",
    "num_frames": 4,
    "img_size": 64,
    "dim": 32,
    "heads": 2,
    "audio_dropout": 0.2,
}


@pytest.fixture(scope="module")
def audio_shift_cache(tmp_path_factory):
    """120 clips of 0.6 s: 60 real talking faces and 60 fakes whose soundtrack is moved 5-12
    frames against the lips (the frames are the real clip's), split by identity."""
    from train.synth.samples import samples_from_videos, write_sample_cache
    from train.synth.videos import generate_videos

    cfg = PreprocessConfig().replace("sample", num_frames=4)
    videos = generate_videos(120, seconds=0.6, seed=4, categories=["audio_shift"])
    pairs = samples_from_videos(videos, cfg, crop_size=64)
    return write_sample_cache(pairs, tmp_path_factory.mktemp("audio_shift_cache"), cfg)


def test_learns_audio_shifted_against_the_lips_and_exports(audio_shift_cache, tmp_path):
    """A fake here differs from its real clip only in its soundtrack: vision alone cannot tell
    them apart, so a held-out AUC above the bar is the audio path's (and the fusion's) doing."""
    from held_out import held_out_auc

    from train.export import export_checkpoint
    from train.fit import FitConfig, fit
    from train.module import OptimConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = fit(
            FitConfig(
                audio_shift_cache,
                tmp_path / "run",
                arch="av_attention",
                model=LEARN_MODEL,
                optim=OptimConfig(optimizer="adamw", lr=2e-3, scheduler="cosine", warmup_steps=20),
                augment=None,
                batch_size=16,
                epoch_size=16 * 25,
                max_epochs=4,
                patience=0,
                progress=False,
            )
        )
    finally:
        torch.set_num_threads(threads)
    assert result.steps == 100
    auc, videos, _ = held_out_auc(result.last_checkpoint, audio_shift_cache)
    print(f"av_attention: held-out AUC {auc:.3f} on audio-shifted clips")
    assert videos == 24
    assert auc >= LEARN_BAR

    exported = export_checkpoint(result.last_checkpoint, tmp_path / "weights" / "av_attention")
    assert exported.onnx_max_abs_diff <= 1e-4
    assert json.loads(exported.config.read_text())["arch"] == "av_attention"
