"""The model file: one ``.safetensors`` file, written atomically, read without pickle.

Tensors, all float32, shaped as Keras stores them (``arch.param_shapes``): ``layers.{i}.kernel``
(in, out) for a dense layer, (kernel, in_channels, filters) for conv, (positions, kernel,
in_channels, filters) for local; ``layers.{i}.bias`` (out,), (filters,) or (positions, filters);
``normalization.mean`` and ``normalization.std`` (n_inputs,), and for an mse model that
standardises its targets ``normalization.target_mean`` and ``normalization.target_std``
(n_outputs,): the preprocessing stage, whose fill values are in the metadata's column
``schema`` (``nncli.preprocess``). The safetensors metadata holds one
key, ``nncli``, whose value is a JSON document (see ``_metadata``): among others the
architecture, ``channels`` (files written before conv layers existed have none: 1) and one
entry per layer with its kind (and kernel width and stride for conv and local). Loading
checks, in order: the file's framing (header length, trailing bytes, a header nested no deeper
than ``jsondoc.MAX_DEPTH``), that it is an nncli file, its format version, the metadata's
structure against its declared schema (``nncli.modelmeta``), that every tensor has the shape the
architecture implies, and every other metadata key against the network it describes.

A *checkpoint* is a model file with the state of an unfinished training run added: the JSON
document gets a ``training_state`` object (epochs done, optimizer step, shuffling state, ...; see
``nncli.train.checkpoint_parts``) and the file gets flat float32 tensors of the parameters' size
(``optimizer.m``, ``optimizer.v``, ``early_stopping.best``). Everything that reads a model reads
a checkpoint as the model it holds; a finished model has exactly the tensors listed above.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from nncli import __version__
from nncli.data.schema import Schema
from nncli.arch import LAYER_KINDS, LayerSpec, layer_shapes, param_names, param_shapes, parse_arch
from nncli.errors import ArchError, ModelFileError
from nncli.files import check_writable, write_atomically
from nncli.jsondoc import load_json, shown
from nncli.losses import LOSSES
from nncli.model import Model, param_count
from nncli.modelmeta import FORMAT_VERSION, Shape, check_fields, check_structure, damaged
from nncli.preprocess import Preprocessing

METADATA_KEY = "nncli"
STATE_KEY = "training_state"
# Names of the extra tensors a checkpoint may hold, all flat and as long as the parameters.
STATE_TENSOR_PREFIXES = ("optimizer.", "early_stopping.")
# The preprocessing stage's tensors: the features' standardisation, and the targets' of an mse
# model (absent when the targets are used as they are). Its fill values are in the schema.
MEAN, STD = "normalization.mean", "normalization.std"
TARGET_MEAN, TARGET_STD = "normalization.target_mean", "normalization.target_std"
# A model of this tool has a header of a few kB; a larger claim is a foreign or corrupt file.
MAX_HEADER_BYTES = 64 << 20


@dataclass
class ModelFile:
    """What a model file holds: the model, and for a checkpoint the training state."""

    model: Model
    path: str
    state: dict | None = None                                 # the training_state document
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # optimizer.m, ...

    @property
    def is_checkpoint(self) -> bool:
        return self.state is not None


def save_model(model: Model, path: str | os.PathLike, state: dict | None = None,
               tensors: dict[str, np.ndarray] | None = None) -> None:
    """Write ``model`` to ``path`` atomically: a temporary file in the same folder, then rename.

    ``state`` (JSON-able) and ``tensors`` (flat float32 arrays named ``optimizer.*`` or
    ``early_stopping.*``) make the file a checkpoint; without them it is a finished model.
    """
    path = Path(path)
    all_tensors = _tensors(model)
    meta = _metadata(model)
    if state is not None:
        meta[STATE_KEY] = state
    for name, array in (tensors or {}).items():
        if not name.startswith(STATE_TENSOR_PREFIXES) or name in all_tensors:
            raise ValueError(f"not a training-state tensor name: {name!r}")
        all_tensors[name] = np.ascontiguousarray(array, dtype=np.float32)
    data = st_save(all_tensors, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    check_writable(path)
    write_atomically(path, lambda f: f.write(data))


def load_model(path: str | os.PathLike) -> Model:
    """Read and check a model file (or checkpoint); every problem is a ModelFileError naming it."""
    return read_model_file(path).model


def read_model_file(path: str | os.PathLike) -> ModelFile:
    """Read and check a model file, keeping a checkpoint's training state and tensors."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{name}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{name}: is a folder, not a model file") from None
    except OSError as e:
        raise ModelFileError(f"{name}: cannot read: {e.strerror}") from None
    header = _read_header(data, name)
    meta = _nncli_metadata(header, name)
    try:
        tensors = st_load(data)
    except SafetensorError as e:
        raise ModelFileError(f"{name}: damaged safetensors file ({e})") from None
    state = meta.pop(STATE_KEY, None)
    model = _model_from(meta, tensors, name)
    if state is None:
        return ModelFile(model, name)
    if not isinstance(state, dict):
        raise ModelFileError(f"{name}: damaged training state (not a JSON object)")
    extra = {}
    for key, array in tensors.items():
        if not key.startswith(STATE_TENSOR_PREFIXES):
            continue
        if array.dtype != np.float32 or array.shape != model.params.shape:
            raise ModelFileError(f"{name}: tensor '{key}' is {array.dtype}{list(array.shape)}, "
                                 f"expected float32{list(model.params.shape)}")
        extra[key] = array.copy()
    return ModelFile(model, name, state, extra)


