"""The data module over a preprocessing cache: manifest parsing, splits, balance, batches."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from core.preprocess_config import PreprocessConfig
from models.fusion import FusionConfig, FusionModel
from train.augment import AugmentConfig
from train.data import ManifestDataModule, ManifestEntry, cache_preprocess_config, draw_weights, read_manifest
from train.synth.samples import samples_from_videos, write_sample_cache
from train.synth.videos import generate_videos

MODEL = FusionConfig.tiny(img_size=32, num_frames=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """12 videos (6 real, 6 fake) as cached samples; reals outnumber fakes in train by design below."""
    cfg = PreprocessConfig().replace("sample", num_frames=2)
    pairs = samples_from_videos(
        generate_videos(12, seconds=0.4, seed=5, categories=["face_blend"]), cfg, crop_size=32
    )
    # drop two training fakes: the classes become unbalanced (balance must fix the draws)
    dropped = [v.filename for v, _ in pairs if v.label == 1 and v.split == "train"][:2]
    pairs = [(v, s) for v, s in pairs if v.filename not in dropped]
    return write_sample_cache(pairs, tmp_path_factory.mktemp("cache"), cfg)


def test_manifest_rows_resolve_sample_paths(cache):
    entries = read_manifest(cache)
    assert len(entries) == 10
    assert all(e.sample.is_file() for e in entries)
    assert {e.split for e in entries} == {"train", "val", "test"}
    assert {e.category for e in entries} == {"real", "face_blend"}
    assert cache_preprocess_config(cache).sample.num_frames == 2


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "manifest.csv")
    bad = tmp_path / "m.csv"
    bad.write_text("filename,label\nx.mp4,1\n")
    with pytest.raises(ValueError, match=r"m\.csv: manifest lacks columns \['split', 'sample'\]"):
        read_manifest(bad)


def test_batches_fit_the_model(cache):
    dm = ManifestDataModule(cache, FusionModel, MODEL, batch_size=3, augment=AugmentConfig())
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (3, 3, 2, 32, 32) and batch["frames"].dtype == torch.float32
    assert batch["latency"].shape == (3, MODEL.latency_dim)
    assert batch["has_latency"].tolist() == [0.0, 0.0, 0.0]  # no SyncNet in this cache
    assert batch["label"].dtype == torch.long and len(batch["video"]) == 3
    val = next(iter(dm.val_dataloader()))
    assert set(val["video"]) <= {e.video for e in dm.entries("val")}


def test_sampler_balances_the_classes(cache):
    dm = ManifestDataModule(
        cache, FusionModel, MODEL, batch_size=64, balance="sampler", augment=AugmentConfig.none()
    )
    train = dm.entries("train")
    counts = Counter(e.label for e in train)
    assert counts[0] > counts[1]  # the fixture is unbalanced
    drawn = Counter()
    loader = dm.train_dataloader()
    for _ in range(30):
        for batch in loader:
            drawn.update(batch["label"].tolist())
    share = drawn[1] / (drawn[0] + drawn[1])
    assert 0.4 < share < 0.6, drawn


def test_loss_weights_favour_the_rare_class(cache):
    dm = ManifestDataModule(cache, FusionModel, MODEL, balance="loss")
    w = dm.class_weights()
    n_real, n_fake = (
        Counter(e.label for e in dm.entries("train"))[0],
        Counter(e.label for e in dm.entries("train"))[1],
    )
    assert w[1] > w[0] and float(w[0] * n_real + w[1] * n_fake) == pytest.approx(n_real + n_fake)
    assert ManifestDataModule(cache, FusionModel, MODEL, balance="sampler").class_weights() is None


def test_augmentation_only_on_training_batches(cache):
    dm = ManifestDataModule(cache, FusionModel, MODEL, batch_size=1, augment=AugmentConfig(flip_p=1.0))
    train_ds, val_ds = dm._dataset("train", True), dm._dataset("train", False)
    a, b = train_ds[0]["frames"], val_ds[0]["frames"]
    assert torch.equal(val_ds[0]["frames"], b)  # evaluation inputs are deterministic
    assert not torch.equal(a, b)
    assert np.isfinite(a.numpy()).all()


class ForgeEveryReal:
    """A stand-in pseudo-fake transform: every real sample comes back altered, labelled fake."""

    def __call__(self, sample, label, rng):
        if label == 0:
            return dataclasses.replace(sample, faces=255 - sample.faces), 1
        return sample, label


def test_sample_transforms_change_training_samples_and_their_labels(cache):
    dm = ManifestDataModule(
        cache, FusionModel, MODEL, batch_size=64, balance="none", sample_transforms=[ForgeEveryReal()]
    )
    assert [type(t).__name__ for t in dm.train_transform().transforms] == ["ForgeEveryReal", "ClipAugmenter"]
    train = next(iter(dm.train_dataloader()))
    assert set(train["label"].tolist()) == {1}  # the reals were forged
    real = next(i for i, e in enumerate(dm.entries("train")) if e.label == 0)
    forged, plain = dm._dataset("train", True)[real], dm._dataset("train", False)[real]
    assert forged["label"] == 1 and plain["label"] == 0
    assert not torch.equal(forged["frames"], plain["frames"])
    assert 0 in next(iter(dm.val_dataloader()))["label"].tolist()  # evaluation is never transformed


def reals_only(cache, tmp_path):
    """The fixture's manifest without its training fakes."""
    lines = cache.read_text().splitlines()
    header = lines[0].split(",")
    split, label = header.index("split"), header.index("label")
    kept = [
        line
        for line in lines[1:]
        if not (line.split(",")[split] == "train" and line.split(",")[label] == "1")
    ]
    out = tmp_path / "manifest.csv"
    out.write_text("\n".join([lines[0], *kept]) + "\n")
    for extra in cache.parent.iterdir():  # the preprocess config and samples beside it
        if extra.name != "manifest.csv" and not (tmp_path / extra.name).exists():
            (tmp_path / extra.name).symlink_to(extra)
    return out


