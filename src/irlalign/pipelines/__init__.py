"""Outer loops whose phases are runs of other methods: AfD, the adversarial rounds and FRFT.

Each pipeline is a plain function `train_<name>(cfg, run_child)`; `run_child` (see
`irlalign.methods.run_child`) runs one phase and decides what it inherits from the pipeline's
config."""
