"""The CSV table of the scikit-learn runtime: reading it, choosing the target, the kind of each
feature column; and the rows of an inference request, typed like the training data.

pandas and NumPy are imported inside the functions: the runtime's plugin module imports this one.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from aijobs import datapaths, errors

TARGET_FALLBACKS = ("label", "target")
MAX_CLASSES_FOR_INT_TARGET = 20


def read_csv(data_path: Path) -> Any:
    import pandas as pd

    name = data_path.name
    if data_path.is_dir():
        raise errors.JobFailure(
            f"data_path {name!r} is a directory; the sklearn runtime needs a CSV file"
        )
    try:
        frame = pd.read_csv(data_path, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise errors.JobFailure(f"data file {name!r} is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise errors.JobFailure(f"data file {name!r} is not a readable CSV: {exc}") from exc
    except OSError as exc:
        raise errors.JobFailure(f"data file {name!r} cannot be read: {exc.strerror}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise errors.JobFailure(f"data file {name!r} has a header but no rows")
    if len(frame.columns) < 2:
        raise errors.JobFailure(
            f"data file {name!r} has {len(frame.columns)} column; it needs at least one "
            "feature column and a target column"
        )
    if all(_is_number(c) for c in frame.columns):
        raise errors.JobFailure(
            f"data file {name!r} has no header row (its first row is all numbers); "
            "add a header naming the columns"
        )
    return frame


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def pick_target(frame: Any, target_column: Any) -> str:
    columns = list(frame.columns)
    if target_column is not None:
        if not isinstance(target_column, str) or target_column not in columns:
            raise errors.JobFailure(
                f"target_column {target_column!r} is not a column of the CSV; columns: "
                + ", ".join(columns)
            )
        return target_column
    for name in TARGET_FALLBACKS:
        if name in columns:
            return name
    return str(columns[-1])


def target_values(series: Any, model_type: str) -> tuple[str, Any]:
    """('classification'|'regression', y) as the target's values decide."""
    import numpy as np
    import pandas as pd

    name = series.name
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        task = "classification"
        y = series.astype(bool) if pd.api.types.is_bool_dtype(series) else series.astype(str)
    else:
        values = series.to_numpy(dtype=float)
        distinct = np.unique(values)
        integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
        few = len(distinct) <= MAX_CLASSES_FOR_INT_TARGET and len(distinct) < 0.5 * len(values)
        if integral and few:
            task, y = "classification", series.astype("int64")
        else:
            task, y = "regression", series.astype(float)
    if task == "classification" and y.nunique() < 2:
        raise errors.JobFailure(
            f"target column {name!r} has a single class ({y.iloc[0]!r}); "
            "classification needs at least two"
        )
    if task == "regression" and model_type == "logistic_regression":
        raise errors.JobFailure(
            f"logistic regression needs a categorical target, but {name!r} is continuous "
            "(use random_forest or svm for regression)"
        )
    return task, y.to_numpy()


