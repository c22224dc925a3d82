"""Validation keeps good rows and hands back bad ones with a reason; nothing is dropped silently."""

from __future__ import annotations

import pandas as pd

from pipelines.exchanges import binance
from schemas.ls_ratio import split_valid
from tests.conftest import load_payload


def _frame() -> pd.DataFrame:
    rows = load_payload("binance/global_long_short_account_ratio_5m.json")
    return binance.parse("global_account", rows, instrument="BTCUSDT", period="5m")


def test_real_rows_pass() -> None:
    kept, rejected = split_valid(_frame())
    assert len(kept) == 3 and rejected.empty


def test_negative_share_is_rejected_with_its_reason_and_value() -> None:
    frame = _frame()
    frame.loc[0, "long_share"] = -0.42
    kept, rejected = split_valid(frame)
    assert len(kept) + len(rejected) == len(frame)
    assert len(rejected) == 1
    reason = rejected["reason"].iloc[0]
    assert "long_share" in reason and "-0.42" in reason


def test_shares_that_do_not_sum_to_one_are_rejected() -> None:
    frame = _frame()
    frame.loc[1, "short_share"] = 0.2
    frame.loc[1, "ratio"] = frame.loc[1, "long_share"] / 0.2
    _, rejected = split_valid(frame)
    assert rejected["reason"].str.contains("is not 1").tolist() == [True]


def test_misaligned_timestamp_is_rejected() -> None:
    frame = _frame()
    frame.loc[2, "ts"] = frame.loc[2, "ts"] + pd.Timedelta(seconds=1)
    _, rejected = split_valid(frame)
    assert rejected["reason"].tolist() == ["ts not aligned to the period"]


def test_identical_twins_collapse_but_conflicting_twins_are_both_rejected() -> None:
    frame = _frame()
    twins = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    kept, rejected = split_valid(twins)
    assert len(kept) == 3 and rejected.empty

    conflict = frame.iloc[[0]].assign(long_share=0.6, short_share=0.4, ratio=1.5)
    kept, rejected = split_valid(pd.concat([frame, conflict], ignore_index=True))
    assert len(kept) == 2 and len(rejected) == 2
    assert rejected["reason"].str.contains("conflicting values").all()


def test_zero_short_share_gives_null_ratio_not_infinity() -> None:
    frame = binance.parse(
        "global_account",
        [
            {
                "longShortRatio": "0",
                "longAccount": "1.0000",
                "shortAccount": "0.0000",
                "timestamp": 1602989400000,
            }
        ],
        instrument="BTCUSDT",
        period="5m",
    )
    kept, rejected = split_valid(frame)
    assert rejected.empty and kept["ratio"].isna().all()
