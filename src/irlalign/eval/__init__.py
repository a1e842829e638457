"""Evaluation utilities: diversity, BLEU and correlation metrics."""
