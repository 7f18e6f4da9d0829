"""What ships beside the metrics (deploy/grafana, deploy/prometheus, docs/operate.md)
agrees with the metrics the code exposes: the dashboard queries only metrics that
exist and shows every one; the scrape job targets the default ports; the docs list
every metric."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from stream_ingest.metrics import REGISTRY, StreamsCollector
from stream_ingest.options import IngestOptions

ROOT = Path(__file__).resolve().parents[1]
METRIC = re.compile(r"\bstream_ingest_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def families() -> dict[str, str]:
    """Metric family name -> type, of the registry and of the streams collector (which
    a process registers only when it serves metrics)."""
    found = {f.name: f.type for f in REGISTRY.collect()}
    found.update({f.name: f.type for f in StreamsCollector(list).describe()})
    return found


def exposed() -> set[str]:
    """Every sample name a scrape can show."""
    return {
        name + suffix for name, kind in families().items() for suffix in SUFFIXES.get(kind, ("",))
    }


def queried() -> set[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/stream-ingest.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    unknown = queried() - exposed()
    assert not unknown, f"the dashboard queries metrics no component exposes: {unknown}"


def test_the_dashboard_shows_every_metric() -> None:
    shown = {
        name
        for name, kind in families().items()
        if any(name + s in queried() for s in SUFFIXES.get(kind, ("",)))
    }
    assert shown == set(families()), f"not on the dashboard: {set(families()) - shown}"


def test_the_scrape_job_targets_the_default_ports() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/stream-ingest.yml").read_text())
    (job,) = config["scrape_configs"]
    ports = {int(t.rsplit(":", 1)[1]) for c in job["static_configs"] for t in c["targets"]}
    defaults = IngestOptions()
    assert ports == {defaults.metrics_worker_port, defaults.metrics_sensor_port}


def test_the_operate_page_lists_every_metric() -> None:
    """One row per metric, by the name a query uses (a histogram by its family name)."""
    page = (ROOT / "docs/operate.md").read_text()
    listed = set(re.findall(r"^\| `(stream_ingest_[a-z0-9_]+)`", page, re.M))
    names = {n + ("_total" if kind == "counter" else "") for n, kind in families().items()}
    assert listed == names
