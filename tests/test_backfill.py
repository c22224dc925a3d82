"""Range fetches: a partition run walks each series once over the incomplete days around it."""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, materialize

from assets.ingest import SINCE_TAG, ingest_exchange_day
from pipelines.backfill import Bounds, FetchPlan, Needs, SeriesKey, parse_depth, plan_fetch
from pipelines.partitions import FIRST_DAY, partition_key
from pipelines.resources import ExchangeAccess, PipelineSettings
from pipelines.simulator import SimulatorThread
from tests.partition_runs import QUIET, SCALE, point_at

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
BTC_1D = SeriesKey("global_account", "BTC", "1d")
ETH_1D = SeriesKey("global_account", "ETH", "1d")


def needs(
    listed: dict[str, date | None] | None = None,
    depth: dict[str, int | None] | None = None,
    reach_days: int | None = None,
) -> Needs:
    reach = None if reach_days is None else timedelta(days=reach_days)
    return Needs(
        listed=listed or {"BTC": date(2019, 9, 25), "ETH": date(2019, 11, 27)},
        depth_days=depth or {},
        reach=lambda _dataset, _period: reach,
        now=NOW,
    )


def done_on(*days: date, series: tuple[SeriesKey, ...] = (BTC_1D, ETH_1D)) -> object:
    marks = {(s.dataset, s.coin, s.period, d) for s in series for d in days}
    return lambda _first, _last: marks


def days_back(n: int) -> date:
    return TODAY - timedelta(days=n)


def test_a_run_fetches_the_incomplete_days_around_its_own_in_one_pass() -> None:
    done = done_on(*(days_back(n) for n in range(10, 20)))
    plan = plan_fetch(days_back(5), [BTC_1D, ETH_1D], needs(), Bounds(days_back(19), TODAY), done)
    assert (plan.first, plan.last) == (days_back(9), TODAY)
    assert plan.starts == {BTC_1D: days_back(9), ETH_1D: days_back(9)}


def test_within_a_backfill_a_complete_day_fetches_nothing() -> None:
    done = done_on(*(days_back(n) for n in range(1, 20)))
    plan = plan_fetch(days_back(5), [BTC_1D], needs(), Bounds(days_back(19), TODAY), done)
    assert plan == FetchPlan(days_back(5), days_back(5), days_back(5))


def test_a_complete_day_materialized_on_its_own_is_fetched_again_alone() -> None:
    done = done_on(*(days_back(n) for n in range(1, 20)))
    plan = plan_fetch(days_back(5), [BTC_1D], needs(), None, done)
    assert (plan.first, plan.last, dict(plan.starts)) == (
        days_back(5),
        days_back(5),
        {BTC_1D: days_back(5)},
    )


def test_the_stretch_reaches_back_to_what_is_missing() -> None:
    done = done_on(*(days_back(n) for n in range(40, 60)))
    plan = plan_fetch(TODAY, [BTC_1D], needs(), Bounds(days_back(1000), TODAY), done)
    assert (plan.first, plan.last) == (days_back(39), TODAY)


def test_a_run_without_bounds_fetches_its_own_day() -> None:
    plan = plan_fetch(days_back(3), [BTC_1D, ETH_1D], needs(), None, done_on())
    assert (plan.first, plan.last) == (days_back(3), days_back(3))
    assert set(plan.starts) == {BTC_1D, ETH_1D}


def test_each_series_starts_at_its_own_first_missing_day() -> None:
    done = done_on(*(days_back(n) for n in range(1, 31)), series=(BTC_1D,))
    plan = plan_fetch(TODAY, [BTC_1D, ETH_1D], needs(), Bounds(days_back(30), TODAY), done)
    assert plan.starts == {BTC_1D: TODAY, ETH_1D: days_back(30)}


def test_days_before_listing_beyond_depth_or_reach_need_no_fetch() -> None:
    listed = {"BTC": days_back(3), "ETH": None}
    plan = plan_fetch(
        TODAY, [BTC_1D], needs(listed=listed), Bounds(days_back(30), TODAY), done_on()
    )
    assert plan.starts == {BTC_1D: days_back(3)}
    everything = Bounds(days_back(1000), TODAY)
    deep = plan_fetch(TODAY, [BTC_1D], needs(depth={"1d": 7}), everything, done_on())
    assert deep.starts == {BTC_1D: days_back(6)}
    # Beyond the reach nothing is asked, yet those days do not end the stretch: they are
    # complete by definition.
    near = plan_fetch(days_back(2), [BTC_1D], needs(reach_days=5), everything, done_on())
    assert near.starts == {BTC_1D: days_back(5)} and near.last == TODAY


