"""File-to-file workflows behind the command line: simulate, solve, evaluate.

:func:`invdiff.pipeline.simulate.simulate_files`, :func:`invdiff.pipeline.run.run_solve` and
:func:`invdiff.pipeline.evaluate.evaluate_files` are the library calls the ``invdiff`` commands
make; :mod:`invdiff.pipeline.problem` turns input files into per-slice problems and
:mod:`invdiff.pipeline.solve` solves them batch by batch.
"""
