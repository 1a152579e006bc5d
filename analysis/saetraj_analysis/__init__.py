"""Reading and drawing saetraj sweep files (SPEC section 3): evolution plots, traced trajectory graphs
(static PNG and offline interactive HTML) and corpus summaries. `render.py` drives it all."""

from .errors import AnalysisError, SweepFormatError, SweepInputError
from .io import GraphTables, ReadoutEntry, Sweep
from .traced_graph import TracedGraph, build_traced_graph

__all__ = ["AnalysisError", "SweepFormatError", "SweepInputError", "GraphTables", "ReadoutEntry", "Sweep",
           "TracedGraph", "build_traced_graph"]
