"""Model loading and heads."""
