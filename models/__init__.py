"""Every network: its config, its module, its upstream-checkpoint converters, by name.

Importing the package registers the models below (``models.registry``); a new model is one
module here with ``@register_model`` and one line in this list.
"""

from models import (  # noqa: F401  (registration)
    av_attention,
    efficientnet_frames,
    efficientnet_lstm,
    fusion,
    mds,
    mesonet,
    mobilenet_frames,
    retinaface,
    sync_evidence,
    syncnet,
    syncnet_mouth,
    temporal_band,
)
