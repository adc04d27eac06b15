"""The `passflow` command line (docs/operations.md, "Commands"): the top layer, above api/ and
worker/."""
