"""Compares the datasets of saetraj sweep files byte for byte (attributes that record when and how the
run was started are ignored). Exit status 0 when all files match the first."""
import sys

import h5py
import numpy as np

IGNORED_ATTRS = {"created_utc", "command_line", "config"}


def datasets(f):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj
    f.visititems(visit)
    return out


def main(paths):
    with h5py.File(paths[0], "r") as ref:
        ref_sets = datasets(ref)
        ref_attrs = {k: v for k, v in ref.attrs.items() if k not in IGNORED_ATTRS}
        failures = 0
        for path in paths[1:]:
            with h5py.File(path, "r") as other:
                other_sets = datasets(other)
                if set(other_sets) != set(ref_sets):
                    print(f"{path}: datasets differ: {sorted(set(other_sets) ^ set(ref_sets))}")
                    failures += 1
                    continue
                for name, ds in ref_sets.items():
                    a, b = ds[()], other_sets[name][()]
                    if a.dtype != b.dtype or a.shape != b.shape:
                        print(f"{path}:{name}: dtype/shape {b.dtype}{b.shape} vs {a.dtype}{a.shape}")
                        failures += 1
                    elif a.dtype.kind == "O" or a.dtype.names:
                        if a.tolist() != b.tolist():
                            print(f"{path}:{name}: values differ")
                            failures += 1
                    elif a.tobytes() != b.tobytes():
                        diff = int(np.count_nonzero(a != b))
                        print(f"{path}:{name}: {diff} element(s) differ")
                        failures += 1
                for key, value in ref_attrs.items():
                    if not np.array_equal(np.asarray(value), np.asarray(other.attrs.get(key))):
                        print(f"{path}: attribute {key} differs")
                        failures += 1
        print(f"compared {len(ref_sets)} datasets of {len(paths)} files: {failures} difference(s)")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
