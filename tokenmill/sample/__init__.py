"""The bundled sample corpus (``tokenmill sample OUT_DIR``); see ``corpus``.

Re-exported here so ``from tokenmill.sample import write_sample`` keeps working.
"""

from tokenmill.sample.corpus import (  # noqa: F401 - the package's public names
    DEFAULT_N_DOCS,
    MIN_N_DOCS,
    input_paths,
    jaccard,
    word_shingles,
    write_sample,
)
