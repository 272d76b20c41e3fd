"""Reading a run's inputs: the training data, the validation data and the model it starts from
(``load_inputs``), read as ``nncli train`` reads them, before ``prepare`` checks and scales."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from nncli.data import Dataset, Table
from nncli.errors import UsageError
from nncli.model import Model
from nncli.options import TrainConfig


@dataclass
class Inputs:
    """What a run reads before it starts: the data, and the model it starts from."""

    data: Dataset
    val: Dataset | None = None
    init_from: Model | None = None
    resume: object | None = None       # a modelfile.ModelFile with a training state

    def messages(self) -> list[str]:
        """What the user should be told about the data (dropped rows, filled values, ...)."""
        return self.data.messages() + (self.val.messages() if self.val is not None else [])


def read_options(config: TrainConfig):
    """How the run's options say its data files are read (a ``data.ReadOptions``)."""
    from nncli.data import ReadOptions

    return ReadOptions(config.delimiter, config.missing, tuple(config.categorical),
                       tuple(config.numeric), tuple(config.ignore), tuple(config.features),
                       encoding=config.encoding, sample_weight=config.sample_weight)


def load_inputs(config: TrainConfig, data: str | Table,
                validation_data: str | Table | None = None,
                targets: list[str] | None = None, init_from: str | os.PathLike | None = None,
                resume: str | os.PathLike | None = None, stdin=None) -> Inputs:
    """Read the training data (``-``: standard input; or a Table already read, such as a
    cross-validation fold's rows, whose rows may be left out in place), the validation data
    (a file, or a Table such as a fold's held-out rows) and the model a run starts from, as
    ``nncli train`` does: the training file's columns are learnt here (or, continuing from a
    model, read with that model's columns), and the validation data is read with the same
    columns and classes, without row weights (validation is unweighted, as Keras's, and its
    file need not have the --sample-weight column). Hand the result to :func:`prepare`."""
    from nncli.data import load_training_data, training_data
    from nncli.modelfile import load_model, read_model_file

    if validation_data is not None and config.validation_split:
        raise UsageError("give --validation-split or --validation-data, not both")
    base = load_model(init_from) if init_from else None
    saved = read_model_file(resume) if resume else None
    start = saved.model if saved is not None else base
    options = read_options(config)
    classes = saved.model.classes if saved else None
    schema = start.input_schema() if start is not None else None
    if isinstance(data, Table):
        ds = training_data(data, targets, classes, options, schema)
    else:
        ds = load_training_data(data, targets, classes, stdin, options, schema)
    vds = None
    if validation_data is not None:
        unweighted = replace(options, sample_weight=None)
        if isinstance(validation_data, Table):
            vds = training_data(validation_data, targets, ds.classes, unweighted, ds.schema)
        else:
            vds = load_training_data(validation_data, targets, classes=ds.classes,
                                     options=unweighted, schema=ds.schema)
    return Inputs(ds, vds, base, saved)
