"""Error types raised by the analysis package; render.py turns them into one line and a non-zero exit."""


class AnalysisError(Exception):
    """Base of every error this package raises on purpose."""


class SweepFormatError(AnalysisError):
    """The file is not a readable saetraj sweep: wrong format attribute, missing dataset, bad shape."""


class SweepInputError(AnalysisError):
    """The file is fine but the request is not: unknown prompt, layer not analysed, T without graphs."""


class IndexFormatError(AnalysisError):
    """The file is not a readable saetraj feature index (`saetraj index`): wrong format, missing dataset."""


class IndexInputError(AnalysisError):
    """The index is fine but the request is not: a feature or layer it does not hold, a bad option."""