def _tensors(model: Model) -> dict[str, np.ndarray]:
    out = {}
    for record in model.layer_records():
        kernel, bias = param_names(record.index)
        out[kernel] = np.ascontiguousarray(record.kernel)
        out[bias] = np.ascontiguousarray(record.bias)
    out.update(_preprocessing_tensors(model.preprocessing))
    return out


def _preprocessing_tensors(stage: Preprocessing) -> dict[str, np.ndarray]:
    names = {MEAN: stage.mean, STD: stage.std}
    if stage.scales_targets:
        names.update({TARGET_MEAN: stage.target_mean, TARGET_STD: stage.target_std})
    return {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in names.items()}


def _metadata(model: Model) -> dict:
    # model.info first: what this file is (version, structure) always describes it now.
    return {
        **model.info,
        "format_version": FORMAT_VERSION,
        "nncli_version": __version__,
        "arch": model.arch,
        "layers": [_layer_entry(l) for l in model.layers],
        "n_inputs": model.n_inputs,
        "channels": model.channels,
        "loss": model.loss,
        "logits": model.logits,
        "classes": model.classes,
        "feature_names": model.feature_names,
        "target_names": model.target_names,
        "target_columns": model.target_columns,
        "schema": (model.preprocessing.schema.to_json()
                   if model.preprocessing.schema is not None else None),
    }


def _layer_entry(layer: LayerSpec) -> dict:
    """What the model file records of a layer; ``nncli info`` shows the same and more
    (model.LayerRecord.summary)."""
    return LAYER_KINDS[layer.kind].entry(layer)


