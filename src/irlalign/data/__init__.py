"""The data layer: formats + validation, loading, tokenisation with completion masks, collators."""

from irlalign.data.collate import CompletionCollator, PreferenceCollator, concat_preference_batch
from irlalign.data.formats import (
    DataFormat,
    DataValidationError,
    DataWarning,
    detect_format,
    validate_rows,
)
from irlalign.data.loading import DataFileError, load_rows
from irlalign.data.tokenize import (
    TokenizationError,
    Truncation,
    TruncationStats,
    tokenize_dataset,
    tokenize_rows,
)

__all__ = [
    "CompletionCollator",
    "DataFileError",
    "DataFormat",
    "DataValidationError",
    "DataWarning",
    "PreferenceCollator",
    "TokenizationError",
    "Truncation",
    "TruncationStats",
    "concat_preference_batch",
    "detect_format",
    "load_rows",
    "tokenize_dataset",
    "tokenize_rows",
    "validate_rows",
]
