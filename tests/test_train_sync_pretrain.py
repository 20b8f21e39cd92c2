"""SyncNet self-supervised pretraining: pairs, loss, shift evaluation, weights preprocessing loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.preprocess_config import PreprocessConfig
from preprocess.audio import mfcc
from preprocess.latency import SyncNetScorer
from train.sync_pretrain import (
    SyncClip,
    SyncPretrainConfig,
    contrastive_loss,
    draw_batch,
    pretrain_syncnet,
    shifted_mfcc,
)
from train.synth.samples import crop_square
from train.synth.videos import generate_videos


@pytest.fixture(scope="module")
def clips():
    """Three real synthetic clips cropped from their ground-truth boxes (no detector needed)."""
    out = []
    for v in generate_videos(3, seconds=0.6, seed=2):
        faces = np.stack([crop_square(f, b, 0.4, 224) for f, b in zip(v.frames, v.boxes, strict=True)])
        out.append(SyncClip(v.filename, faces, v.audio, mfcc(v.audio, v.sample_rate), v.sample_rate))
    return out


def test_contrastive_loss_rewards_close_positives_and_far_negatives():
    torch.manual_seed(0)
    lip = torch.randn(4, 16)
    near = lip + 0.01 * torch.randn(4, 16)
    far = lip + 100.0
    good = contrastive_loss(lip, near, far, margin=5.0)
    bad = contrastive_loss(lip, far, near, margin=5.0)
    assert good < 1.0 < bad


def test_batches_pair_windows_with_in_sync_and_shifted_audio(clips):
    cfg = SyncPretrainConfig(batch_size=3)
    lip, pos, neg = draw_batch(clips, cfg, np.random.default_rng(0))
    assert lip.shape == (3, 3, 5, 224, 224) and pos.shape == neg.shape == (3, 1, 13, 20)
    assert not torch.equal(pos, neg)
    assert float(lip.min()) >= 0 and float(lip.max()) <= 255  # raw BGR pixels, as SyncNet was trained


def test_shifted_audio_moves_mfcc_by_four_columns_per_frame(clips):
    clip, cfg = clips[0], PreprocessConfig()
    late = shifted_mfcc(clip, 3, cfg)
    early = shifted_mfcc(clip, -3, cfg)
    assert late.shape == early.shape == clip.mfcc.shape
    np.testing.assert_allclose(late[:, 13:-1], clip.mfcc[:, 1:-13], rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(early[:, 1:-13], clip.mfcc[:, 13:-1], rtol=1e-3, atol=1e-2)


def test_pretraining_writes_weights_preprocessing_loads(clips, tmp_path):
    torch.manual_seed(0)
    cfg = SyncPretrainConfig(steps=2, batch_size=2, eval_clips=1, eval_shifts=(0, 6), log_every=1)
    result = pretrain_syncnet(None, tmp_path / "syncnet", cfg, clips=clips, progress=False)
    assert result.steps == 2 and result.train_clips == 2 and result.eval_clips == 1
    assert np.isfinite([result.loss_first, result.loss_last]).all()
    assert result.before.trials == result.after.trials == 2
    assert [t for _, t, _ in result.after.found] == [0, -6]  # delayed audio: the search must answer -6
    scorer = SyncNetScorer.from_weights(result.weights)  # what preprocessing does with SyncConfig.weights
    lat = scorer.latency(clips[0].faces, clips[0].mfcc)
    assert lat.distances.shape == (31,) and np.isfinite(lat.distances).all()
    assert "shift recovery" in result.summary()