def _read_header(data: bytes, name: str) -> dict:
    if len(data) < 8:
        raise ModelFileError(f"{name}: truncated model file ({len(data)} bytes); "
                             f"not a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        what = "truncated" if n <= MAX_HEADER_BYTES and data[8:9] == b"{" else "not a"
        raise ModelFileError(f"{name}: {what} safetensors file (header claims {n} bytes, "
                             f"file has {len(data)})")
    try:
        header = load_json(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{name}: not a safetensors file (header is not JSON)") from None
    except ValueError as e:   # nested too deep to parse safely
        raise ModelFileError(f"{name}: damaged safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name}: not a safetensors file (header is not a JSON object)")
    body = len(data) - 8 - n
    expected = max((_tensor_end(k, t, name) for k, t in header.items() if k != "__metadata__"),
                   default=0)
    if body < expected:
        raise ModelFileError(f"{name}: truncated model file ({body} bytes of tensor data, "
                             f"{expected} expected)")
    if body > expected:
        raise ModelFileError(f"{name}: {body - expected} unexpected bytes after the tensor data "
                             f"(damaged or appended to)")
    return header


def _tensor_end(key: str, entry: object, name: str) -> int:
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)):
        raise ModelFileError(f"{name}: damaged safetensors header (tensor '{key}' has no valid "
                             f"data_offsets)")
    return offsets[1]


def _nncli_metadata(header: dict, name: str) -> dict:
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{name}: damaged safetensors header (__metadata__ is not an "
                             f"object)")
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        raise ModelFileError(f"{name}: a safetensors file, but not an nncli model (no '"
                             f"{METADATA_KEY}' metadata); was it written by another program?")
    try:
        meta = load_json(raw)
    except json.JSONDecodeError as e:
        raise damaged(name, f"not JSON ({e})") from None
    except ValueError as e:
        raise damaged(name, str(e)) from None
    if not isinstance(meta, dict):
        raise damaged(name, f"not a JSON object, found {shown(meta)}")
    check_structure(meta, name)
    return meta


def _model_from(meta: dict, tensors: dict[str, np.ndarray], name: str) -> Model:
    # the structure's types are checked (check_structure); what they describe is checked here
    n_inputs, channels = meta["n_inputs"], meta.get("channels", 1)
    loss, logits = meta["loss"], meta["logits"]
    try:
        layers = parse_arch(meta["arch"])
        shapes = param_shapes(layers, n_inputs, channels)
    except (ValueError, ArchError) as e:
        raise damaged(name, f"'arch' {shown(meta['arch'])} on {n_inputs} inputs of {channels} "
                            f"channel(s): {e}") from None
    if loss not in LOSSES:
        raise ModelFileError(f"{name}: unknown loss '{loss}' in the metadata; this nncli knows "
                             f"{', '.join(LOSSES)}")
    expected = _expected_shapes(shapes, n_inputs)
    inputs = f"{n_inputs} inputs" + (f" of {channels} channels" if channels > 1 else "")
    for key, shape in expected.items():
        got = tensors.get(key)
        if got is None:
            raise ModelFileError(f"{name}: tensor '{key}' is missing for architecture "
                                 f"'{meta['arch']}'")
        if got.shape != shape or got.dtype != np.float32:
            raise ModelFileError(
                f"{name}: tensor '{key}' is {got.dtype}{list(got.shape)}, expected "
                f"float32{list(shape)} for architecture '{meta['arch']}' on {inputs}")
    n_out = layer_shapes(layers, n_inputs, channels)[-1].n_out
    check_fields(meta, Shape(n_inputs, n_out, len(layers), loss), name)
    params = np.empty(param_count(layers, n_inputs, channels), dtype=np.float32)
    known = {"format_version", "arch", "layers", "n_inputs", "channels", "loss", "logits",
             "classes", "feature_names", "target_names", "target_columns", "schema"}
    stage = _preprocessing_from(meta, tensors, n_inputs, n_out, name)
    model = Model(layers, n_inputs, loss, logits, params, stage,
                  classes=meta.get("classes"), feature_names=meta.get("feature_names"),
                  target_names=meta.get("target_names"),
                  target_columns=meta.get("target_columns"),
                  info={k: v for k, v in meta.items() if k not in known}, channels=channels)
    for i in range(len(layers)):
        kernel, bias = param_names(i)
        model.kernel(i)[...] = tensors[kernel]
        model.bias(i)[...] = tensors[bias]
    return model


def _preprocessing_from(meta: dict, tensors: dict[str, np.ndarray], n_inputs: int, n_out: int,
                        name: str) -> Preprocessing:
    """The stored preprocessing stage (the shapes of mean and std are already checked)."""
    schema = _schema_from(meta.get("schema"), n_inputs, name)
    target_mean, target_std = _target_scaling(tensors, n_out, name)
    return Preprocessing(tensors[MEAN].copy(), tensors[STD].copy(), schema, target_mean,
                         target_std)


def _schema_from(doc, n_inputs: int, name: str) -> Schema | None:
    """The stored column schema (None in files written before schemas), checked against the
    network's inputs."""
    if doc is None:
        return None
    try:
        schema = Schema.from_json(doc)
    except ValueError as e:
        raise damaged(name, f"'schema': {e}") from None
    if schema.n_features != n_inputs:
        raise ModelFileError(f"{name}: the column schema makes {schema.n_features} features, "
                             f"but the network takes {n_inputs}")
    return schema


def _target_scaling(tensors: dict[str, np.ndarray], n_out: int,
                    name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The targets' mean and std (mse models that standardise their targets), or Nones."""
    mean, std = tensors.get(TARGET_MEAN), tensors.get(TARGET_STD)
    if mean is None and std is None:
        return None, None
    for key, t in ((TARGET_MEAN, mean), (TARGET_STD, std)):
        if t is None or t.shape != (n_out,) or t.dtype != np.float32:
            got = "missing" if t is None else f"{t.dtype}{list(t.shape)}"
            raise ModelFileError(f"{name}: tensor '{key}' is {got}, expected float32[{n_out}]")
    return mean.copy(), std.copy()


def _expected_shapes(pshapes: list[tuple[tuple[int, ...], tuple[int, ...]]],
                     n_inputs: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (kernel, bias) in enumerate(pshapes):
        shapes.update(zip(param_names(i), (tuple(kernel), tuple(bias))))
    shapes[MEAN] = shapes[STD] = (n_inputs,)
    return shapes
