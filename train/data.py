"""The preprocessing cache as Lightning data: manifest rows → samples → model inputs.

``read_manifest`` parses ``manifest.csv`` (written by ``python -m preprocess``); the data
module serves its ``train``/``val``/``test`` splits to any registered detector. Every sample
goes through the detector's own ``sample_inputs`` (``models.detector``), the function
inference uses; training samples first go through the run's sample transforms
(``train.sample_transforms``: e.g. pseudo-fakes, then the clip augmentation of
``train.augment``), which may change the label a sample is trained with.

Class balance: ``balance="sampler"`` draws training samples with a ``WeightedRandomSampler``
(each class equally likely per draw); ``"loss"`` keeps the natural order and exposes class
weights for the loss; ``"category"`` makes each manifest ``category`` equally likely per draw
(training on reals alone with pseudo-fakes: video frames and photos in equal shares, however
many of each the cache holds); ``"category_source"`` also shares a category's draws among its
source folders ∝ √(their size) (``draw_weights``); ``"none"`` does neither.

Several processes (DDP): Lightning puts each rank on a disjoint shard of every epoch. A
shuffle or a plain split becomes a ``DistributedSampler``; the balanced samplers are wrapped
in ``DistributedSamplerWrapper``, which has every rank draw the whole epoch and keep its own
positions of it — so their generator is seeded alike on every rank (``seed``), and each rank
reads ``epoch_size / world_size`` samples per epoch. (A ``RandomSampler`` would be replaced by a
plain ``DistributedSampler``, dropping ``epoch_size``: uniform draws use a weighted sampler.)
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path, PurePosixPath
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample
from models.detector import DetectorModel
from preprocess.cache_layout import read_settings
from preprocess.datasets import parse_segment
from preprocess.sample_file import load_sample
from train.augment import AugmentConfig, ClipAugmenter
from train.sample_transforms import ChainedTransforms, SampleTransform

REQUIRED_COLUMNS = ("filename", "split", "label", "sample")
BALANCE_MODES = ("sampler", "loss", "category", "category_source", "none")


@dataclass(frozen=True)
class ManifestEntry:
    filename: str
    split: str
    label: int  # 1 fake, 0 real, -1 unknown
    sample: Path  # absolute path of the .npz
    track_id: int = 0
    video_id: str = ""
    group: str = ""
    original: str = ""
    category: str = ""  # manipulation method; "real"/"fake" when the dataset gives none
    # A partially faked video's segment (seconds), from the manifest's fake_start,fake_end
    # (absent in manifests written before they existed); None: the whole video is one label.
    fake_segment: tuple[float, float] | None = None

    @property
    def video(self) -> str:
        return self.video_id or self.filename


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Rows of a preprocessing manifest; sample paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run `python -m preprocess ... --out CACHE`)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: manifest lacks columns {missing}")
        entries = []
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["label"])
            except ValueError as err:
                raise ValueError(f"{path}:{line}: label {row['label']!r} is not -1, 0 or 1") from err
            sample = Path(row["sample"])
            category = (row.get("category") or "").strip() or {1: "fake", 0: "real"}.get(label, "unknown")
            entries.append(
                ManifestEntry(
                    filename=row["filename"],
                    split=(row["split"] or "").strip(),
                    label=label,
                    sample=sample if sample.is_absolute() else path.parent / sample,
                    track_id=int(row.get("track_id") or 0),
                    video_id=row.get("video_id") or row["filename"],
                    group=row.get("group") or "",
                    original=row.get("original") or "",
                    category=category,
                    fake_segment=parse_segment(row.get("fake_start"), row.get("fake_end"), f"{path}:{line}"),
                )
            )
    return entries


def cache_preprocess_config(manifest: str | Path) -> PreprocessConfig | None:
    """The PreprocessConfig the cache beside ``manifest`` was made with (None if unrecorded)."""
    return read_settings(Path(manifest).parent)


class SampleDataset(Dataset):
    """Manifest entries → dicts of ``detector``'s inputs (by their ``input_names``) plus
    ``label``, ``video``, ``video_index``, ``category`` and ``index`` (the entry's position:
    under DDP it tells which samples a rank read, and which a padded shard repeats). ``transform`` (training only) changes
    each sample and its label before the inputs are made. Loaded samples are kept on the object
    when ``keep_in_memory`` (small datasets: decompressing a .npz costs more than a training step)."""

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        detector: type[DetectorModel],
        model_config: Any,
        transform: SampleTransform | None = None,
        keep_in_memory: bool = True,
    ):
        self.entries = list(entries)
        self.detector = detector
        self.model_config = model_config
        self.transform = transform
        self.keep_in_memory = keep_in_memory
        self._samples: dict[int, Sample] = {}
        # integer video ids: tensors, unlike names, can be gathered across DDP ranks
        videos = sorted({e.video for e in self.entries})
        self._video_index = {v: i for i, v in enumerate(videos)}

    def __len__(self) -> int:
        return len(self.entries)

    def sample(self, index: int) -> Sample:
        if index in self._samples:
            return self._samples[index]
        sample = load_sample(self.entries[index].sample)
        if self.keep_in_memory:
            self._samples[index] = sample
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        sample, label = self.sample(index), entry.label
        if self.transform is not None:
            # torch's RNG is seeded per worker by Lightning: runs repeat under a fixed seed
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            sample, label = self.transform(sample, label, np.random.default_rng(seed))
        inputs = self.detector.sample_inputs(sample, self.model_config)
        return {
            **{name: torch.from_numpy(np.asarray(inputs[name])) for name in self.detector.input_names},
            "label": torch.tensor(label, dtype=torch.long),
            "video": entry.video,
            "video_index": torch.tensor(self._video_index[entry.video], dtype=torch.long),
            "category": entry.category,
            "index": torch.tensor(index, dtype=torch.long),
        }


def collate_batch(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def class_counts(entries: Sequence[ManifestEntry]) -> tuple[int, int]:
    labels = [e.label for e in entries]
    return labels.count(0), labels.count(1)


def entry_source(entry: ManifestEntry) -> str:
    """The collection a sample comes from: its video's folder (``real/grid_s1``), else itself."""
    parent = PurePosixPath(entry.video).parent
    return str(parent) if str(parent) != "." else entry.video