def feature_kinds(features: Any) -> dict[str, str]:
    """Each feature column: 'numeric', 'categorical', or 'text' (free text -> TF-IDF)."""
    import pandas as pd

    kinds: dict[str, str] = {}
    for name in features.columns:
        col = features[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            kinds[name] = "numeric"
            continue
        values = col.dropna().astype(str)
        words = values.str.split().str.len().mean() if len(values) else 0.0
        unique = values.nunique() / max(len(values), 1)
        kinds[name] = "text" if words >= 3 and unique > 0.5 else "categorical"
    return kinds


def prepare(features: Any, kinds: dict[str, str]) -> Any:
    """Columns cast the way training saw them: floats, strings with NaN kept, or text with ''."""
    import numpy as np

    out = features.copy()
    for name, kind in kinds.items():
        col = out[name]
        if kind == "numeric":
            out[name] = col.astype(float)
        else:
            cast = col.astype(object).map(lambda v: v if _is_missing(v) else str(v))
            if kind == "text":
                cast = cast.map(lambda v: "" if _is_missing(v) else v)
            else:
                cast = cast.map(lambda v: np.nan if _is_missing(v) else v)
            out[name] = cast.astype(object)
    return out


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ------------------------------------------------------------------------------ inference input


def input_frame(input_data: str, meta: dict[str, Any], data_roots: list[Path]) -> Any:
    import pandas as pd

    names: list[str] = list(meta["feature_names"])
    kinds: dict[str, str] = meta["feature_kinds"]
    text = input_data.strip() if isinstance(input_data, str) else ""
    if not text:
        raise errors.JobFailure("input_data is empty")
    if text[0] in "[{":
        rows = _json_rows(text, names)
    elif "\n" not in text and text.lower().endswith(".csv") and text.count(",") == 0:
        rows = _csv_file_rows(text, names, meta.get("target_column"), data_roots)
    else:
        rows = _text_rows(text, names, kinds)
    typed = [_typed_row(i, row, names, kinds, len(rows)) for i, row in enumerate(rows)]
    frame = pd.DataFrame(typed)
    return prepare(frame.reindex(columns=names), kinds)


def _expected(names: list[str]) -> str:
    plural = "" if len(names) == 1 else "s"
    return f"expected {len(names)} feature{plural} ({', '.join(names)})"


def _json_rows(text: str, names: list[str]) -> list[list[Any]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise errors.JobFailure(f"input_data is not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise errors.JobFailure("input_data JSON must be a non-empty list or an object")
    if not any(isinstance(item, list | dict) for item in data):
        # a flat list is one row, or for a one-feature model one value per row
        data = [[item] for item in data] if len(names) == 1 else [data]
    rows: list[list[Any]] = []
    for i, item in enumerate(data, 1):
        if isinstance(item, list):
            rows.append(item)
        elif isinstance(item, dict):
            unknown = sorted(set(item) - set(names))
            absent = [n for n in names if n not in item]
            if unknown or absent:
                raise errors.JobFailure(
                    f"row {i}: {_expected(names)}"
                    + (f"; missing: {', '.join(absent)}" if absent else "")
                    + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "")
                )
            rows.append([item[n] for n in names])
        else:
            raise errors.JobFailure(f"row {i}: expected a list of values or an object")
    return rows


def _text_rows(text: str, names: list[str], kinds: dict[str, str]) -> list[list[Any]]:
    """CSV rows split by newlines or ';' - except for one free-text feature: a line each."""
    if len(names) == 1 and kinds[names[0]] == "text":
        return [[line.strip()] for line in text.splitlines() if line.strip()]
    lines = [line for line in text.replace(";", "\n").splitlines() if line.strip()]
    rows = [[cell.strip() for cell in row] for row in csv.reader(lines)]
    if rows and rows[0] == names:  # a header row naming the features
        rows = rows[1:]
    if not rows:
        raise errors.JobFailure("input_data holds no rows")
    return rows


def _csv_file_rows(
    text: str, names: list[str], target: Any, data_roots: list[Path]
) -> list[list[Any]]:
    import pandas as pd

    try:
        path = datapaths.resolve_data_path(text, data_roots)
        frame = pd.read_csv(path, skipinitialspace=True)
    except errors.AIJobsError as exc:
        raise errors.JobFailure(exc.detail) from exc
    except (OSError, ValueError) as exc:
        raise errors.JobFailure(f"cannot read input CSV {text!r}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.drop(columns=[target], errors="ignore")
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise errors.JobFailure(f"input CSV lacks feature columns: {', '.join(absent)}")
    rows: list[list[Any]] = frame[names].astype(object).values.tolist()
    return rows


def _typed_row(
    index: int, row: list[Any], names: list[str], kinds: dict[str, str], total: int
) -> dict[str, Any]:
    where = f"row {index + 1}: " if total > 1 else ""
    if len(row) != len(names):
        raise errors.JobFailure(f"{where}{_expected(names)}, got {len(row)}")
    out: dict[str, Any] = {}
    for name, value in zip(names, row, strict=True):
        if kinds[name] != "numeric":
            out[name] = None if value is None or value == "" else value
            continue
        if value is None or (isinstance(value, str) and value.lower() in ("", "nan", "na", "null")):
            out[name] = math.nan
            continue
        try:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError
            out[name] = float(value)
        except ValueError:
            raise errors.JobFailure(
                f"{where}feature {name!r} must be a number, got {value!r}"
            ) from None
    return out
