"""The one exception type of the data stage."""


class DataError(ValueError):
    """Bad or insufficient input data; the message names the file, row, field or domain."""
