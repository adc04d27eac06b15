"""The `passflow` command line (CONTRACT.md, Commands): the top layer, above api/ and worker/."""
