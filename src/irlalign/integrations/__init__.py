"""Adapters that put irlalign reward models into other libraries' trainers (TRL)."""
