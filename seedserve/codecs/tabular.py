"""Tables: declared columns with types; one record, a list of records, or
columns (``{"col": [values...]}``) -> a float32 matrix ``[N, columns]``.

Categories become their index in the declared vocabulary; missing values
follow each column's policy (by default an error naming the column).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from seedserve.codecs._common import InputBase, Spec
from seedserve.codecs.kind import Form, Kind
from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["Column", "TabularInput", "decode_tabular", "sample_tabular", "KIND"]

Scalar = float | int | bool | str


class Column(Spec):
    """One column: its type, and what to do when a value is missing."""

    name: str = Field(min_length=1, max_length=128)
    type: Literal["float", "int", "bool", "category"] = "float"
    vocabulary: list[str | int] | None = Field(default=None, max_length=100_000)
    missing: Literal["error", "zero", "default"] = "error"
    default: Scalar | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if (self.type == "category") != (self.vocabulary is not None):
            raise ValueError(f"column {self.name!r}: a vocabulary goes with type 'category' (and only with it)")
        if self.missing == "default" and self.default is None:
            raise ValueError(f"column {self.name!r}: missing='default' needs a default value")
        return self

    @cached_property
    def index_of(self) -> dict[str | int, int]:
        """Category -> its index (the first, if listed twice), built once per spec."""
        index: dict[str | int, int] = {}
        for i, value in enumerate(self.vocabulary or []):
            index.setdefault(value, i)
        return index


class TabularInput(InputBase):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["tabular"] = "tabular"
    columns: list[Column] = Field(min_length=1, max_length=4096)
    max_rows: int = Field(default=10_000, ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _unique_columns(self) -> TabularInput:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"column names must be unique: {names}")
        return self


_ABSENT: Any = object()  # a cell whose column the record leaves out


def decode_tabular(value: Any, spec: TabularInput) -> np.ndarray:
    records = _records(value, spec)
    if set(map(type, records)) != {dict}:
        row = next(i for i, r in enumerate(records) if not isinstance(r, dict))
        raise InvalidInput(f"input {spec.name!r}: row {row} is not an object of column values", input=spec.name)
    matrix = np.empty((len(records), len(spec.columns)), dtype=np.float32)
    present = 0
    for col, column in enumerate(spec.columns):
        name = column.name
        cells = [record.get(name, _ABSENT) for record in records]
        present += len(cells) - cells.count(_ABSENT)
        fast = _numeric_column(cells, column)
        if fast is not None:
            matrix[:, col] = fast
        else:  # the careful path: converts each cell and names the first bad one
            matrix[:, col] = [_cell(cell, column, spec.name, row) for row, cell in enumerate(cells)]
    if sum(map(len, records)) != present:  # some record has a key that is no column
        _name_the_unknown_column(records, spec)
    return matrix


def _name_the_unknown_column(records: list[dict[str, Any]], spec: TabularInput) -> None:
    declared = {c.name for c in spec.columns}
    for row, record in enumerate(records):
        if record.keys() - declared:
            unknown = sorted(record.keys() - declared)[0]
            raise InvalidInput(
                f"input {spec.name!r}: unknown column {unknown!r} in row {row}; columns are {sorted(declared)}",
                input=spec.name, column=unknown,
            )


def _numeric_column(cells: list[Any], column: Column) -> np.ndarray | None:
    """A float/int column converted at once when every cell is a plain finite
    number of the right type; ``None`` sends it down the careful path."""
    if column.type not in ("float", "int") or not set(map(type, cells)) <= {int, float}:
        return None
    array = np.asarray(cells, dtype=np.float64)
    if not np.isfinite(array).all() or (column.type == "int" and (array != np.round(array)).any()):
        return None
    return array


def _records(value: Any, spec: TabularInput) -> list[Any]:
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        lengths = {len(v) for v in value.values()}
        if len(lengths) != 1:
            raise InvalidInput(f"input {spec.name!r}: columns have different lengths "
                               f"{sorted(lengths)}", input=spec.name)
        rows = lengths.pop()
        _check_rows(rows, spec)
        return [{k: v[i] for k, v in value.items()} for i in range(rows)]
    records = [value] if isinstance(value, dict) else value
    if not isinstance(records, list) or not records:
        raise InvalidInput(
            f"input {spec.name!r}: expected a record, a list of records, or columns of equal length", input=spec.name
        )
    _check_rows(len(records), spec)
    return records


def _check_rows(rows: int, spec: TabularInput) -> None:
    if rows > spec.max_rows:
        raise InputTooLarge(
            f"input {spec.name!r}: {rows:,} rows exceeds the limit of {spec.max_rows:,}; send fewer or raise max_rows",
            input=spec.name, limit=spec.max_rows, got=rows,
        )


def _cell(value: Any, column: Column, name: str, row: int) -> float:
    if value is None or value is _ABSENT or (isinstance(value, float) and math.isnan(value)):
        if column.missing == "error":
            raise InvalidInput(
                f"input {name!r}: column {column.name!r} is missing in row {row}; "
                "send a value or set its missing policy in the manifest",
                input=name, column=column.name,
            )
        value = 0 if column.missing == "zero" else column.default
        if column.type == "category" and column.missing == "zero":
            return 0.0
    try:
        return _convert(value, column)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"input {name!r}: column {column.name!r} in row {row}: {exc}", input=name, column=column.name
        ) from None


def _convert(value: Any, column: Column) -> float:
    if column.type == "category":
        index = column.index_of.get(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if index is None:
            raise ValueError(f"{value!r} is not in its vocabulary {(column.vocabulary or [])[:10]}")
        return float(index)
    if isinstance(value, bool):
        if column.type != "bool":
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if column.type == "bool":
        raise TypeError(f"expected true or false, got {value!r}")
    if not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__} {str(value)[:40]!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    if column.type == "int" and value != int(value):
        raise ValueError(f"expected an integer, got {value!r}")
    return float(value)


def sample_tabular(spec: TabularInput, batch: int = 1) -> np.ndarray:
    return np.zeros((batch, len(spec.columns)), dtype=np.float32)


def _example(spec: TabularInput) -> dict[str, Any]:
    first: dict[str, Any] = {"float": 0.0, "int": 0, "bool": False}
    return {c.name: first[c.type] if c.type in first else (c.vocabulary or ["a"])[0] for c in spec.columns}


KIND = Kind(
    name="tabular", spec=TabularInput, decoder="seedserve.codecs.tabular:decode_tabular",
    sampler="seedserve.codecs.tabular:sample_tabular", wire="json",
    doc="a record {column: value} or a list of records", form=Form("columns", example=_example),
)
