"""Synthetic talking-face videos with ground truth, for the demo and the tests.

``videos`` makes real and fake clips (``python -m train synth``) from drawn faces (``face``),
speech-like audio (``audio``) and moving scenes (``scene``); ``samples`` turns them straight
into ``Sample``s; ``detection_check`` measures the project's face detector on them.
"""
