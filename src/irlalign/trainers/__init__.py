"""Trainers: one file per method, each a `<Method>Config` dataclass plus a trainer."""
