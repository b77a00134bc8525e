"""Prometheus metrics, one registry per app (so tests and several apps in a process don't clash)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    bytes_in: Counter
    bytes_out: Counter
    ledger_appends: Counter
    ledger_append_seconds: Histogram
    ledger_failures: Counter
    denied: Counter
    unauthenticated: Counter
    integrity_failures: Counter
    witness_lag: Gauge
    witness_submissions: Counter
    throttled: Counter
    transfers_running: Gauge
    ledger_commits: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            requests=Counter("evx_http_requests_total", "HTTP requests",
                             ["method", "route", "status"], registry=r),
            request_seconds=Histogram("evx_http_request_seconds", "HTTP request latency",
                                      ["method", "route"], registry=r),
            bytes_in=Counter("evx_evidence_bytes_received_total",
                             "Evidence bytes received", registry=r),
            bytes_out=Counter("evx_evidence_bytes_sent_total", "Evidence bytes sent", registry=r),
            ledger_appends=Counter("evx_ledger_appends_total", "Ledger entries appended",
                                   ["action", "outcome"], registry=r),
            ledger_append_seconds=Histogram("evx_ledger_append_seconds",
                                            "Ledger append latency", registry=r),
            ledger_failures=Counter("evx_ledger_append_failures_total",
                                    "Ledger appends that failed (operation refused)", registry=r),
            denied=Counter("evx_access_denied_total", "Authenticated attempts refused",
                           ["action"], registry=r),
            unauthenticated=Counter("evx_unauthenticated_total",
                                    "Requests refused before authentication succeeded",
                                    ["reason"], registry=r),
            integrity_failures=Counter("evx_integrity_failures_total",
                                       "Stored objects that failed authentication", registry=r),
            witness_lag=Gauge("evx_witness_lag_entries",
                              "Entries of the ledger not yet covered by the witness's latest "
                              "cosignature", ["witness"], registry=r),
            witness_submissions=Counter("evx_witness_submissions_total",
                                        "Checkpoint submissions to witnesses, by outcome",
                                        ["witness", "outcome"], registry=r),
            throttled=Counter("evx_requests_throttled_total",
                              "Requests refused by a rate limit (429)", ["scope"], registry=r),
            transfers_running=Gauge("evx_transfers_running",
                                    "Uploads and downloads holding a transfer slot (at most "
                                    "EVX_TRANSFERS_PER_REPLICA)", registry=r),
            ledger_commits=Gauge("evx_ledger_commits",
                                 "Ledger transactions committed by this process since it "
                                 "started (its entries / these = the group-commit batch size)",
                                 registry=r),
        )
