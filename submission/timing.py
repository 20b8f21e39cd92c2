"""Where the time went: per-stage preprocessing totals, inference, wall time, throughput."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.text import plural


@dataclass
class RunTimings:
    stage_total_s: dict[str, float] = field(default_factory=dict)  # summed over videos (worker time)
    stage_videos: dict[str, int] = field(default_factory=dict)  # videos that reported the stage
    inference_s: float = 0.0
    inference_batches: int = 0
    inference_samples: int = 0
    wall_s: float = 0.0
    videos: int = 0
    failed: int = 0

    def add_stages(self, timings: Mapping[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stage_total_s[stage] = self.stage_total_s.get(stage, 0.0) + float(seconds)
            self.stage_videos[stage] = self.stage_videos.get(stage, 0) + 1

    def add_batch(self, seconds: float, samples: int) -> None:
        self.inference_s += seconds
        self.inference_batches += 1
        self.inference_samples += samples

    @property
    def videos_per_minute(self) -> float:
        return 60.0 * self.videos / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        lines = [f"{'stage':<16}{'total s':>10}{'mean s/video':>14}"]
        for stage, total in sorted(self.stage_total_s.items(), key=lambda kv: -kv[1]):
            n = self.stage_videos[stage]
            lines.append(f"{stage:<16}{total:>10.2f}{total / n:>14.3f}")
        if self.inference_batches:
            per_batch = self.inference_samples / self.inference_batches
            lines.append(
                f"{'inference':<16}{self.inference_s:>10.2f}{self.inference_s / max(self.videos, 1):>14.3f}"
                f"   ({plural(self.inference_batches, 'batch', 'batches')}, {per_batch:.1f} samples/batch)"
            )
        lines.append(
            f"{'wall':<16}{self.wall_s:>10.2f}   {plural(self.videos, 'video')} ({self.failed} failed), "
            f"{self.videos_per_minute:.1f} videos/min"
        )
        return "\n".join(lines)
