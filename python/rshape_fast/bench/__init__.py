"""`rshape bench`: the benchmarks, installed with the package so they run wherever it does.

Each benchmark measures rshape_fast against the obvious alternatives in the same run (numpy,
torch, the naive loop of the authors' semantics, the hardware's floors) and prints ratios;
`--json OUT` saves every figure with the machine it was measured on. Nothing here asserts
a timing. Benchmarks run alone: a second torch process on the same cores slows both by 10×
or more, so each prints the load it started under.
"""
