"""Reading a saetraj sweep file (SPEC section 3, format versions 1 to 3; 3 adds /mlp, the MLP path).

`Sweep` opens the file, checks the format attributes and the shape of every dataset once, and then
answers the questions the plots ask: a prompt's tokens, the evolution table of (prompt, layer, query),
the layer readout, the graph tables of one prompt and feature explanations. Layers are always named by
their model layer number (the values of the root attribute `layers`), never by their axis index.
"""

import os
import re
from dataclasses import dataclass

import h5py
import numpy as np

from .errors import SweepFormatError, SweepInputError

FORMAT_NAME = "saetraj-sweep"
FORMAT_VERSION = 3          # newest read: 2 (v1 + optional /heads, /order), 3 with /mlp
OLDEST_FORMAT_VERSION = 1  # still read
MLP_FORMAT_VERSION = 3     # the oldest version that may hold /mlp
MLP_TERMS = ("feature", "bias", "skip", "error")  # /mlp/slots column 1 (NOTE The MLP path, sweep_file.h)
READOUT_TOP = 5

TRAJECTORY_FIELDS = ("prompt", "length", "layer", "source_token", "feature", "final_position")
EDGE_FIELDS = ("prompt", "length", "from_token", "from_layer", "to_token", "to_layer",
               "num_trajectories", "best_final_position")
TRACED_EDGE_FIELDS = ("prompt", "from_token", "from_layer", "to_token", "to_layer",
                      "num_trajectories", "best_final_position")


def _text(value):
    """h5py hands variable-length UTF-8 strings back as str or bytes depending on version and API."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _texts(dataset):
    return [_text(v) for v in np.asarray(dataset[()]).ravel()]


def rows_before_query(q):
    """Rows of queries 1..q-1 inside a prompt: query q' has q'+2 steps, so sum_{q'<q} (q'+2)."""
    return (q - 1) * (q + 4) // 2


def rows_of_prompt(n_tokens):
    """A prompt of N tokens has queries 1..N-1: (N-1)(N+4)/2 rows."""
    return rows_before_query(n_tokens)


@dataclass(frozen=True)
class GraphTables:
    """One graphs group: the T it was built with and its three tables (numpy structured arrays)."""
    group: str
    top_t: int
    trajectories: np.ndarray
    edges: np.ndarray
    traced_edges: np.ndarray
    # /graphs/trajectory_heads of a sweep made with --heads: float32 [rows of trajectories, 3 + H] with
    # columns jump, bias, unassigned, then one signed part per head (NaN where none was recorded); else None.
    trajectory_heads: np.ndarray = None
    # /graphs/trajectory_order of a sweep made with --orders: int32 [rows of trajectories, 4] with columns
    # loo_source, shapley_source, loo_agrees, shapley_agrees (-1 where none was recorded); else None.
    trajectory_order: np.ndarray = None
    # /graphs/trajectory_order_values (files whose graphs were built since the order views reached the
    # graphs): float32 [rows of trajectories, 6] with columns activation, without_source, shapley_source,
    # shapley_source_se, shapley_largest, shapley_largest_se (NaN where none was recorded); else None.
    trajectory_order_values: np.ndarray = None

    def for_prompt(self, prompt):
        """The tables restricted to one prompt's rows."""
        mine = self.trajectories["prompt"] == prompt
        return GraphTables(self.group, self.top_t, self.trajectories[mine],
                           self.edges[self.edges["prompt"] == prompt],
                           self.traced_edges[self.traced_edges["prompt"] == prompt],
                           None if self.trajectory_heads is None else self.trajectory_heads[mine],
                           None if self.trajectory_order is None else self.trajectory_order[mine],
                           None if self.trajectory_order_values is None else self.trajectory_order_values[mine])


@dataclass(frozen=True)
class MlpNewcomer:
    """A feature of the layer's residual SAE that entered the top-k list while the MLP's terms were added to
    resid_mid (sweep --mlp-transcoder; NOTE The MLP path in include/saetraj/output/sweep_file.h)."""
    feature: int                  # residual SAE feature
    final_position: int           # its place in the top-k list of resid_post (0 = largest)
    activation: float             # its activation there
    step: int                     # the MLP step that brought it in (1 .. steps - 1)
    steps: int                    # rows of that MLP path: resid_mid ... resid_post
    term: str                     # the kind of term added at that step: feature, bias, skip or error
    transcoder_feature: int       # the transcoder feature added at that step (None unless term is feature)
    transcoder_activation: float  # that transcoder feature's activation (None unless term is feature)


