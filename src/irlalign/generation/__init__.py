"""Sampling-side helpers: best-of-N selection and moving token rewards between tokenizers."""