def draw_weights(entries: Sequence[ManifestEntry], balance: str) -> list[float]:
    """Per-entry draw weights: each label (``sampler``) or each ``category`` (``category``) equally
    likely; ``category_source`` also splits a category's share among its source folders in
    proportion to the square root of their sizes, so one large corpus (GRID: 40 of 55 real
    clips) does not make up most of what "real" looks like, nor does a one-clip source get a
    large corpus's share."""
    if balance not in ("sampler", "category", "category_source"):
        raise ValueError(f"draw_weights: no weights for balance {balance!r}")
    key = attrgetter("label" if balance == "sampler" else "category")
    if balance != "category_source":
        counts = Counter(map(key, entries))
        return [1.0 / counts[key(e)] for e in entries]
    groups = [(key(e), entry_source(e)) for e in entries]
    sizes = Counter(groups)
    roots: Counter[Any] = Counter()
    for (k, _), n in sizes.items():
        roots[k] += math.sqrt(n)
    return [math.sqrt(sizes[g]) / roots[g[0]] / sizes[g] for g in groups]


class ManifestDataModule(L.LightningDataModule):
    """A cache's splits as batches of ``detector``'s inputs. Training samples go through
    ``sample_transforms`` and then the clip augmentation (``augment``; ``audio_augment`` also
    alters the audio and mel, which only detectors that read them notice)."""

    def __init__(
        self,
        manifest: str | Path,
        detector: type[DetectorModel],
        model_config: Any,
        batch_size: int = 8,
        num_workers: int = 0,
        balance: str = "sampler",
        augment: AugmentConfig | None = None,
        audio_augment: bool = False,
        keep_in_memory: bool = True,
        seed: int = 0,
        epoch_size: int | None = None,
        sample_transforms: Sequence[SampleTransform] = (),
    ):
        super().__init__()
        if balance not in BALANCE_MODES:
            raise ValueError(f"balance must be one of {BALANCE_MODES}, got {balance!r}")
        self.manifest = Path(manifest)
        self.detector = detector
        self.model_config = model_config
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.balance = balance
        self.augment = augment if augment is not None else AugmentConfig()
        self.audio_augment = audio_augment
        self.sample_transforms = tuple(sample_transforms)
        self.keep_in_memory = keep_in_memory
        self.seed = seed
        self.epoch_size = epoch_size  # training samples drawn per epoch (default: the split's size)
        self.splits: dict[str, list[ManifestEntry]] = {}
        self.preprocess_config = cache_preprocess_config(self.manifest)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        labelled = [e for e in read_manifest(self.manifest) if e.label in (0, 1)]
        for entry in labelled:
            self.splits.setdefault(entry.split or "train", []).append(entry)
        if not self.splits.get("train"):
            raise ValueError(f"{self.manifest}: no labelled samples in the 'train' split")
        n_real, n_fake = class_counts(self.splits["train"])
        # reals alone are enough when a sample transform forges fakes from them
        if n_real == 0 or (n_fake == 0 and not self.sample_transforms):
            raise ValueError(
                f"{self.manifest}: the training split needs both real and fake samples "
                "(or real samples and a pseudo-fake transform)"
            )

    def entries(self, split: str) -> list[ManifestEntry]:
        self.setup()
        return self.splits.get(split, [])

    @property
    def val_split(self) -> str:
        """Where model selection looks: ``val``, else (stated in the logs) ``train``."""
        return "val" if self.entries("val") else "train"

    def class_weights(self) -> torch.Tensor | None:
        """Inverse-frequency loss weights (mean 1) when ``balance == "loss"``."""
        if self.balance != "loss":
            return None
        counts = torch.tensor(class_counts(self.entries("train")), dtype=torch.float32)
        weights = counts.sum() / (2 * counts)
        return weights

    def train_transform(self) -> ChainedTransforms:
        """The run's sample transforms, then the clip augmentation."""
        pcfg = self.preprocess_config or PreprocessConfig()
        augmenter = ClipAugmenter(self.augment, self.audio_augment, pcfg.audio, pcfg.media.sample_rate)
        return ChainedTransforms([*self.sample_transforms, augmenter])

    def _dataset(self, split: str, train: bool) -> SampleDataset:
        transform = self.train_transform() if train else None
        return SampleDataset(
            self.entries(split), self.detector, self.model_config, transform, self.keep_in_memory
        )

    def _loader(self, dataset: SampleDataset, shuffle: bool = False, sampler=None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Balanced draws with replacement (``sampler``), or a shuffle; ``epoch_size`` makes
        epochs longer than the split (small sets: fewer validation passes per step)."""
        dataset = self._dataset("train", train=True)
        generator = torch.Generator().manual_seed(self.seed)
        size = self.epoch_size or len(dataset)
        if self.balance in ("sampler", "category", "category_source"):
            weights = draw_weights(dataset.entries, self.balance)
            return self._loader(
                dataset, sampler=WeightedRandomSampler(weights, size, replacement=True, generator=generator)
            )
        if self.epoch_size:
            # uniform draws with replacement; not a RandomSampler, which DDP would swap for a plain
            # DistributedSampler over the split (losing epoch_size)
            uniform = [1.0] * len(dataset)
            return self._loader(
                dataset, sampler=WeightedRandomSampler(uniform, size, replacement=True, generator=generator)
            )
        return self._loader(dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.val_split, train=False))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test", train=False))

    def split_dataloader(self, split: str) -> DataLoader:
        return self._loader(self._dataset(split, train=False))
