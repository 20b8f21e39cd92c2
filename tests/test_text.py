"""core.text: counts in messages agree with their nouns."""

from __future__ import annotations

from core.text import plural


def test_counts_in_messages_agree_with_their_nouns():
    assert plural(1, "video") == "1 video" and plural(0, "row") == "0 rows" and plural(2, "row") == "2 rows"
    assert plural(1, "batch", "batches") == "1 batch" and plural(3, "batch", "batches") == "3 batches"
    assert plural(1200, "step") == "1,200 steps"
