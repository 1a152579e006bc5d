"""Querying a feature index (INDEX.h5 written by `saetraj index`, format "saetraj-index" version 1).

    idx = FeatureIndex.open("corpus_index.h5")
    idx.layers()                          # model layer numbers that have features in the index
    profile = idx.feature(5, 1234)        # aggregates, top source tokens, explanation
    profile.occurrences(limit=10)         # examples: prompt text, tokens, source and query positions
    idx.top(5, n=20, by="count")          # the features of layer 5 that most often arrive through attention

Nothing is read whole that grows with the corpus: a feature is found by binary search over /features
(element reads), and only its row range of /occurrences and the prompts and tokens its examples need are
read. Results are plain dataclasses, lists and floats (no pandas).
"""

import math
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from .errors import IndexFormatError, IndexInputError
from .io import _open_failure, _text

FORMAT_NAME = "saetraj-index"
FORMAT_VERSION = 1
TOP_SOURCES = 5
SORT_KEYS = ("count", "prompts", "traced", "distance_mean", "distance_median", "final_position_mean",
             "final_position_median")
# (dataset, dtype kind, number of dimensions); the 2-D ones are checked for their width below.
PROMPT_DATASETS = (("source", "i"), ("index", "i"), ("id", "S"), ("text", "S"), ("n_tokens", "i"),
                   ("token_offset", "i"))
OCCURRENCE_DATASETS = (("prompt", "i"), ("length", "i"), ("source_token", "i"), ("distance_back", "i"),
                       ("final_position", "i"), ("source_id", "i"), ("traced", "i"))
FEATURE_DATASETS = (("layer", "i"), ("feature", "i"), ("start", "i"), ("count", "i"), ("prompts", "i"),
                    ("traced", "i"), ("distance_mean", "f"), ("distance_median", "f"),
                    ("final_position_mean", "f"), ("final_position_median", "f"), ("explanation", "S"))


@dataclass(frozen=True)
class SourceToken:
    token_id: int
    text: str
    count: int


@dataclass(frozen=True)
class Occurrence:
    """One trajectory of the feature: the prompt's first `length` tokens were run, the feature arrived at
    the query token (length - 1) when source_token's attention contribution was added."""
    source_file: str
    prompt: int             # the prompt's index in source_file
    prompt_id: str
    prompt_text: str
    tokens: list            # token texts 0 .. length - 1
    length: int
    source_token: int
    query_token: int
    distance_back: int
    final_position: int
    traced: bool


@dataclass
class FeatureProfile:
    layer: int
    feature: int
    count: int              # occurrences (trajectories)
    prompts: int            # distinct prompts among them
    traced: int             # occurrences that the prompt's traced graph carries
    distance_mean: float
    distance_median: float
    final_position_mean: float
    final_position_median: float
    top_sources: list       # [SourceToken], most occurrences first
    explanation: str        # "" when none
    head_share_mean: list = None    # per head (index built from sweeps with --heads), else None
    loo_agree: float = None         # with --orders: share whose leave-one-out source is the source token
    shapley_agree: float = None
    _index: "FeatureIndex" = field(default=None, repr=False)
    _start: int = field(default=0, repr=False)

    def occurrences(self, limit=None):
        """The feature's occurrences in index order (sources as given, then prompt order), the first
        `limit` of them when given."""
        n = self.count if limit is None else max(0, min(limit, self.count))
        return self._index._occurrences(self._start, n)


