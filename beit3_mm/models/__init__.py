from .backbones import *  # noqa: F401,F403
from .layers import LN2d  # noqa: F401
from .necks import *  # noqa: F401,F403
from .segmentors import *  # noqa: F401,F403
from .multimodal import *  # noqa: F401,F403
from .selfsup import *  # noqa: F401,F403
