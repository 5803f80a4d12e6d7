"""L3: optimizers and learning-rate schedulers, as ``torch.optim``.

Every optimizer keeps PyTorch's hyperparameter names, defaults and update formulas
(LAMB and Lion, which PyTorch lacks, follow their papers), and its ``state_dict``
uses PyTorch's layout, so a checkpoint resumes bit for bit and moves between the two.
"""

from . import lr_scheduler
from .adam import Adam, Adamax, AdamW
from .lamb import LAMB, Lion
from .lbfgs import LBFGS
from .nadam import NAdam, RAdam
from .optimizer import Optimizer
from .rmsprop import Adadelta, Adagrad, RMSprop
from .sgd import SGD

__all__ = [
    "LAMB",
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "lr_scheduler",
]
