"""The `ls_ratio` contract as a pandera schema, and the split of a frame into kept and rejected.

Rows that fail are never dropped silently: `split_valid` returns them with the reason, and the
warehouse stores them in `ls_ratio_rejected`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from pipelines.config import METRICS, PERIOD_MS

KEY = ["exchange", "instrument", "metric", "period", "ts"]
# Binance rounds each share to 4 decimals, so a sum can miss 1 by a few 1e-4.
SHARE_SUM_TOLERANCE = 0.005
RATIO_RELATIVE_TOLERANCE = 1e-9


def _share_sum_ok(frame: pd.DataFrame) -> pd.Series:
    """long + short (+ locked, where an exchange publishes locked accounts) is 1."""
    locked = frame["locked_share"].fillna(0.0)
    total = frame["long_share"] + frame["short_share"] + locked
    both = frame["long_share"].notna() & frame["short_share"].notna()
    return ~both | ((total - 1.0).abs() <= SHARE_SUM_TOLERANCE)


def _ratio_matches_shares(frame: pd.DataFrame) -> pd.Series:
    expected = frame["long_share"] / frame["short_share"]
    comparable = frame["ratio"].notna() & expected.notna() & np.isfinite(expected)
    close = (frame["ratio"] - expected).abs() <= RATIO_RELATIVE_TOLERANCE * expected.abs()
    return ~comparable | close


def _ts_aligned(frame: pd.DataFrame) -> pd.Series:
    step = frame["period"].map(PERIOD_MS)
    epoch_ms = frame["ts"].astype("int64") // 1_000_000
    return step.notna() & (epoch_ms % step.fillna(1).astype("int64") == 0)


def _share(name: str) -> pa.Column:
    return pa.Column(
        float,
        checks=pa.Check.in_range(0.0, 1.0, error=f"{name} outside 0..1"),
        nullable=True,
    )


LS_RATIO_SCHEMA = pa.DataFrameSchema(
    {
        "exchange": pa.Column(str, pa.Check.str_matches(r"^[a-z]+$")),
        "coin": pa.Column(str, pa.Check.str_matches(r"^[A-Z0-9]+$", error="coin not upper case")),
        "instrument": pa.Column(str, pa.Check.str_length(1, 40)),
        "metric": pa.Column(str, pa.Check.isin(METRICS)),
        "period": pa.Column(str, pa.Check.isin(list(PERIOD_MS))),
        "ts": pa.Column("datetime64[ns]", nullable=False),
        "long_share": _share("long_share"),
        "short_share": _share("short_share"),
        "ratio": pa.Column(
            float,
            checks=[
                pa.Check.gt(0.0, error="ratio not positive"),
                pa.Check(np.isfinite, element_wise=False, error="ratio not finite"),
            ],
            nullable=True,
        ),
        "source_ratio": pa.Column(float, nullable=True),
        "source_ts": pa.Column("int64"),
        "locked_share": _share("locked_share"),
        "derived_from": pa.Column(str, pa.Check.isin(list(PERIOD_MS)), nullable=True),
    },
    checks=[
        pa.Check(_share_sum_ok, error="long_share + short_share is not 1"),
        pa.Check(_ratio_matches_shares, error="ratio inconsistent with shares"),
        pa.Check(_ts_aligned, error="ts not aligned to the period"),
    ],
    unique=KEY,
    report_duplicates="all",
    strict=False,
    coerce=True,
    name="ls_ratio",
)


def split_valid(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate; return (rows that pass, rows that fail with a `reason` column)."""
    # Identical twins carry no conflict: keep one. Conflicting twins fail the uniqueness check.
    frame = frame.drop_duplicates().reset_index(drop=True)
    try:
        return LS_RATIO_SCHEMA.validate(frame, lazy=True), frame.iloc[0:0].assign(reason="")
    except SchemaErrors as errors:
        reasons = _reasons_by_row(errors.failure_cases, len(frame))
    bad = reasons.index
    rejected = frame.loc[bad].assign(reason=reasons)
    kept = frame.drop(index=bad)
    # The rest must now pass; if a frame-level failure had no row index, this raises loudly.
    return LS_RATIO_SCHEMA.validate(kept, lazy=True), rejected


def _reasons_by_row(cases: pd.DataFrame, n_rows: int) -> pd.Series:
    cases = cases[cases["index"].notna()]
    if cases.empty and n_rows:
        raise ValueError("ls_ratio frame failed validation without a row index")
    described = cases.assign(
        index=cases["index"].astype(int),
        why=cases.apply(_describe_case, axis=1),
    )
    return described.groupby("index")["why"].agg(lambda w: "; ".join(sorted(set(w))))


def _describe_case(case: pd.Series) -> str:
    check = str(case["check"])
    if "unique" in check:
        return "conflicting values for one key " + "/".join(KEY)
    if case["schema_context"] == "Column":
        return f"{case['column']}: {check} (value {case['failure_case']!r})"
    return check