def test_reals_alone_train_only_with_a_pseudo_fake_transform(cache, tmp_path):
    manifest = reals_only(cache, tmp_path)
    with pytest.raises(ValueError, match="needs both real and fake samples"):
        ManifestDataModule(manifest, FusionModel, MODEL).setup()
    dm = ManifestDataModule(
        manifest, FusionModel, MODEL, batch_size=4, balance="category", sample_transforms=[ForgeEveryReal()]
    )
    assert {e.label for e in dm.entries("train")} == {0}
    assert set(next(iter(dm.train_dataloader()))["label"].tolist()) == {1}


def test_category_balance_draws_each_category_equally(cache):
    dm = ManifestDataModule(
        cache, FusionModel, MODEL, batch_size=64, balance="category", augment=AugmentConfig.none()
    )
    counts = Counter(e.category for e in dm.entries("train"))
    assert counts["real"] != counts["face_blend"]  # unequal in the cache
    drawn = Counter()
    loader = dm.train_dataloader()
    for _ in range(30):
        for batch in loader:
            drawn.update(batch["category"])
    share = drawn["face_blend"] / sum(drawn.values())
    assert 0.4 < share < 0.6, drawn


def test_source_balance_shares_a_category_among_its_sources_by_square_root():
    def entry(video: str, category: str) -> ManifestEntry:
        return ManifestEntry(
            video.split("/")[-1], "train", 0, Path("x.npz"), video_id=video, category=category
        )

    entries = (
        [entry(f"real/grid/{i}.mpg", "real") for i in range(36)]
        + [entry(f"real/lrs2/{i}.mp4", "real") for i in range(4)]
        + [entry("real/one/a.mp4", "real")]
        + [entry(f"photos/{i}.jpg", "photo") for i in range(10)]
    )
    for mode, grid_share in (("category", 36 / 41), ("category_source", 6 / 9)):
        w = np.array(draw_weights(entries, mode))
        w /= w.sum()
        assert w[41:].sum() == pytest.approx(0.5)  # categories stay equal
        assert w[:36].sum() / w[:41].sum() == pytest.approx(grid_share)
        assert np.allclose(w[:36], w[0]) and np.allclose(w[36:40], w[36])  # alike within a source
    w = np.array(draw_weights(entries, "category_source"))
    assert w[36:40].sum() / w[:36].sum() == pytest.approx(2 / 6) and w[40] / w[:36].sum() == pytest.approx(
        1 / 6
    )
    with pytest.raises(ValueError, match="no weights"):
        draw_weights(entries, "loss")
