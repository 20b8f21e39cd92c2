"""The base classes of the frame detectors' torch networks.

What they read and return is ``models.face_frames_io`` (``FaceFramesIO``, ``PerFrameIO``,
torch-free, inherited here). A frame-level network (MesoNet, EfficientNet per frame, the
MobileNetV2 default) is a ``PerFrameDetector``: it scores each frame and averages the frame
logits inside the graph, so the ONNX export, training and the submission all see one logit per
sample as output 0, and ``frame_logits`` (B, T) keeps each frame's log-odds. A new one writes
only its ``forward_features`` (timm's split: frames → features; ``forward_head``: features → a
frame's log-odds, by default dropout → one linear unit, ``add_linear_head``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.detector import DetectorModel
from models.face_frames_io import FaceFramesIO, PerFrameIO


class FaceFramesDetector(FaceFramesIO, DetectorModel):
    """A ``FaceFramesIO`` detector's network: ``frames`` (B, T, 3, img_size, img_size) in,
    ``logits`` (B, 1) out."""

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(batch, cfg.num_frames, 3, cfg.img_size, cfg.img_size, generator=g),)

    def check_frames(self, frames: torch.Tensor) -> None:
        """A clear error for frames of the wrong shape (skipped while tracing for export)."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        cfg = self.config
        want = (cfg.num_frames, 3, cfg.img_size, cfg.img_size)
        if frames.dim() != 5 or tuple(frames.shape[1:]) != want:
            raise ValueError(f"frames must be (B, {', '.join(map(str, want))}), got {tuple(frames.shape)}")


class PerFrameDetector(PerFrameIO, FaceFramesDetector):
    """A ``PerFrameIO`` detector's network: scores every frame on its own and averages (see
    ``PerFrameIO`` for its outputs). The second output adds no parameters: weights saved before
    it existed load.

    A subclass builds its network and writes ``forward_features``; ``add_linear_head`` gives it
    the usual head (``head_drop``, ``head``), or it writes its own ``forward_head``."""

    head_drop: nn.Module
    head: nn.Module

    def add_linear_head(self, num_features: int, dropout: float) -> None:
        """Dropout → one linear unit over a frame's ``num_features`` features: its log-odds."""
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, 1)

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, img_size, img_size) frames, each on its own → (N, ...) features."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, ...) features → (N, 1) each frame's fake log-odds."""
        return self.head(self.head_drop(features))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_frames(frames)
        batch = frames.shape[0]
        per_frame = self.forward_head(self.forward_features(frames.reshape(-1, *frames.shape[2:])))
        per_frame = per_frame.reshape(batch, -1)
        # the sample's logit is the mean over its frames (the number the detectors always gave);
        # the frame logits come along so a runtime can say which moments looked fake
        return per_frame.mean(dim=1, keepdim=True), per_frame
