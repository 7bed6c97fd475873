"""The `cotenant` command line."""