def test_a_backfill_of_scattered_days_stays_on_its_days() -> None:
    chosen = frozenset({days_back(10), days_back(9), days_back(3)})
    plan = plan_fetch(
        days_back(10), [BTC_1D], needs(), Bounds(days_back(10), days_back(3), chosen), done_on()
    )
    assert (plan.first, plan.last) == (days_back(10), days_back(9))


@pytest.mark.parametrize(("text", "expected"), [("", {}), ("1h=30, 4h=120", {"1h": 30, "4h": 120})])
def test_depth_reads_period_days_pairs(text: str, expected: dict[str, int]) -> None:
    assert parse_depth(text) == expected


def test_depth_refuses_what_is_not_period_days() -> None:
    with pytest.raises(ValueError, match="'1h' is not PERIOD=DAYS"):
        parse_depth("1h")


# ---------------------------------------------------------------------------------------------
# Against the simulator, as Dagster runs it

SPAN = 20  # days


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    exchanges = ("bybit", "bitget", "gate")
    with SimulatorThread(port=0, rate_limit_scale=SCALE, exchanges=exchanges) as sim:
        yield sim


@pytest.fixture
def env(simulator: SimulatorThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    point_at(monkeypatch, simulator)
    universe = tmp_path / "universe.yaml"
    universe.write_text("coins: [BTC, ETH, SOL]\n")
    monkeypatch.setenv("LSR_UNIVERSE", str(universe))
    return tmp_path / "lsr.duckdb"


def run(
    warehouse: Path,
    exchange: str,
    day: date,
    instance: DagsterInstance,
    *,
    since: date | None = None,
    periods: tuple[str, ...] = ("1h", "1d"),
) -> bool:
    settings = PipelineSettings(warehouse=str(warehouse), periods=list(periods))
    since = since or datetime.now(UTC).date() - timedelta(days=SPAN)
    result = materialize(
        [ingest_exchange_day],
        partition_key=str(partition_key(day, exchange)),
        resources={"settings": settings, "exchanges": ExchangeAccess(rate_limit_scale=SCALE)},
        instance=instance,
        run_config=QUIET,
        tags={SINCE_TAG: since.isoformat()},
        raise_on_error=False,
    )
    return bool(result.success)


def requests(sim: SimulatorThread, exchange: str, path: str) -> int:
    return int(sim.stats.requests[(exchange, path)])


def test_one_run_fills_the_whole_range_and_dagster_shows_every_day(
    simulator: SimulatorThread, env: Path
) -> None:
    today = datetime.now(UTC).date()
    before = requests(simulator, "bybit", "/v5/market/account-ratio")
    with DagsterInstance.ephemeral() as instance:
        assert run(env, "bybit", today, instance)
        asked = requests(simulator, "bybit", "/v5/market/account-ratio") - before
        # 3 coins x (1d: 21 rows, one page; 1h: up to 21 x 24 = 504 rows, one or two pages of
        # 500, by the time of day). Day by day it would be 3 x 2 x 21 = 126 requests.
        assert 3 * 2 <= asked <= 3 * 3
        shown = instance.get_materialized_partitions(AssetKey("ls_ratio"))
        expected = {str(partition_key(today - timedelta(days=n), "bybit")) for n in range(SPAN + 1)}
        assert expected <= set(shown)
    with duckdb.connect(str(env), read_only=True) as conn:
        log = conn.execute(
            "SELECT day, sum(rows) AS rows, count(*) FILTER (WHERE status <> 'ok') AS not_ok "
            "FROM partition_log WHERE dataset = 'global_account' GROUP BY day ORDER BY day"
        ).df()
        stored = conn.execute(
            "SELECT ts::DATE AS day, count(*) AS rows FROM ls_ratio GROUP BY 1 ORDER BY 1"
        ).df()
    assert len(log) == SPAN + 1 and (log["not_ok"] == 0).all()
    assert log["rows"].tolist() == stored["rows"].tolist(), "the ledger agrees with the rows"


def test_the_other_runs_of_the_backfill_fetch_nothing_and_change_nothing(
    simulator: SimulatorThread, env: Path
) -> None:
    today = datetime.now(UTC).date()
    with DagsterInstance.ephemeral() as instance:
        assert run(env, "bybit", today, instance)
        with duckdb.connect(str(env), read_only=True) as conn:
            before = conn.execute("SELECT * FROM ls_ratio ORDER BY ALL").df()
        asked = requests(simulator, "bybit", "/v5/market/account-ratio")
        for n in (SPAN, 10, 1):
            assert run(env, "bybit", today - timedelta(days=n), instance)
        assert requests(simulator, "bybit", "/v5/market/account-ratio") == asked
        # The skipped run still shows the rows its day holds, not the nothing it fetched.
        key = str(partition_key(today - timedelta(days=10), "bybit"))
        latest = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("ls_ratio"), asset_partitions=[key]), limit=1
        ).records[0]
        shown = latest.asset_materialization.metadata["dagster/row_count"].value  # type: ignore[union-attr]
    with duckdb.connect(str(env), read_only=True) as conn:
        after = conn.execute("SELECT * FROM ls_ratio ORDER BY ALL").df()
    pd.testing.assert_frame_equal(before, after)
    day_10 = after[after["ts"].dt.date == today - timedelta(days=10)]
    assert shown == len(day_10) > 0


