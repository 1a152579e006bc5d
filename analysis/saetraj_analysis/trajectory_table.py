"""Reading the tidy trajectory table (`<out>_graphs/T<T>/trajectories.csv`, written by the graph step; its
columns are documented in include/saetraj/graph/trajectory_table.h and the README) into pandas or polars
when installed, else into a list of dicts from the csv module."""

import csv
import importlib
import importlib.util
import math

from .errors import SweepFormatError, SweepInputError

# The fixed columns, in order, and their types; the columns after them (heads_*, order_*) are numbers with
# empty cells for missing values.
COLUMNS = [("prompt", int), ("length", int), ("layer", int), ("source_token", int), ("distance_back", int),
           ("feature", int), ("final_position", int), ("traced", int), ("source_text", str), ("query_text", str)]
TEXT_COLUMNS = [name for name, kind in COLUMNS if kind is str]


def _header(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), None)
    except OSError as err:
        raise SweepInputError(f"{path}: cannot read the trajectory table: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise SweepFormatError(f"{path}: the trajectory table is not UTF-8 ({err.reason})") from err
    fixed = [name for name, _ in COLUMNS]
    if header is None or header[:len(fixed)] != fixed:
        raise SweepFormatError(f"{path}: not a saetraj trajectory table (its header should start with "
                               f"{','.join(fixed)})")
    extra = header[len(fixed):]
    if len(set(header)) != len(header):
        raise SweepFormatError(f"{path}: the trajectory table repeats a column name")
    return extra


def _cell(path, line, name, kind, text):
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return math.nan if text == "" else float(text)
        return text
    except ValueError as err:
        raise SweepFormatError(f"{path}: line {line}: column {name}: {text!r} is not a number") from err


def _read_csv(path, extra):
    kinds = COLUMNS + [(name, float) for name in extra]
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for record in reader:
            if len(record) != len(kinds):
                raise SweepFormatError(f"{path}: line {reader.line_num}: {len(record)} cells, expected {len(kinds)}")
            rows.append({name: _cell(path, reader.line_num, name, kind, text)
                         for (name, kind), text in zip(kinds, record)})
    return rows


def read_trajectory_table(path, backend="auto"):
    """The table at `path` as a pandas DataFrame, a polars DataFrame or a list of dicts (backend "pandas",
    "polars", "csv", or "auto": pandas, else polars, else csv). Integer columns are int64, text columns
    strings, the extra columns float64 with NaN (pandas, csv) or null (polars) for empty cells."""
    if backend not in ("auto", "pandas", "polars", "csv"):
        raise SweepInputError(f"unknown backend {backend!r}: give auto, pandas, polars or csv")
    extra = _header(path)
    if backend == "auto":
        backend = next((name for name in ("pandas", "polars") if importlib.util.find_spec(name)), "csv")
    if backend == "csv":
        return _read_csv(path, extra)
    try:
        module = importlib.import_module(backend)
    except ImportError as err:
        raise SweepInputError(f"backend {backend} is not installed") from err
    ints = [name for name, kind in COLUMNS if kind is int]
    errors = (ValueError, TypeError) + ((module.exceptions.PolarsError,) if backend == "polars" else ())
    try:
        if backend == "pandas":
            frame = module.read_csv(path, encoding="utf-8", keep_default_na=False, na_values={c: [""] for c in extra},
                                    dtype={**{c: "int64" for c in ints}, **{c: str for c in TEXT_COLUMNS},
                                           **{c: "float64" for c in extra}})
        else:
            frame = module.read_csv(path, encoding="utf8",
                                    schema_overrides={**{c: module.Int64 for c in ints},
                                                      **{c: module.String for c in TEXT_COLUMNS},
                                                      **{c: module.Float64 for c in extra}})
    except errors as err:
        raise SweepFormatError(f"{path}: the trajectory table does not parse: {err}") from err
    if list(frame.columns) != [name for name, _ in COLUMNS] + extra:
        raise SweepFormatError(f"{path}: the trajectory table's columns came back as {list(frame.columns)}")
    return frame
