"""Benchmarks: they print speed and memory figures (``make bench``, ``make bench-gpu``, ``make
soak``). The top layer: they may import every package, and nothing else imports them, so none of
this ships in the submission image."""
