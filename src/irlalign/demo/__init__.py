"""The quickstart: the synthetic benchmark, every row the library can train on it from the
shipped presets (`plan`), trained side by side (`schedule`), and one table (`render`)."""
