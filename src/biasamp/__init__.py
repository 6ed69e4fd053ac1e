"""biasamp: does a text-to-image model amplify a bias of its training data?

Every stage is a plain function over tables (Polars) plus a thin CLI command.
"""

__version__ = "0.1.0"
