"""MDS (models/mds.py): per-second samples, chunk inputs aligned with their sound, the dissonance
score and its threshold, the training loss, ONNX parity, the audio_desync pseudo-fake, and the
threshold chosen at export and the model's own confusion matrix in ``train eval``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from core.preprocess_config import PreprocessConfig, SampleConfig
from core.preprocess_data import Sample, SampleMeta
from models.mds import MdsConfig, MdsModel, sample_chunks
from models.registry import create_model
from preprocess.tracks import per_second_indices

TINY = {"width": 4, "audio_width": 4, "embed_dim": 16, "img_size": 32, "max_chunks": 6}


def chunk_sample(seconds: int = 3, fps: float = 25.0, audio: bool = True, k: int = 5, name: str = "v.mp4"):
    """A per-second sample whose crops hold their clip frame index as pixel value and whose MFCC
    holds its column index: what lands where can be read back from the inputs."""
    keep = per_second_indices(np.arange(int(seconds * fps)), fps, k)
    faces = np.broadcast_to(keep[:, None, None, None].astype(np.uint8), (len(keep), 64, 64, 3)).copy()
    columns = int(seconds * 100) if audio else 0
    mfcc = np.tile(np.arange(columns, dtype=np.float32), (13, 1))
    meta = SampleMeta(name, name, fps, seconds, audio, 1, 0)
    return Sample(
        meta=meta,
        faces=faces,
        face_frame_indices=keep,
        boxes=np.zeros((int(seconds * fps), 4), np.float32),
        frame_start=0,
        audio=np.zeros(columns * 160, np.int16),
        mfcc=mfcc,
        mel=np.zeros((80, columns), np.float32),
        latency=None,
    )


def test_per_second_indices_centre_a_chunk_in_every_whole_second_of_the_track():
    idx = per_second_indices(np.arange(3, 80), 25.0, 5)  # track from frame 3 to 79
    np.testing.assert_array_equal(idx.reshape(-1, 5)[:, 0], [10, 35, 60])  # second 3 reaches past 79
    assert np.all(np.diff(idx.reshape(-1, 5), axis=1) == 1)
    # a track shorter than a chunk still gives one chunk (evenly spaced, repeating)
    np.testing.assert_array_equal(per_second_indices(np.arange(40, 43), 25.0, 5), [40, 40, 41, 42, 42])


def test_uniform_config_keeps_its_old_form_and_per_second_is_validated():
    assert "chunk_frames" not in PreprocessConfig().to_dict()["sample"]  # caches keep their hash
    per_second = PreprocessConfig().replace("sample", sampling="per_second", chunk_frames=7)
    assert PreprocessConfig.from_dict(per_second.to_dict()) == per_second
    with pytest.raises(ValueError, match="sampling"):
        SampleConfig(sampling="every_frame")


def test_chunk_inputs_hold_each_second_with_the_sound_of_the_same_moments():
    cfg = MdsConfig(**{**TINY, "region": "whole"})
    sample = chunk_sample(seconds=3)
    inputs = MdsModel.sample_inputs(sample, cfg)
    assert inputs["chunks"].shape == (6, 5, 3, 32, 32) and inputs["mfcc"].shape == (6, 13, 20)
    np.testing.assert_array_equal(inputs["chunk_mask"], [1, 1, 1, 0, 0, 0])
    assert inputs["has_audio"] == 1.0
    pixels = inputs["chunks"][:3, :, 0, 0, 0] * 64.0 + 127.5  # back to the frame indices
    np.testing.assert_allclose(pixels, sample.face_frame_indices.reshape(3, 5), atol=1e-3)
    # MFCC columns: chunk c's frames span (25c + 10) / 25 .. (25c + 15) / 25 s = columns 100c + 40 .. + 60
    raw = np.arange(300, dtype=np.float32)
    normalised = (raw - raw.mean()) / (raw.std() + 1e-5)
    for c in range(3):
        np.testing.assert_allclose(inputs["mfcc"][c, 0], normalised[100 * c + 40 : 100 * c + 60], atol=1e-5)
    assert not inputs["mfcc"][3:].any() and not inputs["chunks"][3:].any()
    np.testing.assert_array_equal(MdsModel.time_columns(sample, cfg)[:4], [0, 1, 2, np.nan])


def test_chunks_are_cut_from_the_middle_of_a_second_and_capped():
    sample = chunk_sample(seconds=8, k=9)
    chunks = sample_chunks(sample, MdsConfig(chunk_frames=5, max_chunks=6))
    assert [c.second for c in chunks] == list(range(6))
    first = sample.face_frame_indices[chunks[0].rows]
    np.testing.assert_array_equal(first, [10, 11, 12, 13, 14])  # the middle 5 of frames 8..16


def test_windows_samples_give_chunks_of_consecutive_frames_only():
    """A "windows" sample (runs of 32 consecutive frames at four places in the track): each run
    straddles two seconds, each second's part long enough gives a chunk of consecutive frames,
    stubs shorter than a chunk are skipped, and preprocessing with windows is accepted."""
    sample = chunk_sample(seconds=12)
    starts = (20, 105, 190, 290)  # frames 20..51 lie in seconds 0 (5 frames) and 1 (27 frames)
    keep = np.concatenate([np.arange(a, a + 32) for a in starts])
    sample = dataclasses.replace(
        sample,
        face_frame_indices=keep,
        faces=np.broadcast_to(keep[:, None, None, None].astype(np.uint8), (len(keep), 8, 8, 3)).copy(),
    )
    chunks = sample_chunks(sample, MdsConfig(chunk_frames=5, max_chunks=16))
    frames = [keep[c.rows] for c in chunks]
    assert all(np.all(np.diff(f) == 1) and len(f) == 5 for f in frames)
    # each run gives its two seconds: 20-51 (5 + 27 frames), 105-136 (20 + 12), 190-221, 290-321
    assert [c.second for c in chunks] == [0, 1, 4, 5, 7, 8, 11, 12]
    np.testing.assert_array_equal(frames[0], [20, 21, 22, 23, 24])  # the 5 frames of second 0
    windows = PreprocessConfig().replace("sample", sampling="windows", windows=4, window_frames=32)
    assert MdsModel.preprocess_problem(MdsConfig(), windows) is None
    short = windows.replace("sample", window_frames=4)
    assert "runs of 4" in MdsModel.preprocess_problem(MdsConfig(), short)


def test_fake_log_odds_are_the_mean_distance_above_the_threshold_and_fall_back_without_audio():
    model = create_model("mds", **TINY).eval()
    samples = [chunk_sample(3), chunk_sample(5), chunk_sample(4, audio=False)]
    inputs = [torch.from_numpy(x) for x in MdsModel.batch_inputs(samples, model.config)]
    with torch.no_grad():
        outputs = model(*inputs)
    logits, chunk_logits, distances, visual, _, dissonance = (o.numpy() for o in outputs)
    cfg = model.config
    mean = distances[:2].sum(1) / [3, 5]
    np.testing.assert_allclose(dissonance[:2], mean, rtol=1e-5)
    np.testing.assert_allclose(logits[:2, 0], (mean - cfg.distance_threshold) * cfg.logit_scale, rtol=1e-5)
    assert np.isnan(dissonance[2])
    np.testing.assert_allclose(logits[2, 0], visual[2, :4].mean(), rtol=1e-5)  # the visual head
    assert np.isnan(chunk_logits[0, 3:]).all() and not np.isnan(chunk_logits[1, :5]).any()
    np.testing.assert_allclose(chunk_logits[2, :4], visual[2, :4], rtol=1e-5)
    np.testing.assert_array_equal(MdsModel.time_logits(outputs), outputs[1])
    # probability 0.5 exactly at the threshold: set it to sample 0's own dissonance
    model.set_threshold(float(dissonance[0]))
    with torch.no_grad():
        again = model(*inputs)
    assert model.config.distance_threshold == pytest.approx(dissonance[0])
    np.testing.assert_allclose(MdsModel.fake_probability([o.numpy() for o in again])[0], 0.5, atol=1e-5)


def test_training_loss_pulls_real_chunks_together_and_pushes_fakes_past_the_margin():
    model = create_model("mds", **{**TINY, "max_chunks": 2, "head_weight": 0.0})
    distances = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    zeros = torch.zeros(2, 2)
    outputs = (zeros[:, :1], zeros, distances, zeros, zeros, zeros[:, 0])
    batch = {"chunk_mask": torch.ones(2, 2), "has_audio": torch.ones(2)}
    real = model.training_loss(outputs, {**batch, "label": torch.tensor([0, 0])})
    fake = model.training_loss(outputs, {**batch, "label": torch.tensor([1, 1])})
    assert float(real) == pytest.approx(0.25) and float(fake) == pytest.approx(0.49**2)
    far = (zeros[:, :1], zeros, distances + 0.6, zeros, zeros, zeros[:, 0])
    assert float(model.training_loss(far, {**batch, "label": torch.tensor([1, 1])})) == 0.0
    # padded chunks and samples without audio are left out of the contrastive term
    half = {"chunk_mask": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "has_audio": torch.tensor([1.0, 0.0])}
    odd = (zeros[:, :1], zeros, torch.tensor([[0.2, 9.0], [9.0, 9.0]]), zeros, zeros, zeros[:, 0])
    assert float(model.training_loss(odd, {**half, "label": torch.tensor([0, 0])})) == pytest.approx(0.04)
    # with the heads: + cross-entropy of each (log 2 each for zero logits)
    heads = create_model("mds", **{**TINY, "max_chunks": 2})
    total = heads.training_loss(outputs, {**batch, "label": torch.tensor([0, 0])})
    assert float(total) == pytest.approx(0.25 + 2 * np.log(2), rel=1e-5)


def test_lightning_training_step_uses_the_detector_loss():
    from train.module import DetectorLitModule

    module = DetectorLitModule(model_config=TINY, arch="mds", optim={"optimizer": "adamw"})
    samples = [chunk_sample(2), chunk_sample(3)]
    names = MdsModel.input_names
    batch = dict(
        zip(
            names,
            (torch.from_numpy(x) for x in MdsModel.batch_inputs(samples, module.model.config)),
            strict=True,
        )
    )
    batch["label"] = torch.tensor([0, 1])
    module.log = lambda *a, **k: None  # no trainer attached
    torch.manual_seed(0)
    loss = module.training_step(batch, 0)
    # train-mode outputs depend only on the batch (no dropout): the hook's loss on them is the step's
    outputs = module.model(*(batch[n] for n in names))
    assert float(loss) == pytest.approx(float(module.model.training_loss(outputs, batch)), rel=1e-5)


def test_onnx_export_matches_torch(tmp_path):
    from models.onnx_export import export_onnx
    from train.export import onnx_difference

    model = create_model("mds", **TINY).eval()
    path = export_onnx(model, tmp_path / "mds.onnx")
    assert onnx_difference(model, path, batch=3) <= 1e-4  # padding, no-audio sample, other batch size


def test_scored_from_the_weights_alone_on_every_runtime(tmp_path):
    from models.onnx_export import export_onnx
    from submission.scoring import DetectorScorer
    from weights.store import save_weights

    torch.manual_seed(1)
    model = create_model("mds", **TINY)
    pre = PreprocessConfig().replace("sample", sampling="per_second")
    assert MdsModel.preprocess_problem(model.config, pre) is None
    assert "per_second" in MdsModel.preprocess_problem(model.config, PreprocessConfig())
    save_weights(tmp_path / "mds", model.state_dict(), "mds", model.config.to_dict(), pre.to_dict())
    export_onnx(model.eval(), tmp_path / "mds.onnx")
    samples = [chunk_sample(s, audio=s != 4, name=f"v{s}.mp4") for s in (2, 3, 4, 6)]
    probs = {}
    for runtime in ("torch", "onnxruntime"):
        scorer = DetectorScorer.from_weights(tmp_path / "mds", runtime=runtime, batch_size=3)
        probs[runtime] = scorer.score(samples)
    np.testing.assert_allclose(probs["onnxruntime"], probs["torch"], atol=1e-5)


def test_audio_desync_moves_mfcc_mel_and_waveform_together_by_what_it_says():
    from train.pseudo_fake_mix import PseudoFakeConfig, PseudoFakes
    from train.pseudo_fakes import AudioDesync

    sample = chunk_sample(4)
    sample = dataclasses.replace(
        sample,
        audio=np.arange(400 * 160, dtype=np.int64).astype(np.int16),
        mel=np.tile(np.arange(400, dtype=np.float32), (80, 1)),
    )
    category = AudioDesync(swap_p=0.0)
    for seed in range(20):
        forged = category.forge(sample, np.random.default_rng(seed))
        moved = (-int(forged.mfcc[0, 0])) % 400  # the rotation: column j now holds j - moved
        shift = moved if moved <= 200 else moved - 400
        assert 30 <= abs(shift) <= 150  # 0.3-1.5 s at 100 columns per second
        np.testing.assert_array_equal(forged.mfcc, np.roll(sample.mfcc, shift, axis=1))
        np.testing.assert_array_equal(forged.mel, np.roll(sample.mel, shift, axis=1))
        np.testing.assert_array_equal(forged.audio, np.roll(sample.audio, shift * 160))
        np.testing.assert_array_equal(forged.faces, sample.faces)
    swapped = AudioDesync(swap_p=1.0).forge(sample, np.random.default_rng(0))
    moved = (-int(swapped.mfcc[0, 0])) % 400
    assert 150 <= moved <= 250  # about half the clip away
    # a real sample becomes a fake; one without a soundtrack cannot, and stays real
    pseudo = PseudoFakes(PseudoFakeConfig(fake_p=1.0, weights={"audio_desync": 1.0}))
    forged, label = pseudo(sample, 0, np.random.default_rng(0))
    assert label == 1 and not np.array_equal(forged.mfcc, sample.mfcc)
    silent = chunk_sample(4, audio=False)
    assert pseudo(silent, 0, np.random.default_rng(0)) == (silent, 0)


def test_balanced_accuracy_threshold_sits_between_the_classes():
    from train.metrics import balanced_accuracy_threshold

    threshold, balanced = balanced_accuracy_threshold([0, 0, 0, 1, 1], [0.2, 0.3, 0.9, 1.1, 1.3])
    assert threshold == pytest.approx(1.0) and balanced == 1.0
    threshold, balanced = balanced_accuracy_threshold([0, 0, 1, 1], [0.2, 1.2, 0.5, 1.5])
    assert balanced == 0.75 and 0.2 < threshold <= 1.35
    assert np.isnan(balanced_accuracy_threshold([0, 0], [0.1, 0.2])[0])


def test_report_has_the_confusion_matrix_at_the_model_threshold():
    from train.evaluate import format_report
    from train.metrics import evaluate_scores

    report = evaluate_scores([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9], threshold=0.8)
    m = report.model_confusion
    assert (m.tp, m.fp, m.tn, m.fn) == (2, 1, 1, 1)
    data = report.to_dict()
    assert (
        data["model_confusion"]["accuracy"] == pytest.approx(0.6)
        and data["model_confusion"]["threshold"] == 0.5
    )
    assert data["confusion"]["tp"] == 1  # the chosen threshold's matrix is still there
    assert "model's threshold (probability 0.5): accuracy 0.6000  TP 2 FP 1 TN 1 FN 1" in format_report(
        report
    )


def test_export_chooses_the_threshold_on_validation_and_writes_it(tmp_path):
    """A tiny fit on synthetic talkers, then export: the JSON's threshold is the one that best
    separates the validation videos' mean distances, and the ONNX graph carries it."""
    from train.evaluate import choose_model_threshold
    from train.export import export_checkpoint
    from train.fit import FitConfig, fit
    from train.module import load_checkpoint
    from train.synth.samples import talking_sample, write_sample_cache
    from train.synth.videos import SynthVideo

    cfg = PreprocessConfig().replace("sample", sampling="per_second")
    pairs = []
    for i in range(8):
        split = "train" if i < 4 else "val"
        for fake in (0, 1):
            sample = talking_sample(3, i, 2.0, cfg, audio_shift_frames=8 * fake)
            name = f"t{i}_{fake}.mp4"
            sample.meta.video = name
            video = SynthVideo(
                name,
                fake,
                split,
                "",
                "fake" if fake else "real",
                "",
                np.zeros(0),
                np.zeros(0),
                25.0,
                16000,
                np.zeros(0),
            )
            pairs.append((video, sample))
    manifest = write_sample_cache(pairs, tmp_path / "cache", cfg)
    run = tmp_path / "run"
    model = {**TINY, "max_chunks": 2}
    fit(
        FitConfig(
            manifest,
            run,
            model=model,
            arch="mds",
            max_steps=2,
            batch_size=4,
            augment=None,
            progress=False,
            patience=0,
        )
    )
    checkpoint = run / "checkpoints" / "last.ckpt"
    expected = choose_model_threshold(load_checkpoint(checkpoint).scoring_model().eval(), manifest, "val")
    result = export_checkpoint(checkpoint, tmp_path / "out" / "mds")  # the run's manifest, by default
    saved = json.loads(result.config.read_text())
    assert saved["model"]["distance_threshold"] == pytest.approx(expected.threshold)
    assert saved["extra"]["threshold_calibration"]["videos"] == 8
    assert result.onnx_max_abs_diff <= 1e-4