@dataclass(frozen=True)
class ReadoutEntry:
    token_id: int
    text: str
    prob: float


def _open_failure(err):
    """HDF5's reason in a few words: not an HDF5 file, truncated (with the sizes), or h5py's message."""
    text = str(err)
    truncated = re.search(r"truncated file: eof = (\d+), sblock->base_addr = \d+, stored_eof = (\d+)", text)
    if truncated:
        return f"truncated: {truncated.group(1)} of {truncated.group(2)} bytes"
    if "file signature not found" in text:
        return "not an HDF5 file"
    return text


class Sweep:
    """An open, validated sweep file. Use as a context manager or call close()."""

    def __init__(self, path):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise SweepFormatError(f"{self.path}: no such file; check the path")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise SweepFormatError(f"{self.path}: cannot open as an HDF5 file ({_open_failure(err)}); "
                                   f"give a sweep file written by saetraj sweep") from err
        try:
            self._validate()
        except Exception:
            self._file.close()
            raise
        self._explanations = None
        self._mlp_explanations = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._file.close()

    # ----- validation -------------------------------------------------------------------------------

    def _fail(self, what):
        raise SweepFormatError(f"{self.path}: {what}")

    def _attr(self, obj, name, where):
        if name not in obj.attrs:
            self._fail(f"missing attribute '{name}' on {where}")
        return obj.attrs[name]

    def _dataset(self, name, kind, shape):
        """Checks that /name exists, has dtype kind ('i', 'u', 'f' or 'S' for strings) and shape
        (None entries match any size); returns the h5py dataset."""
        if name not in self._file or not isinstance(self._file[name], h5py.Dataset):
            self._fail(f"missing dataset /{name}")
        ds = self._file[name]
        if kind == "S":
            if h5py.check_string_dtype(ds.dtype) is None:
                self._fail(f"/{name} has dtype {ds.dtype}; expected a string dataset")
        elif ds.dtype.kind not in kind:
            self._fail(f"/{name} has dtype {ds.dtype}; expected kind '{kind}'")
        if len(ds.shape) != len(shape) or any(e is not None and e != f for e, f in zip(shape, ds.shape)):
            expected = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ")"
            self._fail(f"/{name} has shape {ds.shape}; expected {expected}")
        return ds

    def _table(self, name, fields):
        if name not in self._file or not isinstance(self._file[name], h5py.Dataset):
            self._fail(f"missing dataset /{name}")
        ds = self._file[name]
        names = ds.dtype.names or ()
        missing = [f for f in fields if f not in names]
        if ds.ndim != 1 or missing:
            self._fail(f"/{name} should be a 1-D table with fields {', '.join(fields)}; "
                       f"found shape {ds.shape} with fields {', '.join(names) or 'none'}")
        return ds

    def _validate(self):
        root = self._file
        if "format" not in root.attrs:
            # As `saetraj graph` says it: any HDF5 file opens, only a sweep has this attribute.
            self._fail(f"an HDF5 file but not a saetraj sweep file (no root attribute format = "
                       f"\"{FORMAT_NAME}\"); give a sweep file written by saetraj sweep")
        fmt = _text(self._attr(root, "format", "/"))
        if fmt != FORMAT_NAME:
            self._fail(f"attribute 'format' is '{fmt}'; expected '{FORMAT_NAME}'")
        version = int(self._attr(root, "format_version", "/"))
        if not OLDEST_FORMAT_VERSION <= version <= FORMAT_VERSION:
            self._fail(f"attribute 'format_version' is {version}; expected {OLDEST_FORMAT_VERSION} to "
                       f"{FORMAT_VERSION}")
        self.format_version = version
        self.layers = np.asarray(self._attr(root, "layers", "/"), dtype=np.int64).ravel()
        self.k = int(self._attr(root, "k", "/"))
        self.complete = int(root.attrs.get("complete", 0))
        self.model = _text(root.attrs.get("model", ""))
        n_layers = len(self.layers)

        text = self._dataset("prompts/text", "S", (None,))
        n_prompts = text.shape[0]
        self.n_prompts = n_prompts
        self._prompt_text = _texts(text)
        self._n_tokens = self._dataset("prompts/n_tokens", "i", (n_prompts,))[()].astype(np.int64)
        self._token_offset = self._dataset("prompts/token_offset", "i", (n_prompts,))[()].astype(np.int64)
        self._row_offset = self._dataset("prompts/row_offset", "i", (n_prompts,))[()].astype(np.int64)
        self._done = self._dataset("prompts/done", "iu", (n_prompts,))[()].astype(bool)

        ids = self._dataset("tokens/ids", "i", (None,))
        self._token_ids = ids[()]
        self._token_text = _texts(self._dataset("tokens/text", "S", (ids.shape[0],)))

        rows = self._dataset("evolution/row_query", "i", (None,)).shape[0]
        self._row_query = self._file["evolution/row_query"]
        self._row_step = self._dataset("evolution/row_step", "i", (rows,))
        self._indices = self._dataset("evolution/indices", "i", (n_layers, rows, self.k))
        self._dataset("evolution/values", "f", (n_layers, rows, self.k))
        self._values = self._file["evolution/values"]

        self._readout_ids = self._dataset("readout/token_ids", "i", (n_prompts, n_layers, READOUT_TOP))[()]
        self._readout_probs = self._dataset("readout/probs", "f", (n_prompts, n_layers, READOUT_TOP))[()]
        self._dataset("readout/token_text", "S", (n_prompts, n_layers, READOUT_TOP))
        self._readout_text = np.array(_texts(self._file["readout/token_text"]),
                                      dtype=object).reshape(n_prompts, n_layers, READOUT_TOP)

        self._graph_groups = {}
        for name in sorted(root.keys()):
            if name == "graphs" or name.startswith("graphs_T"):
                top_t = int(self._attr(root[name], "top_t", f"/{name}"))
                self._table(f"{name}/trajectories", TRAJECTORY_FIELDS)
                self._table(f"{name}/edges", EDGE_FIELDS)
                self._table(f"{name}/traced_edges", TRACED_EDGE_FIELDS)
                if "trajectory_heads" in root[name]:
                    n_rows = root[f"{name}/trajectories"].shape[0]
                    self._dataset(f"{name}/trajectory_heads", "f", (n_rows, None))
                if "trajectory_order" in root[name]:
                    n_rows = root[f"{name}/trajectories"].shape[0]
                    self._dataset(f"{name}/trajectory_order", "i", (n_rows, 4))
                if "trajectory_order_values" in root[name]:
                    n_rows = root[f"{name}/trajectories"].shape[0]
                    self._dataset(f"{name}/trajectory_order_values", "f", (n_rows, 6))
                self._graph_groups.setdefault(top_t, name)
        if "graphs" not in root:
            self._fail("missing group /graphs")

        self._check_mlp(n_layers)

        for group in ("explanations", "mlp_explanations"):  # the latter: `saetraj explain` on a sweep with /mlp
            if group in root:
                layer = self._dataset(f"{group}/layer", "i", (None,))
                self._dataset(f"{group}/feature", "i", (layer.shape[0],))
                self._dataset(f"{group}/text", "S", (layer.shape[0],))

    def _check_mlp(self, n_layers):
        """/mlp: one entry per (layer, query) for the queries 1..N-1 of every prompt, prompt after prompt."""
        self._mlp_offset = np.concatenate([[0], np.cumsum(self._n_tokens - 1)]).astype(np.int64)
        if "mlp" not in self._file:
            self.mlp_transcoders = None
            return
        if self.format_version < MLP_FORMAT_VERSION:
            self._fail(f"holds /mlp but its format_version is {self.format_version}; /mlp needs version "
                       f"{MLP_FORMAT_VERSION} (the file is damaged or was edited)")
        group = self._file["mlp"]
        names = {}
        for attr in ("transcoder_ids", "transcoder_hooks", "transcoder_hooks_out"):
            values = [_text(v) for v in np.asarray(self._attr(group, attr, "/mlp")).ravel()]
            if len(values) != n_layers:
                self._fail(f"attribute '{attr}' of /mlp has {len(values)} entries; expected {n_layers}, "
                           f"one per analysed layer")
            names[attr] = values
        self.mlp_transcoders = names["transcoder_ids"]
        queries, k = int(self._mlp_offset[-1]), self.k
        self._mlp = {
            "steps": self._dataset("mlp/steps", "i", (n_layers, queries)),
            "final_indices": self._dataset("mlp/final_indices", "i", (n_layers, queries, k)),
            "final_values": self._dataset("mlp/final_values", "f", (n_layers, queries, k)),
            "slots": self._dataset("mlp/slots", "i", (n_layers, queries, k, 3)),
            "activation": self._dataset("mlp/activation", "f", (n_layers, queries, k)),
        }

    @property
    def has_mlp(self):
        """Whether the sweep ran with --mlp-transcoder (the file holds /mlp)."""
        return self.mlp_transcoders is not None

    def mlp_newcomers(self, prompt, layer, q, top_t=None):
        """The MLP newcomers of (prompt, layer, query q): the features of resid_post's top-k list that the
        MLP's terms brought in (/mlp/slots step >= 1), by final position; with top_t, only those whose final
        position is <= top_t (as trajectories are kept). Empty for a file without /mlp."""
        if not self.has_mlp:
            return []
        n = self.n_tokens(prompt)
        if not 1 <= q <= n - 1:
            raise SweepInputError(f"{self.path}: query {q} is out of range for prompt {prompt} "
                                  f"({n} tokens: queries 1..{n - 1})")
        i, at = self.layer_index(layer), int(self._mlp_offset[prompt]) + q - 1
        steps = int(self._mlp["steps"][i, at])
        ids = self._mlp["final_indices"][i, at]
        values = self._mlp["final_values"][i, at]
        slots = self._mlp["slots"][i, at]
        activation = self._mlp["activation"][i, at]
        found = []
        for slot in range(self.k):
            step, kind, unit = (int(v) for v in slots[slot])
            if step < 1 or (top_t is not None and slot > top_t):
                continue
            if not 0 <= kind < len(MLP_TERMS) or step >= steps or int(ids[slot]) < 0 \
                    or (kind == 0) != (unit >= 0):
                self._fail(f"/mlp/slots[{i}, {at}, {slot}] (prompt {prompt}, layer {layer}, query {q}) is "
                           f"step {step}, term {kind}, transcoder feature {unit} for feature {int(ids[slot])} "
                           f"of {steps} steps; expected a step in 1..{steps - 1}, a term in 0..3 and a "
                           f"transcoder feature exactly when the term is 0 (feature)")
            found.append(MlpNewcomer(int(ids[slot]), slot, float(values[slot]), step, steps, MLP_TERMS[kind],
                                     unit if kind == 0 else None,
                                     float(activation[slot]) if kind == 0 else None))
        return found

    # ----- prompts and tokens -----------------------------------------------------------------------

    def check_prompt(self, prompt):
        if not 0 <= prompt < self.n_prompts:
            raise SweepInputError(f"{self.path}: prompt {prompt} does not exist; "
                                  f"the file holds prompts 0..{self.n_prompts - 1}")

    def prompt_text(self, prompt):
        self.check_prompt(prompt)
        return self._prompt_text[prompt]

    def n_tokens(self, prompt):
        self.check_prompt(prompt)
        return int(self._n_tokens[prompt])

    def is_done(self, prompt):
        self.check_prompt(prompt)
        return bool(self._done[prompt])

    def tokens(self, prompt):
        """Token texts of a prompt, position 0 first."""
        n = self.n_tokens(prompt)
        start = int(self._token_offset[prompt])
        stop = start + n
        if stop > len(self._token_text):
            self._fail(f"prompt {prompt} needs tokens {start}..{stop - 1} but /tokens/text has "
                       f"{len(self._token_text)} entries")
        return self._token_text[start:stop]

    # ----- layers and evolution ---------------------------------------------------------------------

    def layer_index(self, layer):
        """Axis index of a model layer number."""
        hits = np.nonzero(self.layers == layer)[0]
        if len(hits) == 0:
            raise SweepInputError(f"{self.path}: layer {layer} was not analysed; analysed layers are "
                                  f"{', '.join(str(l) for l in self.layers)}")
        return int(hits[0])

    def _block_rows(self, prompt, q):
        n = self.n_tokens(prompt)
        if not 1 <= q <= n - 1:
            raise SweepInputError(f"{self.path}: query {q} is out of range for prompt {prompt} "
                                  f"({n} tokens: queries 1..{n - 1})")
        start = int(self._row_offset[prompt]) + rows_before_query(q)
        stop = start + q + 2
        if stop > self._indices.shape[1]:
            self._fail(f"prompt {prompt} query {q} needs evolution rows {start}..{stop - 1} but "
                       f"/evolution has {self._indices.shape[1]} rows")
        row_q = self._row_query[start:stop]
        row_s = self._row_step[start:stop]
        if np.any(row_q != q) or np.any(row_s != np.arange(q + 2)):
            self._fail(f"evolution rows {start}..{stop - 1} of prompt {prompt} should be query {q}, "
                       f"steps 0..{q + 1}; found queries {row_q.tolist()} and steps {row_s.tolist()}")
        return start, stop

    def evolution_block(self, prompt, layer, q):
        """Top-k feature ids of (prompt, layer, query q) as an int array [q+2, k]: row s is step s,
        ids sorted by activation descending, -1 in empty slots."""
        start, stop = self._block_rows(prompt, q)
        return self._indices[self.layer_index(layer), start:stop, :]

    def evolution_values(self, prompt, layer, q):
        """Activations matching evolution_block, float32 [q+2, k]."""
        start, stop = self._block_rows(prompt, q)
        return self._values[self.layer_index(layer), start:stop, :]

    # ----- readout ----------------------------------------------------------------------------------

    def readout(self, prompt, layer):
        """The top-5 next tokens when layer `layer`'s residual is read out at the last position."""
        self.check_prompt(prompt)
        i = self.layer_index(layer)
        return [ReadoutEntry(int(self._readout_ids[prompt, i, j]), self._readout_text[prompt, i, j],
                             float(self._readout_probs[prompt, i, j])) for j in range(READOUT_TOP)]

    # ----- graphs -----------------------------------------------------------------------------------

    def available_top_t(self):
        return sorted(self._graph_groups)

    def graphs(self, top_t=None):
        """Graph tables built with final-rank filter `top_t`; None takes /graphs."""
        if top_t is None:
            name = "graphs"
        elif top_t in self._graph_groups:
            name = self._graph_groups[top_t]
        else:
            raise SweepInputError(f"{self.path}: no graphs built with T={top_t}; the file holds graphs "
                                  f"for T={', '.join(str(t) for t in self.available_top_t())} "
                                  f"(build others with `saetraj graph`)")
        group = self._file[name]
        heads = group["trajectory_heads"][()] if "trajectory_heads" in group else None
        order = group["trajectory_order"][()] if "trajectory_order" in group else None
        values = group["trajectory_order_values"][()] if "trajectory_order_values" in group else None
        return GraphTables(name, int(group.attrs["top_t"]), group["trajectories"][()],
                           group["edges"][()], group["traced_edges"][()], heads, order, values)

    # ----- explanations -----------------------------------------------------------------------------

    @property
    def has_explanations(self):
        return "explanations" in self._file

    def explanation(self, layer, feature):
        """The explanation of (model layer, feature), or None when the file has none for it."""
        if self._explanations is None:
            self._explanations = {}
            if self.has_explanations:
                group = self._file["explanations"]
                for l, f, t in zip(group["layer"][()], group["feature"][()], _texts(group["text"])):
                    self._explanations[(int(l), int(f))] = t
        return self._explanations.get((int(layer), int(feature)))

    @property
    def has_mlp_explanations(self):
        """Whether `saetraj explain` stored explanations of the transcoder features /mlp references."""
        return "mlp_explanations" in self._file

    def transcoder_explanation(self, layer, transcoder_feature):
        """The explanation of feature `transcoder_feature` of the transcoder of layer `layer`'s MLP
        (/mlp_explanations), or None when the file has none for it."""
        if self._mlp_explanations is None:
            self._mlp_explanations = {}
            if self.has_mlp_explanations:
                group = self._file["mlp_explanations"]
                for l, f, t in zip(group["layer"][()], group["feature"][()], _texts(group["text"])):
                    self._mlp_explanations[(int(l), int(f))] = t
        return self._mlp_explanations.get((int(layer), int(transcoder_feature)))
