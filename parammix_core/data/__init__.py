"""Per-domain corpora: built-in or user text -> cleaned -> tokenizer -> packed token blocks."""

from parammix_core.data.clean import clean_documents
from parammix_core.data.errors import DataError
from parammix_core.data.loaders import load_texts
from parammix_core.data.prepare import (
    PreparedData,
    load_prepared,
    natural_weights,
    prepare_corpora,
)
from parammix_core.data.sources import builtin_texts
from parammix_core.data.tokenizer import EOT, load_tokenizer, train_tokenizer

__all__ = [
    "EOT",
    "DataError",
    "PreparedData",
    "builtin_texts",
    "clean_documents",
    "load_prepared",
    "load_texts",
    "load_tokenizer",
    "natural_weights",
    "prepare_corpora",
    "train_tokenizer",
]