def test_syncnet_audio_tower_starts_from_the_shipped_sync_model_and_reads_raw_mfcc(tmp_path):
    """``audio_tower=syncnet_mouth``: MFCC windows go in raw (the sync model's input), ``--init
    weights/syncnet`` copies its audio tower, so before any training each chunk's audio embedding
    is the sync model's own; a config that does not fit it is refused by name."""
    from models.onnx_export import export_onnx
    from models.syncnet import load_syncnet
    from train.cli import model_spec
    from train.export import onnx_difference

    sync = load_syncnet("syncnet")
    arch, spec = model_spec(f"mds:audio_tower=syncnet_mouth,audio_width={sync.config.width},img_size=32")
    assert arch == "mds" and spec["audio_tower"] == "syncnet_mouth"
    model = create_model("mds", **spec)
    model.init_from_upstream("syncnet")
    model.eval()
    sample = chunk_sample(seconds=3)
    rng = np.random.default_rng(0)
    sample = dataclasses.replace(sample, mfcc=rng.normal(0, 8, sample.mfcc.shape).astype(np.float32))
    inputs = MdsModel.sample_inputs(sample, model.config)
    np.testing.assert_array_equal(inputs["mfcc"][0], sample.mfcc[:, 40:60])  # raw, not cmvn'd
    windows = torch.from_numpy(inputs["mfcc"][:3]).unsqueeze(1)
    with torch.no_grad():
        ours = torch.nn.functional.normalize(model.audio_stream(windows), dim=1)
        theirs = sync.forward_aud(windows)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert onnx_difference(model, export_onnx(model, tmp_path / "mds.onnx"), batch=2) <= 1e-4

    with pytest.raises(ValueError, match="width.*8, 24"):
        create_model("mds", audio_tower="syncnet_mouth", audio_width=8).init_from_upstream("syncnet")
    with pytest.raises(ValueError, match="audio_tower=syncnet_mouth"):
        create_model("mds", **TINY).init_from_upstream("syncnet")
    with pytest.raises(ValueError, match="audio_tower must be one of"):
        MdsConfig(audio_tower="vggish")


def test_a_frozen_audio_stream_stays_as_initialised_through_training_steps():
    torch.manual_seed(0)
    model = create_model("mds", **TINY, freeze_audio=True)
    before = {k: v.clone() for k, v in model.audio_stream.state_dict().items()}
    video_before = model.video_stream.stem[0].weight.clone()
    model.train()
    assert not model.audio_stream.training and model.video_stream.training
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    samples = [chunk_sample(3), chunk_sample(4)]
    inputs = [torch.from_numpy(x) for x in MdsModel.batch_inputs(samples, model.config)]
    batch = {"chunk_mask": inputs[2], "has_audio": inputs[3], "label": torch.tensor([0.0, 1.0])}
    for _ in range(3):
        optimiser.zero_grad()
        model.training_loss(model(*inputs), batch).backward()
        optimiser.step()
    for key, value in model.audio_stream.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)  # weights and running statistics
    assert not torch.equal(model.video_stream.stem[0].weight, video_before)
