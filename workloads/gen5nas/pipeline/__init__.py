"""The local end-to-end pipeline (``gen5nas run``): train -> search -> export on one machine."""
