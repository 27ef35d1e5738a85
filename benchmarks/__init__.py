"""Throughput benchmarks, one module per paper (plus the shared beam search): ``python -m repro bench NAME``.

Each module has ``main(argv)`` with a ``--quick`` path (a few seconds per measurement) that the tests
run, so no benchmark rots; the full path prints a table and writes ``results/benchmarks/NAME.json``.
The package is installed with the suite, so ``repro bench`` works from any install, editable or not.
"""
