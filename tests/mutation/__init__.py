"""A mutation test of the verification matrix: does ``python -m gradcheck`` catch small slips?

Not part of the default pytest run (it runs the matrix once per slip, minutes in all).  Run it
from the repository root, at low priority::

    nice -n 19 python -m tests.mutation            # every slip
    nice -n 19 python -m tests.mutation --only uoro --json results.jsonl

Each slip of :data:`tests.mutation.slips.SLIPS` is applied, alone, to a temporary copy of
``refnet/`` and ``gradcheck/`` (never to the working tree), and the matrix of that copy runs in
a fresh interpreter.  The rows that exercise the mutated file run first (chosen from its path,
:data:`tests.mutation.slips.PRIORITY`), then every other row, stopping at the first row that
does not pass: a slip is *killed* when some row of the whole matrix fails on it (or the matrix
crashes or hangs), *survived* when every row passes.  The unmutated copy must pass every row
first, or nothing is scored.
"""
