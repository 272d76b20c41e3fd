"""NPZ and NPY files: loaded without pickle, their claimed sizes checked before anything is
allocated, converted to finite float32."""

from __future__ import annotations

import os
import typing
import zipfile

import numpy as np

from nncli.data import cells
from nncli.data.table import Table
from nncli.data.text import open_binary
from nncli.errors import DataError


def read_npz(path: str, want_y: bool, finite: bool = True,
             members: tuple[str, ...] = ()) -> Table:
    """Arrays X (checked, float32) and y (as stored, if present and wanted) of an NPZ file,
    and those of ``members`` it holds, as stored, in ``Table.members``."""
    with open_binary(path) as f:
        _check_npz_sizes(f, path)
        try:
            archive = np.load(f, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - see _load_error
            raise _load_error(path, "NPZ", exc) from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError("not an NPZ archive (it holds a single array: name it .npy)", path)
        with archive:
            names = list(archive.files)
            if "X" not in names:
                raise DataError(f"NPZ file has no array 'X' (found: {', '.join(names) or 'none'})",
                                path)
            X = _load_member(archive, "X", path)
            y = _load_member(archive, "y", path) if want_y and "y" in names else None
            more = {name: _load_member(archive, name, path) for name in members
                    if name in names}
    X = _checked_features(X, "array 'X'", path, finite)
    return Table(source=path, kind="npz", n_columns=X.shape[1], X=X, y=y, array_names=names,
                 members=more)


def read_npy(path: str) -> Table:
    """The single feature array of an NPY file, checked and as float32 (NaN and infinity are
    kept: missing values and their policy are the caller's)."""
    X = _checked_features(_load_npy(path, mmap=False), "the array", path, finite=False)
    return Table(source=path, kind="npy", n_columns=X.shape[1], X=X)


def _load_npy(path: str, mmap: bool) -> np.ndarray:
    """The array of an NPY file (memory-mapped when asked and possible), its claimed size
    checked against the file's before anything is allocated; never unpickles."""
    with open_binary(path) as f:
        _check_npy_size(f, path)
        array = None
        if mmap:
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception:  # noqa: BLE001 - e.g. an empty array cannot be mapped: read it
                array = None
        if array is None:
            try:
                array = np.load(f, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 - see _load_error
                raise _load_error(path, "NPY", exc) from exc
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError("not an NPY array (it is an archive: name it .npz)", path)
    return array


# zlib cannot shrink data by more than about 1032:1; a member claiming more is a lie.
_MAX_DEFLATE_RATIO = 1100


def _check_npz_sizes(f: typing.BinaryIO, path: str) -> None:
    """Refuse an NPZ member whose header claims more data than the member holds.

    np.load allocates the array its header describes before reading any data, so a crafted
    header (shape (10**12, 784)) would exhaust memory; this reads each member's header through
    zipfile and compares the claim with the member's size, before anything is allocated.
    Files that are not readable zip archives are left for np.load to report.
    """
    try:
        archive = zipfile.ZipFile(f)
    except Exception:  # noqa: BLE001 - BadZipFile, NotImplementedError (a damaged version
        f.seek(0)      # field), ...: not a readable zip here; np.load reports it
        return
    try:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = f"array '{info.filename[:-4]}' of the NPZ"
            if (info.compress_type != zipfile.ZIP_STORED
                    and info.file_size > info.compress_size * _MAX_DEFLATE_RATIO + 1024):
                raise DataError(f"{name} claims {info.file_size} bytes uncompressed from "
                                f"{info.compress_size} compressed: a damaged or crafted file",
                                path)
            try:
                with archive.open(info) as member:
                    claim = _npy_header_claim(member)
            except DataError:
                raise
            except Exception:  # noqa: BLE001 - unreadable here: np.load reports it
                continue
            if claim is not None:
                _check_claim(claim, info.file_size, name, path)
    finally:
        archive.close()
        f.seek(0)


def _check_npy_size(f: typing.BinaryIO, path: str) -> None:
    """Refuse an NPY file whose header claims more data than the file holds (see above)."""
    try:
        size = os.fstat(f.fileno()).st_size
        claim = _npy_header_claim(f)
    except Exception:  # noqa: BLE001 - unreadable here: np.load reports it
        claim = None
    f.seek(0)
    if claim is not None:
        _check_claim(claim, size, "NPY file", path)


def _npy_header_claim(f: typing.BinaryIO) -> tuple[tuple[int, ...], int, int] | None:
    """(shape, bytes of data claimed, header length) of an .npy stream, or None if it is not
    one. Python integers: a product of absurd dimensions cannot overflow."""
    fmt = np.lib.format
    start = f.tell()
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:
        return None
    count = 1
    for d in shape:
        count *= int(d)
    return tuple(int(d) for d in shape), count * dtype.itemsize, f.tell() - start


def _check_claim(claim: tuple[tuple[int, ...], int, int], size: int, name: str,
                 path: str) -> None:
    shape, wanted, header = claim
    if wanted > size - header:
        raise DataError(f"{name} claims shape {shape} ({wanted} bytes of data), but holds only "
                        f"{max(size - header, 0)} bytes: a damaged or crafted file", path)


def _load_member(archive: typing.Any, name: str, path: str) -> np.ndarray:
    """One array of an open NPZ archive."""
    try:
        return archive[name]
    except Exception as exc:  # noqa: BLE001 - see _load_error
        raise _load_error(path, f"array '{name}' of the NPZ", exc) from exc


def _load_error(path: str, what: str, exc: Exception) -> DataError:
    """A DataError for a NumPy file that does not load.

    np.load, zipfile and zlib raise a wide, undocumented range of exceptions (ValueError,
    OSError, EOFError, BadZipFile, zlib.error, ...) for damaged or foreign files; all of them
    mean the same thing to a user, so they are caught broadly.
    """
    reason = str(exc) or type(exc).__name__
    if "Object arrays" in reason:
        reason = "it holds Python objects, which are never unpickled; save numeric arrays"
    elif "pickle" in reason:
        # np.load falls back to pickle for anything that is neither a zip nor an .npy array.
        reason = "it is not a NumPy file"
    return DataError(f"cannot read the {what} file: {reason}", path)


def _checked_features(X: np.ndarray, what: str, path: str, finite: bool = True) -> np.ndarray:
    """A 2-D numeric array as C-contiguous float32 with every value finite (unless not
    ``finite``: then NaN and infinity are kept, for the caller to drop)."""
    if X.ndim != 2:
        raise DataError(f"{what} must be 2-D (rows x features), found shape {X.shape}", path)
    return finite_float32(X, what, path, finite=finite)


def finite_float32(A: np.ndarray, what: str, path: str, row_offset: int = 0,
                    finite: bool = True) -> np.ndarray:
    """``A`` (numeric) as C-contiguous float32, refusing NaN/inf with their 0-based position
    (rows counted from ``row_offset``, for a block of a larger array)."""
    if A.dtype.kind not in "biuf":
        raise DataError(f"{what} must hold numbers, found dtype {A.dtype}", path)
    with np.errstate(over="ignore"):  # float64 beyond float32 range is reported below
        out = np.ascontiguousarray(A, dtype=np.float32)
    if finite and out.size and not np.isfinite(out).all():
        position = tuple(int(v) for v in np.argwhere(~np.isfinite(out))[0])
        at = (f"row {position[0] + row_offset}"
              + (f", column {position[1]}" if len(position) > 1 else ""))
        original = A[position]
        if np.isnan(original):
            message = f"NaN in {what} at {at} (0-based)"
        elif np.isfinite(original):
            message = f"value {original} is too large for float32 in {what} at {at} (0-based)"
        else:
            message = f"infinite value in {what} at {at} (0-based)"
        raise DataError(message, path)
    return out


def npy_blocks(path: str, n_features: int,
                block_rows: int | None) -> typing.Iterator[np.ndarray]:
    """Blocks of an NPY feature array, memory-mapped rather than read whole."""
    array = _load_npy(path, mmap=True)
    if array.ndim != 2:
        raise DataError(f"the array must be 2-D (rows x features), found shape {array.shape}",
                        path)
    if array.shape[1] != n_features:
        raise DataError(f"expected {n_features} feature columns, found {array.shape[1]}", path)
    step = block_rows or max(1, cells.CELLS_PER_CHUNK // max(1, n_features))
    for lo in range(0, max(len(array), 1), step):
        yield finite_float32(array[lo:lo + step], "the array", path, row_offset=lo,
                             finite=False)
