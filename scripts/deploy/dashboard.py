"""Writes deploy/grafana/serval-dashboard.json (Grafana 10 dashboard schema) from the panel list below.

    python scripts/deploy/dashboard.py [--check]

The JSON is generated, and committed; edit this script, not the JSON. CI checks that every metric a panel
queries is exposed by a running server (scripts/e2e/monitoring.py)."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SELECT = 'model=~"$model"'

# (row title, [(panel title, unit, [(legend, PromQL)])])
ROWS = [
    ("Traffic", [
        ("Requests per second", "reqps", [("{{model}} v{{version}}", f"sum by (model, version) (rate(serval_inference_request_success_total{{{SELECT}}}[$__rate_interval]) + rate(serval_inference_request_failure_total{{{SELECT}}}[$__rate_interval]))")]),
        ("Error ratio", "percentunit", [("{{model}} v{{version}}", f"sum by (model, version) (rate(serval_inference_request_failure_total{{{SELECT}}}[$__rate_interval])) / sum by (model, version) (rate(serval_inference_request_success_total{{{SELECT}}}[$__rate_interval]) + rate(serval_inference_request_failure_total{{{SELECT}}}[$__rate_interval]))")]),
        ("Traffic weight by route", "percent", [("{{model}} {{target}}", f"serval_traffic_weight{{{SELECT}}}")]),
    ]),
    ("Latency", [
        ("Request duration p50 / p99", "s", [
            ("p50 {{model}} v{{version}}", f"histogram_quantile(0.5, sum by (model, version, le) (rate(serval_inference_request_duration_seconds_bucket{{{SELECT}}}[$__rate_interval])))"),
            ("p99 {{model}} v{{version}}", f"histogram_quantile(0.99, sum by (model, version, le) (rate(serval_inference_request_duration_seconds_bucket{{{SELECT}}}[$__rate_interval])))")]),
        ("Queue and compute time p99", "s", [
            ("queue {{model}}", f"histogram_quantile(0.99, sum by (model, le) (rate(serval_inference_queue_duration_seconds_bucket{{{SELECT}}}[$__rate_interval])))"),
            ("compute {{model}}", f"histogram_quantile(0.99, sum by (model, le) (rate(serval_inference_compute_duration_seconds_bucket{{{SELECT}}}[$__rate_interval])))")]),
    ]),
    ("Batching and queues", [
        ("Mean batch size (rows)", "short", [("{{model}} v{{version}}", f"sum by (model, version) (rate(serval_inference_batch_size_sum{{{SELECT}}}[$__rate_interval])) / sum by (model, version) (rate(serval_inference_batch_size_count{{{SELECT}}}[$__rate_interval]))")]),
        ("Requests waiting in the batcher", "short", [("{{model}} v{{version}}", f"serval_inference_pending_requests{{{SELECT}}}")]),
        ("Async job queue depth", "short", [("queued {{model}}", f"serval_job_queue_depth{{{SELECT}}}"), ("oldest queued (s) {{model}}", f"serval_job_oldest_queued_age_seconds{{{SELECT}}}")]),
    ]),
    ("Drift", [
        ("Feature drift score", "short", [("{{model}} {{feature}} ({{method}})", f"serval_feature_drift_score{{{SELECT}}}")]),
        ("Drifted feature share", "percentunit", [("{{model}} v{{version}}", f"serval_drifted_feature_share{{{SELECT}}}"), ("dataset drift {{model}}", f"serval_dataset_drift{{{SELECT}}}")]),
        ("Prediction drift score", "short", [("{{model}} v{{version}} ({{method}})", f"serval_prediction_drift_score{{{SELECT}}}")]),
    ]),
    ("Accuracy and alerts", [
        ("Accuracy: realised and estimated", "percentunit", [("realised {{model}} v{{version}}", f"serval_model_accuracy{{{SELECT}}}"),
                                                             ("estimated {{model}} v{{version}}", f"serval_model_estimated_accuracy{{{SELECT}}}")]),
        ("Feedback rows per second", "short", [("{{model}}", f"sum by (model) (rate(serval_feedback_total{{{SELECT}}}[$__rate_interval]))")]),
        ("Alerts firing", "short", [("{{model}} {{alert}}", f"serval_alert_firing{{{SELECT}}} == 1")]),
        ("Monitoring window rows and dropped log rows", "short", [("window {{model}} v{{version}}", f"serval_monitoring_window_rows{{{SELECT}}}"),
                                                                   ("dropped/s {{model}}", f"sum by (model) (rate(serval_payload_log_dropped_total{{{SELECT}}}[$__rate_interval]))")]),
    ]),
]


def main():
    panels, y, panel_id = [], 0, 1
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    for title, row in ROWS:
        panels.append({"type": "row", "title": title, "id": panel_id, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        panel_id += 1
        y += 1
        width = 24 // len(row)
        for index, (name, unit, queries) in enumerate(row):
            panels.append({
                "type": "timeseries", "title": name, "id": panel_id, "datasource": datasource,
                "gridPos": {"h": 8, "w": width, "x": index * width, "y": y},
                "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 2, "fillOpacity": 8}}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}},
                "targets": [{"refId": chr(ord("A") + n), "datasource": datasource, "expr": expr, "legendFormat": legend} for n, (legend, expr) in enumerate(queries)],
            })
            panel_id += 1
        y += 8
    dashboard = {
        "title": "Serval", "uid": "serval-overview", "description": "Serval model serving: traffic, latency, batching, queues, drift and accuracy.",
        "editable": True, "graphTooltip": 1, "schemaVersion": 38, "version": 1, "tags": ["serval", "mlops"], "timezone": "browser",
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus", "current": {}, "hide": 0},
            {"name": "model", "type": "query", "label": "Model", "datasource": datasource, "query": {"query": "label_values(serval_model_ready, model)", "refId": "models"},
             "definition": "label_values(serval_model_ready, model)", "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "current": {}, "hide": 0},
        ]},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }
    path = os.path.join(ROOT, "deploy", "grafana", "serval-dashboard.json")
    text = json.dumps(dashboard, indent=2) + "\n"
    if "--check" in sys.argv:
        current = open(path).read() if os.path.exists(path) else ""
        if current != text:
            raise SystemExit(f"{path} is not what scripts/deploy/dashboard.py generates: run it and commit the result")
        print(f"{path} is up to date")
        return
    with open(path, "w") as handle:
        handle.write(text)
    print(f"wrote {path}: {sum(1 for p in panels if p['type'] != 'row')} panels")


if __name__ == "__main__":
    main()
