"""Where ``--explain`` pages go: each video's JSON and HTML as its score arrives
(``ExplainWriter`` is the batch runner's ``on_detail``), then the index sorted by score."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from core.calibration import IDENTITY, Calibration
from core.files import atomic_write
from core.preprocess_config import PreprocessConfig
from submission.batch import VideoDetail
from submission.explain import ModelInfo, explain_video
from submission.explain_html import INDEX_HREF, render_index, render_video
from submission.scoring import VideoScore


def page_names(filename: str) -> tuple[str, str]:
    """(JSON, HTML) file names of a video's explanation."""
    return f"{filename}.json", f"{filename}.html"


class ExplainWriter:
    """Writes each video's JSON and page as its score arrives, then the index."""

    def __init__(
        self,
        folder: str | Path,
        models: Sequence[ModelInfo],
        aggregation: str,
        preprocess: PreprocessConfig,
        calibration: Calibration = IDENTITY,
    ):
        self.folder = Path(folder)
        self.calibration = calibration  # an ensemble's mapping of its combined log-odds
        self.models = tuple(models)
        self.aggregation = aggregation
        self.preprocess = preprocess

    def __call__(self, detail: VideoDetail) -> None:
        explanation = explain_video(detail, self.models, self.aggregation, self.preprocess, self.calibration)
        json_name, html_name = page_names(explanation.filename)
        atomic_write(
            self.folder / json_name, json.dumps(explanation.to_json(), indent=1, allow_nan=False) + "\n"
        )
        atomic_write(self.folder / html_name, render_video(explanation))

    def has_page(self, score: VideoScore) -> bool:
        """Whether an earlier run left this video's explanation, for this very score (resume)."""
        json_name, html_name = page_names(score.filename)
        try:
            data = json.loads((self.folder / json_name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (
            (self.folder / html_name).is_file()
            and data.get("probability") == score.probability
            and (score.ok or data.get("error") == score.reason)
        )

    def write_index(self, scores: Sequence[VideoScore]) -> Path:
        path = self.folder / INDEX_HREF
        atomic_write(path, render_index([(s, page_names(s.filename)[1]) for s in scores], self.models))
        return path
