"""Puts analysis/ (the saetraj_analysis package) and this folder (make_sweep) on the import path."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ANALYSIS = os.path.normpath(os.path.join(HERE, "..", "..", "analysis"))
sys.path.insert(0, ANALYSIS)
sys.path.insert(0, HERE)
