"""Talking-face corpora laid out by speaker, and a train/held-out split that keeps speakers apart.

The public lip-reading and speaker corpora all store one folder per speaker (or programme)
under a root, with the clips one or two levels below it:

    LRS2        main/5535415699068794046/00001.mp4          root = main
    LRS3        trainval/0af00UcTOSc/50001.mp4              root = trainval
    VoxCeleb2   dev/mp4/id00012/21Uxsk56VDQ/00001.mp4       root = dev/mp4

The group of a clip is the first folder under the root; a clip lying in the root itself is a
group of its own (a flat folder of unrelated clips, the form ``sync-pretrain`` always read). A
held-out figure on clips of speakers the network trained on says little about other people,
so whole groups are held out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

from preprocess.datasets import videos_under


@dataclass(frozen=True)
class SpeakerVideo:
    path: Path
    name: str  # relative to the root, posix: unique where clip file names repeat (00001.mp4)
    group: str  # speaker / programme: the first folder under the root (or the clip's own name)


class Grouped(Protocol):
    @property
    def group(self) -> str: ...


G = TypeVar("G", bound=Grouped)


@dataclass(frozen=True)
class SpeakerSplit(Generic[G]):
    train: list[G]
    held_out: list[G]  # whole groups, in the order they were drawn

    @property
    def train_groups(self) -> set[str]:
        return {v.group for v in self.train}

    @property
    def held_out_groups(self) -> set[str]:
        return {v.group for v in self.held_out}


def speaker_videos(root: str | Path) -> list[SpeakerVideo]:
    """Every video below ``root`` (recursively), grouped by the first folder under it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of videos")
    out = []
    for path in videos_under(root):
        rel = path.relative_to(root)
        out.append(SpeakerVideo(path, rel.as_posix(), rel.parts[0] if len(rel.parts) > 1 else rel.as_posix()))
    if not out:
        raise ValueError(
            f"{root}: no videos found (expected SPEAKER/CLIP.mp4 or SPEAKER/VIDEO/CLIP.mp4 below it, "
            "as LRS2/LRS3/VoxCeleb2 store them, or video files in the folder itself)"
        )
    return out


def videos_as_given(paths: Sequence[str | Path]) -> list[SpeakerVideo]:
    """A list of video files, named by file name; each its own group (nothing says who speaks
    in them)."""
    return [SpeakerVideo(Path(p), Path(p).name, Path(p).as_posix()) for p in paths]


def split_by_speaker(videos: Sequence[G], n_held_out: int, seed: int) -> SpeakerSplit[G]:
    """Hold out whole groups, drawn in a seeded order, until they hold ``n_held_out`` clips or
    more; at least one group always trains (a single group: nothing is held out). ``videos``:
    anything with a ``group`` (``SpeakerVideo``, prepared clips)."""
    groups: dict[str, list[G]] = {}
    for v in videos:
        groups.setdefault(v.group, []).append(v)
    names = sorted(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    held: list[str] = []
    count = 0
    for name in order[:-1]:  # the last group of the order always trains
        if count >= n_held_out:
            break
        held.append(name)
        count += len(groups[name])
    held_set = set(held)
    return SpeakerSplit(
        train=[v for v in videos if v.group not in held_set],
        held_out=[v for name in held for v in groups[name]],
    )
