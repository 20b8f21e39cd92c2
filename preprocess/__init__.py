"""Preprocessing: any video file → face tracks, audio features, SyncNet latency → Samples."""
