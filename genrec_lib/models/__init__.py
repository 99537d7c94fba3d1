"""Every model of the book, one file each, named after its paper.

Importing this package registers them all; ``get_model("ease")`` builds one by name.
"""

from genrec_lib.models.base import MODELS, Recommender, TrainableRecommender, UserBatch, get_model, register
from genrec_lib.models.bpr import BPRMF
from genrec_lib.models.ease import EASE
from genrec_lib.models.itemknn import ItemKNN
from genrec_lib.models.pop import Pop

__all__ = ["BPRMF", "EASE", "MODELS", "ItemKNN", "Pop", "Recommender", "TrainableRecommender", "UserBatch", "get_model", "register"]
