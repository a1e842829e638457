"""The `irlalign` command."""
