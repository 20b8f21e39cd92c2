"""The default detector's recipe learns the forgery, not the people: trained on pseudo-fakes of
some real faces from ../shared/train, it tells pseudo-fakes of *other* people (held-out photos,
never seen) from their originals. A short run of the recipe (smaller images, fewer steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHARED
from torch.nn import functional as F

from core.preprocess_config import PreprocessConfig
from models.mobilenet_frames import MobileNetFrames, MobileNetFramesConfig
from train.metrics import roc_auc
from train.pseudo_fake_mix import PseudoFakeConfig, PseudoFakes
from train.pseudo_fakes import MouthRerender, SelfBlend

PHOTOS = 64  # every 4th held out: 48 people to train on, 16 never seen
STEPS, BATCH = 120, 16


@pytest.fixture(scope="module")
def photo_samples():
    from preprocess.pipeline import Preprocessor

    folder = SHARED / "train" / "real_images" / "faces_1081"
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: this test trains on face photos from ../shared/train")
    cfg = PreprocessConfig().replace("media", still_images=True).replace("sample", num_frames=1)
    pre = Preprocessor(cfg, syncnet=None)
    samples = []
    for path in sorted(folder.glob("*.jpg"))[:PHOTOS]:
        found = pre.process(path).samples
        if found and found[0].landmarks is not None and np.isfinite(found[0].landmarks).all():
            samples.append(found[0])
    assert len(samples) >= PHOTOS - 4, "RetinaFace should find the face in nearly every photo"
    return [s for i, s in enumerate(samples) if i % 4], samples[::4]


def test_pseudo_fakes_of_unseen_people_are_told_from_their_originals(photo_samples):
    train, held_out = photo_samples
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = MobileNetFramesConfig(num_frames=1, img_size=96)
    model = MobileNetFrames(cfg)
    model.init_from_upstream("retinaface_mobilenetv2")
    forge = PseudoFakes(PseudoFakeConfig(weights={"self_blend": 1.0, "mouth_rerender": 1.0}))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(STEPS):
        batch = [forge(train[int(rng.integers(len(train)))], 0, rng) for _ in range(BATCH)]
        frames = torch.from_numpy(
            np.stack([MobileNetFrames.sample_inputs(s, cfg)["frames"] for s, _ in batch])
        )
        labels = torch.tensor([float(y) for _, y in batch])
        loss = F.binary_cross_entropy_with_logits(model(frames)[0][:, 0], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    vr = np.random.default_rng(123)
    samples = held_out + [kind.forge(s, vr) for s in held_out for kind in (SelfBlend(), MouthRerender())]
    labels = np.array([0] * len(held_out) + [1] * 2 * len(held_out))
    with torch.no_grad():
        frames = torch.from_numpy(
            np.stack([MobileNetFrames.sample_inputs(s, cfg)["frames"] for s in samples])
        )
        scores = model(frames)[0][:, 0].numpy()
    auc = roc_auc(labels, scores)
    assert auc >= 0.75, f"held-out pseudo-fake AUC {auc:.3f}"
