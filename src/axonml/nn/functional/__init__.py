"""``axonml.nn.functional``: the functional forms of the layers, activations and losses (as ``torch.nn.functional``).

Each module defines ``__all__``; this package re-exports them all.
"""

from .activation import *  # noqa: F403
from .attention import *  # noqa: F403
from .conv import *  # noqa: F403
from .linear import *  # noqa: F403
from .loss import *  # noqa: F403
from .normalization import *  # noqa: F403
from .pooling import *  # noqa: F403
from .rnn import *  # noqa: F403
from .sampling import *  # noqa: F403
from .sparse import *  # noqa: F403
