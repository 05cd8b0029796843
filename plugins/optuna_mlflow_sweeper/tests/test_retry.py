"""The one retry policy (_impl/retry.py): its pure parts as tables, its loops on real errors."""

from __future__ import annotations

import pytest
import sqlalchemy
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2 as codes

from hydra_plugins.optuna_mlflow_sweeper._impl.retry import (
    PATIENCE_ENV,
    backoff,
    connection_lost,
    patience,
    poll,
    retry_call,
    transient,
)


@pytest.mark.parametrize(("attempt", "pause"), [
    (0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (6, 10.0), (50, 10.0)])
def test_backoff_doubles_up_to_ten_seconds(attempt: int, pause: float) -> None:
    assert backoff(attempt) == pause


@pytest.mark.parametrize(("value", "seconds"), [
    (None, 600.0), ("", 600.0), ("5", 5.0), ("0.5", 0.5), ("soon", 600.0)])
def test_patience_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, seconds: float
) -> None:
    if value is None:
        monkeypatch.delenv(PATIENCE_ENV, raising=False)
    else:
        monkeypatch.setenv(PATIENCE_ENV, value)
    assert patience() == seconds


def refused() -> sqlalchemy.exc.OperationalError:
    """What a database that is not there raises (nothing listens on port 1)."""
    engine = sqlalchemy.create_engine("postgresql+psycopg://u:pw@127.0.0.1:1/x",
                                      poolclass=sqlalchemy.pool.NullPool)
    try:
        engine.connect()
    except sqlalchemy.exc.OperationalError as e:
        return e
    raise AssertionError("something listens on 127.0.0.1:1")


def caused_by(error: BaseException) -> RuntimeError:
    try:
        raise RuntimeError("a storage call failed") from error
    except RuntimeError as e:
        return e


@pytest.mark.parametrize(("error", "retried"), [
    (MlflowException("gone", error_code=codes.RESOURCE_DOES_NOT_EXIST), False),
    (MlflowException("bad", error_code=codes.INVALID_PARAMETER_VALUE), False),
    (MlflowException("who", error_code=codes.UNAUTHENTICATED), False),
    (MlflowException("busy", error_code=codes.TEMPORARILY_UNAVAILABLE), True),
    (MlflowException("oops", error_code=codes.INTERNAL_ERROR), True),
    (ConnectionRefusedError("refused"), True),
    (TimeoutError("slow"), True),
])
def test_transient_retries_all_but_a_rejection(error: BaseException, retried: bool) -> None:
    assert transient(error) is retried


@pytest.mark.parametrize(("make", "lost"), [
    (refused, True),
    (lambda: caused_by(refused()), True),
    (lambda: sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("closed")), True),
    (lambda: sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("x"),
                                       connection_invalidated=True), True),
    (lambda: sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate")), False),
    (lambda: ValueError("not a database error"), False),
])
def test_connection_lost_reads_the_cause_chain(make: object, lost: bool) -> None:
    assert connection_lost(make()) is lost  # type: ignore[operator]


def failing(errors: list[BaseException], result: str = "done") -> tuple[list[int], object]:
    """A call that raises `errors` one by one, then returns `result`; and its call count."""
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return calls, call


def test_retry_call_waits_out_retryable_errors_and_says_so() -> None:
    calls, call = failing([ConnectionRefusedError("down"), ConnectionRefusedError("down")])
    seen: list[tuple[str, int, float]] = []
    result = retry_call(call, "a write", wait=30,  # type: ignore[arg-type]
                        on_retry=lambda e, n, pause: seen.append((type(e).__name__, n, pause)))
    assert result == "done" and calls[0] == 3
    assert seen == [("ConnectionRefusedError", 1, 0.5), ("ConnectionRefusedError", 2, 1.0)]


@pytest.mark.parametrize(("error", "retry_if", "wait"), [
    (MlflowException("gone", error_code=codes.RESOURCE_DOES_NOT_EXIST), transient, 30.0),
    (ValueError("no database error"), connection_lost, 30.0),
    (ConnectionRefusedError("down"), transient, 0.0),  # a wait of 0: no retry at all
    (KeyboardInterrupt(), lambda e: True, 30.0),  # never retried, whatever the predicate
])
def test_retry_call_raises_at_once_what_is_not_retried(
    error: BaseException, retry_if: object, wait: float
) -> None:
    calls, call = failing([error])
    with pytest.raises(type(error)):
        retry_call(call, "a call", wait=wait, retry_if=retry_if)  # type: ignore[arg-type]
    assert calls[0] == 1


def test_retry_call_gives_up_after_its_wait_with_the_last_error() -> None:
    calls, call = failing([ConnectionRefusedError(f"down {i}") for i in range(10)])
    with pytest.raises(ConnectionRefusedError, match="down 1"):
        retry_call(call, "a call", wait=0.3)  # type: ignore[arg-type]
    assert calls[0] == 2  # the pause is cut to the wait: one more try at its end


def test_poll_until_ready_or_timeout() -> None:
    answers = [False, False, True]
    assert poll(lambda: answers.pop(0), timeout=10, interval=0.01) is True
    assert answers == []
    assert poll(lambda: False, timeout=0.1, interval=0.01) is False
    with pytest.raises(ZeroDivisionError):
        poll(lambda: bool(1 / 0), timeout=10, interval=0.01)
