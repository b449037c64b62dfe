"""tokenmill: Spark data preparation and an FSDP trainer for language models."""

from tokenmill import streaming_recipes

__version__ = "0.1.0"

# Every process that runs tokenmill code (a training rank, a Spark Python
# worker) imports this package first: streaming's unused dataset recipes,
# and the transformers and scikit-learn imports they bring, wait until used.
streaming_recipes.defer()
