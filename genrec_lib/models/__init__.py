"""Every model of the book, one file each, named after its paper.

Importing this package imports every module in it, which registers each model with
:func:`~genrec_lib.models.base.register`; ``get_model("ease")`` then builds one by name.
"""

import importlib
import pkgutil

from genrec_lib.models.base import MODELS, Recommender, TrainableRecommender, UserBatch, get_model, register

for _module in pkgutil.walk_packages(__path__, prefix=__name__ + "."):
    importlib.import_module(_module.name)

__all__ = ["MODELS", "Recommender", "TrainableRecommender", "UserBatch", "get_model", "register"]
