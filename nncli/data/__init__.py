"""Reading data files into float32 arrays for ``train``, ``eval`` and ``predict``.

Formats, chosen by the file name's extension (case-insensitive):

* ``.npz``: a NumPy archive with a 2-D numeric array ``X`` (rows x features) and, for training
  and evaluation, an array ``y`` (1-D, or 2-D with one column per target) with as many rows.
* ``.npy``: a single 2-D numeric array of features; usable for ``predict`` only.
* anything else, and ``-`` (standard input): CSV.

Nothing is ever unpickled: NumPy files are opened with ``allow_pickle=False``.

CSV files are UTF-8, with or without a byte order mark, with LF or CRLF line ends. The delimiter
is ``,``; fields may be double-quoted (then the block of the file that holds them, all of it
when it is read whole, goes through the ``csv`` module).
Blank lines are skipped. Standard input is read into memory once.

Header detection: the first row is taken as a header when some cell of it does not parse as a
number and either

* that column's cell in the second row does parse as a number (``p0`` above ``0.5``), or
* that cell's text does not occur again in its column within the next 1000 rows (a column of text
  labels: ``label`` above ``cat, dog, cat, ...`` is a name, ``cat`` above ``dog, cat`` is data).

A header of numbers only (``0,1,2,3``) cannot be told from data and is read as a data row, unless
some other cell gives it away (``0,1,2,label``). ``load_features`` also accepts a first row that
spells out exactly the model's feature names (optionally with its target columns) as a header.

Targets are the last column unless named: by header name or by 0-based index (``-1`` counts from
the end). They are removed from the features; the other columns keep their order. A single
target column holding any cell that is not a number is a column of class labels; its classes are
the sorted distinct (whitespace-stripped) labels and ``Y`` holds each row's class index. Given a
trained model's classes, labels that are all class names are mapped to its indices (even labels
that look like numbers); otherwise numbers are kept as they are and any other label is an error.
An empty target cell is always an error rather than a class of its own.

Every problem is reported as a :class:`~nncli.errors.DataError` located as ``FILE:LINE:COLUMN``
(1-based lines counted in the file as it is, header and blank lines included; 1-based columns).
"""

from nncli.data.dataset import (Dataset, ReadOptions, iter_features, load_features,
                                load_training_data, read_table, training_data)
from nncli.data.missing import MISSING_POLICIES, MissingPolicy
from nncli.data.schema import Column, Encoded, Schema
from nncli.data.table import Table

__all__ = ["Dataset", "ReadOptions", "Table", "Schema", "Column", "Encoded", "MISSING_POLICIES",
           "MissingPolicy", "read_table", "load_training_data", "training_data", "load_features",
           "iter_features"]
