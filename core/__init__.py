"""What every stage shares: the stage-boundary dataclasses, the preprocessing configuration,
and plumbing (atomic files, the isolated worker pool, thread limits, devices, runtimes)."""