def test_a_latest_window_exchange_is_asked_once_for_every_day_its_window_covers(
    simulator: SimulatorThread, env: Path
) -> None:
    today = datetime.now(UTC).date()
    endpoint = "/api/v2/mix/market/long-short"
    before = requests(simulator, "bitget", endpoint)
    with DagsterInstance.ephemeral() as instance:
        assert run(env, "bitget", today - timedelta(days=1), instance)
    # 3 coins x 2 periods, once each, though the stretch holds 21 days.
    assert requests(simulator, "bitget", endpoint) - before == 3 * 2


def _answer(sim: SimulatorThread, exchange: str, path: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"{sim.base_urls[exchange]}{path}") as answer:
        return json.load(answer)  # type: ignore[no-any-return]


def _first_days(warehouse: Path, exchange: str) -> dict[str, date]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute(
            "SELECT coin, min(ts)::DATE FROM ls_ratio WHERE exchange = ? AND period = '1d' "
            "GROUP BY coin",
            [exchange],
        ).fetchall()
    return dict(rows)


def test_a_first_run_reaches_as_deep_as_each_exchange_serves_and_a_rerun_changes_nothing(
    simulator: SimulatorThread, env: Path
) -> None:
    today = datetime.now(UTC).date()
    first = date.fromisoformat(FIRST_DAY)
    ratio_path = "/v5/market/account-ratio"
    with DagsterInstance.ephemeral() as instance:
        before = requests(simulator, "bybit", ratio_path)
        for exchange in ("bybit", "gate"):
            assert run(env, exchange, today, instance, since=first, periods=("1d",))
        asked = requests(simulator, "bybit", ratio_path) - before
        with duckdb.connect(str(env), read_only=True) as conn:
            stored = conn.execute("SELECT * FROM ls_ratio WHERE ts < ? ORDER BY ALL", [today]).df()
        shown = instance.get_materialized_partitions(AssetKey("ls_ratio"))

        # Bybit: back to its documented earliest query start, or the coin's launch.
        launches = {
            item["baseCoin"]: datetime.fromtimestamp(int(item["launchTime"]) / 1000, UTC)
            for item in _answer(simulator, "bybit", "/v5/market/instruments-info?category=linear")[
                "result"
            ]["list"]
            if item["baseCoin"] in ("BTC", "ETH", "SOL")
            and (item["contractType"], item["quoteCoin"]) == ("LinearPerpetual", "USDT")
        }
        earliest = datetime(2020, 7, 20, tzinfo=UTC)
        expected = {
            coin: max(earliest, launched + timedelta(days=1) - timedelta(microseconds=1)).date()
            for coin, launched in launches.items()
        }
        assert _first_days(env, "bybit") == expected
        days = (today - min(expected.values())).days + 1
        # A page is 500 daily rows: years of them cost a handful of requests per coin.
        assert asked <= 3 * math.ceil(days / 500) + 3
        assert str(partition_key(min(expected.values()), "bybit")) in shown

        # Gate: until it stops answering rows (its latest 2,000 days start where it can).
        oldest = _answer(
            simulator,
            "gate",
            "/futures/usdt/contract_stats?contract=BTC_USDT&interval=1d&limit=2000",
        )[0]["time"]
        assert _first_days(env, "gate")["BTC"] == datetime.fromtimestamp(oldest, UTC).date()

        # Again: every closed day is complete, so only today is asked for, once per series.
        for exchange in ("bybit", "gate"):
            assert run(env, exchange, today, instance, since=first, periods=("1d",))
    assert requests(simulator, "bybit", ratio_path) - before - asked <= 3
    with duckdb.connect(str(env), read_only=True) as conn:
        again = conn.execute("SELECT * FROM ls_ratio WHERE ts < ? ORDER BY ALL", [today]).df()
    pd.testing.assert_frame_equal(stored, again)
