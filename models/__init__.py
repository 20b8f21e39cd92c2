"""Every network: its config, its module, its upstream-checkpoint converters, by name.

``models.registry`` registers the torch networks (``MODEL_MODULES``, imported at its first
look-up); ``models.detector_io`` gives the inputs and outputs of the detectors that score
without torch. Importing this package imports neither torch nor any network.
"""
