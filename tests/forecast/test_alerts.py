"""Alerts: burn-rate and forecast conditions, and delivery to a real webhook receiver on
127.0.0.1 — deduplicated, retried, resolved, and kept for the next run when it cannot land."""
from __future__ import annotations

import pytest

from oracle.engine.alerts import (
    DEFAULT_RULES,
    Alert,
    AlertConfig,
    AlertConfigError,
    AlertDispatcher,
    Webhook,
    burn_rate_alerts,
    evaluate_alerts,
    forecast_alerts,
    parse_alert_config,
)
from oracle.engine.forecast import ForecastParams, forecast_period
from oracle.evidence.csv import parse_ts_text

from .conftest import Receiver, write_case

AS_OF = parse_ts_text("2027-01-16T00:00:00Z")
NO_WAIT: list[float] = []


def alert(subject: str = "s1", rule: str = "page-1h") -> Alert:
    return Alert("hand-2027", "2027-01", rule, "page", "avail", subject, f"{subject} burning")


def dispatcher(rec: Receiver, tmp_path, attempts: int = 3) -> AlertDispatcher:
    config = AlertConfig((Webhook(rec.url, (("Authorization", "Bearer t"),)),), attempts=attempts, backoff_s=0.01)
    return AlertDispatcher(config, tmp_path / "alerts-state.json", sleep=NO_WAIT.append)


def test_firing_is_sent_once_then_resolved(receiver, tmp_path):
    d = dispatcher(receiver, tmp_path)
    r1 = d.process([alert()], now=AS_OF)
    r2 = d.process([alert()], now=AS_OF + 60)  # still firing: deduplicated
    assert (r1.fired, r2.fired, r2.still_firing) == ((alert().key,), (), (alert().key,))
    assert [b["status"] for b in receiver.bodies()] == ["firing"]
    r3 = d.process([], now=AS_OF + 120)
    assert r3.resolved == (alert().key,)
    bodies = receiver.bodies()
    assert [b["status"] for b in bodies] == ["firing", "resolved"]
    assert bodies[0]["dedup_key"] == bodies[1]["dedup_key"] == alert().dedup_key
    assert bodies[0]["event_id"] != bodies[1]["event_id"]
    assert receiver.requests[0]["headers"]["Authorization"] == "Bearer t"
    assert receiver.requests[0]["headers"]["X-Slacomp-Event-Id"] == bodies[0]["event_id"]


def test_deduplication_survives_a_restart(receiver, tmp_path):
    dispatcher(receiver, tmp_path).process([alert()], now=AS_OF)
    again = dispatcher(receiver, tmp_path).process([alert()], now=AS_OF + 60)  # new process, same state file
    assert again.fired == () and len(receiver.requests) == 1


def test_server_errors_are_retried_with_the_same_event_id(receiver, tmp_path):
    receiver.codes = [500, 503]
    report = dispatcher(receiver, tmp_path, attempts=3).process([alert()], now=AS_OF)
    assert report.delivered == 1 and report.undelivered == 0
    ids = {r["headers"]["X-Slacomp-Event-Id"] for r in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1  # one event, three attempts


def test_undelivered_notifications_wait_in_the_outbox(receiver, tmp_path):
    receiver.codes = [500, 500]
    first = dispatcher(receiver, tmp_path, attempts=2).process([alert()], now=AS_OF)
    assert first.undelivered == 1
    second = dispatcher(receiver, tmp_path, attempts=2).process([alert()], now=AS_OF + 60)
    assert second.fired == () and second.delivered == 1 and second.undelivered == 0
    assert [b["status"] for b in receiver.bodies()] == ["firing"] * 3


def test_unreachable_webhook_keeps_the_notification(tmp_path):
    config = AlertConfig((Webhook("http://127.0.0.1:9/none"),), attempts=2, backoff_s=0.0, timeout_s=0.5)
    report = AlertDispatcher(config, tmp_path / "s.json", sleep=NO_WAIT.append).process([alert()], now=AS_OF)
    assert report.undelivered == 1


def test_fast_burn_pages_and_slow_burn_does_not(tmp_path):
    # 24x7 site, target 95%: faulted for the last 2 hours -> burn 20x over 1 h and 5 min.
    terms, ev = write_case(tmp_path / "fast", [("2027-01-01T00:00:00Z", "D1", "available"),
                                               ("2027-01-15T22:00:00Z", "D1", "faulted")], business_hours=False)
    config = AlertConfig(())
    fired = {(a.rule, a.objective, a.subject) for a in burn_rate_alerts(terms, ev, "2027-01", AS_OF, config)}
    assert ("page-1h", "avail", "s1") in fired and ("page-1h", "uptime", "*") in fired
    # One short fault yesterday: under every threshold now.
    terms, ev = write_case(tmp_path / "slow", [("2027-01-01T00:00:00Z", "D1", "available"),
                                               ("2027-01-15T08:00:00Z", "D1", "faulted"),
                                               ("2027-01-15T08:20:00Z", "D1", "available")], business_hours=False)
    assert burn_rate_alerts(terms, ev, "2027-01", AS_OF, config) == []


def test_forecast_below_threshold_alerts_and_resolves(receiver, tmp_path):
    terms, ev = write_case(tmp_path, [("2027-01-01T00:00:00Z", "D1", "available"),
                                      ("2027-01-05T09:00:00Z", "D1", "faulted"),
                                      ("2027-01-06T15:00:00Z", "D1", "available")])
    config = AlertConfig((Webhook(receiver.url),), rules=(), forecast_below=0.8, objectives=("avail",))
    report = forecast_period(terms, ev, "2027-01", AS_OF, ForecastParams(sims=200))
    alerts = evaluate_alerts(terms, ev, "2027-01", AS_OF, config, report)
    assert [(a.rule, a.subject, a.details["status"]) for a in alerts] == [("forecast", "s1", "lost")]
    d = AlertDispatcher(config, tmp_path / "state.json", sleep=NO_WAIT.append)
    d.process(alerts, now=AS_OF)
    d.process(forecast_alerts(report, AlertConfig((), forecast_below=0.0)), now=AS_OF + 3600)
    assert [b["status"] for b in receiver.bodies()] == ["firing", "resolved"]


def test_config_file_format():
    c = parse_alert_config({"agreement": "hand-2027", "webhooks": [{"url": "http://127.0.0.1:1/x"}],
                            "delivery": {"attempts": 5, "backoff": 1}, "forecast": {"below": 0.7}})
    assert c.rules == DEFAULT_RULES and c.attempts == 5 and c.forecast_below == 0.7
    custom = parse_alert_config({"burn_rate": [{"name": "fast", "long": "2h", "short": "10m", "burn": 10}]})
    assert custom.rules[0].windows(31 * 86_400) == (7440, 620)  # scaled from 30 days to 31
    with pytest.raises(AlertConfigError, match="webhook"):
        parse_alert_config({"webhook": []})
    with pytest.raises(AlertConfigError, match="forecast.below"):
        parse_alert_config({"forecast": {"below": 2}})