class FeatureIndex:
    """An open, validated feature index. Use as a context manager or call close()."""

    def __init__(self, path):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise IndexFormatError(f"{self.path}: no such file; check the path")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise IndexFormatError(f"{self.path}: cannot open as an HDF5 file ({_open_failure(err)}); "
                                   f"give an index written by saetraj index") from err
        try:
            self._validate()
        except Exception:
            self._file.close()
            raise
        self._vocab = None

    @classmethod
    def open(cls, path):
        return cls(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._file.close()

    # ----- validation -------------------------------------------------------------------------------

    def _fail(self, what):
        raise IndexFormatError(f"{self.path}: {what}")

    def _dataset(self, name, kind, shape):
        if name not in self._file or not isinstance(self._file[name], h5py.Dataset):
            self._fail(f"missing dataset /{name}")
        ds = self._file[name]
        if kind == "S":
            if h5py.check_string_dtype(ds.dtype) is None:
                self._fail(f"/{name} has dtype {ds.dtype}; expected a string dataset")
        elif ds.dtype.kind not in ("iu" if kind == "i" else kind):
            self._fail(f"/{name} has dtype {ds.dtype}; expected kind '{kind}'")
        if len(ds.shape) != len(shape) or any(e is not None and e != f for e, f in zip(shape, ds.shape)):
            expected = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ")"
            self._fail(f"/{name} has shape {ds.shape}; expected {expected}")
        return ds

    def _validate(self):
        attrs = self._file.attrs
        if "format" not in attrs:
            self._fail(f"an HDF5 file but not a saetraj feature index (no root attribute format = "
                       f"\"{FORMAT_NAME}\"); give an index written by saetraj index")
        fmt = _text(attrs["format"])
        if fmt != FORMAT_NAME:
            hint = "; this is a sweep file: index it with `saetraj index`" if fmt == "saetraj-sweep" else ""
            self._fail(f"attribute 'format' is '{fmt}'; expected '{FORMAT_NAME}'{hint}")
        if "format_version" not in attrs:
            self._fail("missing attribute 'format_version' on /")
        version = int(attrs["format_version"])
        if version != FORMAT_VERSION:
            self._fail(f"attribute 'format_version' is {version}; this reader knows {FORMAT_VERSION}")
        for name in ("layers", "sources", "top_t"):
            if name not in attrs:
                self._fail(f"missing attribute '{name}' on /")
        self.model = _text(attrs.get("model", ""))
        self.top_t = int(attrs["top_t"])
        self.sources = [_text(v) for v in np.asarray(attrs["sources"]).ravel()]
        self.analysed_layers = [int(v) for v in np.asarray(attrs["layers"]).ravel()]

        n_prompts = self._dataset("prompts/text", "S", (None,)).shape[0]
        for name, kind in PROMPT_DATASETS:
            self._dataset(f"prompts/{name}", kind, (n_prompts,))
        n_tokens = self._dataset("tokens/ids", "i", (None,)).shape[0]
        self._dataset("tokens/text", "S", (n_tokens,))
        n_rows = self._dataset("occurrences/prompt", "i", (None,)).shape[0]
        for name, kind in OCCURRENCE_DATASETS:
            self._dataset(f"occurrences/{name}", kind, (n_rows,))
        n_features = self._dataset("features/layer", "i", (None,)).shape[0]
        for name, kind in FEATURE_DATASETS:
            self._dataset(f"features/{name}", kind, (n_features,))
        self._dataset("features/top_sources", "i", (n_features, TOP_SOURCES))
        self._dataset("features/top_source_counts", "i", (n_features, TOP_SOURCES))
        self.has_heads = "features/head_share_mean" in self._file
        if self.has_heads:
            shares = self._dataset("features/head_share_mean", "f", (n_features, None))
            self.head_names = [_text(v) for v in np.asarray(self._file["occurrences/heads"].attrs["columns"])
                               .ravel()][3:] if "occurrences/heads" in self._file else \
                [f"head {h}" for h in range(shares.shape[1])]
        self.has_order = "features/loo_agree" in self._file
        if self.has_order:
            self._dataset("features/loo_agree", "f", (n_features,))
            self._dataset("features/shapley_agree", "f", (n_features,))
        n_vocab = self._dataset("vocab/id", "i", (None,)).shape[0]
        self._dataset("vocab/text", "S", (n_vocab,))
        self.n_features = n_features
        self.n_occurrences = n_rows
        self.n_prompts = n_prompts
        if n_features:
            last = int(self._file["features/start"][n_features - 1]) + int(self._file["features/count"][n_features - 1])
            if last != n_rows:
                self._fail(f"/features ends at occurrence row {last} but /occurrences has {n_rows} rows")

    # ----- finding features -------------------------------------------------------------------------

    def _key(self, row):
        return int(self._file["features/layer"][row]), int(self._file["features/feature"][row])

    def _lower_bound(self, key):
        """First row of /features whose (layer, feature) is >= key (binary search, element reads)."""
        lo, hi = 0, self.n_features
        while lo < hi:
            mid = (lo + hi) // 2
            if self._key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _layer_rows(self, layer):
        return self._lower_bound((layer, -math.inf)), self._lower_bound((layer, math.inf))

    def layers(self):
        """Model layer numbers that have at least one feature in the index, ascending."""
        found, row = [], 0
        while row < self.n_features:
            layer = self._key(row)[0]
            found.append(layer)
            row = self._lower_bound((layer, math.inf))
        return found

    def _check_layer(self, layer):
        if layer not in self.analysed_layers:
            raise IndexInputError(f"{self.path}: layer {layer} was not analysed; the index covers layers "
                                  f"{', '.join(str(l) for l in self.analysed_layers)}")

    def feature(self, layer, index):
        """The profile of (model layer, feature index)."""
        self._check_layer(layer)
        row = self._lower_bound((layer, index))
        if row >= self.n_features or self._key(row) != (layer, index):
            raise IndexInputError(f"{self.path}: layer {layer} feature {index} is not in the index (it never "
                                  f"arrived through attention with final position <= T={self.top_t})")
        return self._profile(row)

    def top(self, layer, n=20, by="count"):
        """The n features of `layer` with the largest `by` (one of SORT_KEYS); ties to the lower index."""
        if by not in SORT_KEYS:
            raise IndexInputError(f"cannot sort by '{by}'; choose one of {', '.join(SORT_KEYS)}")
        if n < 1:
            raise IndexInputError(f"n must be at least 1, not {n}")
        self._check_layer(layer)
        lo, hi = self._layer_rows(layer)
        values = self._file[f"features/{by}"][lo:hi]
        order = np.lexsort((np.arange(hi - lo), -values.astype(np.float64)))[:n]
        return [self._profile(lo + int(r)) for r in order]

    # ----- reading ----------------------------------------------------------------------------------

    def vocab_text(self, token_id):
        if self._vocab is None:
            self._vocab = dict(zip(self._file["vocab/id"][()].tolist(),
                                   [_text(v) for v in self._file["vocab/text"][()]]))
        return self._vocab.get(int(token_id), f"<id {token_id}>")

    def _profile(self, row):
        f = self._file["features"]

        def number(name):
            return float(f[name][row])

        tops = [SourceToken(int(t), self.vocab_text(t), int(c))
                for t, c in zip(f["top_sources"][row], f["top_source_counts"][row]) if t >= 0]
        return FeatureProfile(
            layer=int(f["layer"][row]), feature=int(f["feature"][row]), count=int(f["count"][row]),
            prompts=int(f["prompts"][row]), traced=int(f["traced"][row]),
            distance_mean=number("distance_mean"), distance_median=number("distance_median"),
            final_position_mean=number("final_position_mean"),
            final_position_median=number("final_position_median"), top_sources=tops,
            explanation=_text(f["explanation"][row]),
            head_share_mean=[float(v) for v in f["head_share_mean"][row]] if self.has_heads else None,
            loo_agree=number("loo_agree") if self.has_order else None,
            shapley_agree=number("shapley_agree") if self.has_order else None,
            _index=self, _start=int(f["start"][row]))

    def _occurrences(self, start, n):
        occ = self._file["occurrences"]
        cols = {name: occ[name][start:start + n] for name, _ in OCCURRENCE_DATASETS}
        rows = sorted(set(cols["prompt"].tolist()))
        p = self._file["prompts"]
        prompt = {}
        if rows:
            for name in ("source", "index", "id", "text", "token_offset", "n_tokens"):
                values = p[name][rows]
                for r, v in zip(rows, values):
                    prompt.setdefault(r, {})[name] = v
        token_text = self._file["tokens/text"]
        found = []
        for i in range(len(cols["prompt"])):
            info = prompt[int(cols["prompt"][i])]
            length = int(cols["length"][i])
            offset = int(info["token_offset"])
            found.append(Occurrence(
                source_file=self.sources[int(info["source"])], prompt=int(info["index"]),
                prompt_id=_text(info["id"]), prompt_text=_text(info["text"]),
                tokens=[_text(t) for t in token_text[offset:offset + length]], length=length,
                source_token=int(cols["source_token"][i]), query_token=length - 1,
                distance_back=int(cols["distance_back"][i]), final_position=int(cols["final_position"][i]),
                traced=bool(cols["traced"][i])))
        return found

    def distance_histogram(self, profile):
        """Counts of distance_back 0, 1, ... max over the feature's occurrences."""
        values = self._file["occurrences/distance_back"][profile._start:profile._start + profile.count]
        return np.bincount(values.astype(np.int64)).tolist() if len(values) else []
