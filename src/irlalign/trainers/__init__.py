"""The methods built on `transformers.Trainer`: one file per method (its `<Method>Config`
dataclass and its trainer), `common` for what they share, `heads` for checkpoints that carry
extra heads and `run` to run one from a `RunConfig`."""
