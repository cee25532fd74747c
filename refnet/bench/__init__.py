"""Benchmarks against peer implementations: ``python -m refnet.bench <case> [--json]``.

Each case is a module with ``run(*, repeats=None, quick=False) -> Report``;
the CLI (:mod:`refnet.bench.__main__`) maps case names to those functions.
Timing helpers shared by the cases live in :mod:`refnet.bench.timing`.
"""
from . import bptt, ernn, fastweights, online, rbp, report, timing
from .report import BenchmarkError, Report
from .timing import GemmThroughput, Timing, gemm_throughput, time_call, time_each

__all__ = ["bptt", "ernn", "fastweights", "online", "rbp", "report", "timing", "BenchmarkError", "Report", "GemmThroughput", "Timing",
           "gemm_throughput", "time_call", "time_each"]
