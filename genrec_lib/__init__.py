"""genrec_lib: the shared library behind the executable companion to
*Recommendation with Generative Models* (Deldjoo et al., 2024).

Layers, in the order data flows: :mod:`genrec_lib.assets` -> :mod:`genrec_lib.data`
-> :mod:`genrec_lib.models` -> :mod:`genrec_lib.evaluation` -> the notebooks.
"""

__version__ = "0.1.0"  # the one place it is set: pyproject.toml reads it, chapters install the tag v<version> (scripts/setup_cells.py)
