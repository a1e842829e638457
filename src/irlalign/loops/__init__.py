"""The explicit online loops on accelerate: RLOO and PPO with dense per-token rewards, their
shared setup, per-step bookkeeping and checkpoints that resume exactly."""
