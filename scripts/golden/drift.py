"""Golden drift statistics: Serval's /monitoring/status against Evidently itself and against scipy.

Generates reference and current windows (numeric shifts, scale changes, categorical shifts, binary features,
low-cardinality numerics, references below and above 1000 rows, KS beyond scipy's exact limit, no drift), serves
one model per case with `serval serve`, sends the current rows through /infer, and compares every feature's method, score, statistic,
p-value and verdict, the dataset verdict and the prediction drift with what Evidently (legacy DataDriftTable and
DatasetDriftMetric, the same column types, methods and thresholds) and scipy compute on the same rows.

Scores and p-values must agree within 1e-6 relative (1e-9 absolute near 0); verdicts must be identical.
Then ground truth is sent for every row (POST .../feedback by the ids the answers returned), and the realised
metrics must equal scikit-learn's on the same pairs within 1e-9: accuracy, macro F1, precision, recall and ROC-AUC
for the binary classifier, MAE, RMSE and R² for a regression model.

usage: drift.py SERVAL_BINARY WORKDIR
"""
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import requests
import scipy.stats
from onnx import TensorProto, helper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
from checks import Checks, free_port, wait_ready  # noqa: E402

warnings.filterwarnings("ignore")
from evidently.legacy.metrics import DataDriftTable, DatasetDriftMetric  # noqa: E402
from evidently.legacy.pipeline.column_mapping import ColumnMapping  # noqa: E402
from evidently.legacy.report import Report  # noqa: E402

RELATIVE, ABSOLUTE = 1e-6, 1e-9


def classifier(features):
    """X [N, F] float → label = argmax of the first two columns (int64), probabilities = their softmax."""
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("Slice", ["X", "starts", "ends", "axes"], ["head"]),
         helper.make_node("ArgMax", ["head"], ["label"], axis=1, keepdims=0),
         helper.make_node("Softmax", ["head"], ["probabilities"], axis=1)],
        "drift_classifier",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=[starts, ends, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def regressor(features):
    """X [N, F] float → value [N, 1] = X · w + 0.5, a linear regressor."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [features, 1], [0.5 * (i + 1) for i in range(features)])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [1], [0.5])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "w"], ["product"]), helper.make_node("Add", ["product", "b"], ["value"])],
        "drift_regressor", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["N", 1])], initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def cases(rng):
    """(name, reference DataFrame, current DataFrame, categorical names, drift settings) per case."""
    out = []

    def frame(columns):
        return pd.DataFrame({name: np.asarray(values, dtype=np.float64) for name, values in columns.items()})

    # Below 1000 reference rows, numeric: auto picks ks. One shifted, one rescaled, two unchanged.
    n, m = 600, 200
    out.append(("small_numeric", frame({"a": rng.normal(0, 1, n), "b": rng.normal(5, 2, n), "c": rng.uniform(0, 1, n), "d": rng.exponential(1, n)}),
                frame({"a": rng.normal(0.8, 1, m), "b": rng.normal(5, 4, m), "c": rng.uniform(0, 1, m), "d": rng.exponential(1, m)}),
                [], {}))
    # Below 1000, categorical and binary and low-cardinality numerics: chisquare and z.
    n, m = 500, 300
    out.append(("small_categorical",
                frame({"x": rng.normal(0, 1, n), "y": rng.normal(0, 1, n), "cat": rng.choice([0, 1, 2, 3], n, p=[.4, .3, .2, .1]),
                       "flag": rng.choice([0, 1], n, p=[.7, .3]), "level": rng.choice([1, 2, 3, 4], n)}),
                frame({"x": rng.normal(0, 1, m), "y": rng.normal(0, 1, m), "cat": rng.choice([0, 1, 2, 3], m, p=[.1, .2, .3, .4]),
                       "flag": rng.choice([0, 1], m, p=[.68, .32]), "level": rng.choice([1, 2, 3, 4, 5], m)}),
                ["cat", "flag"], {}))
    # Above 1000 reference rows and a window above 1000: wasserstein and jensenshannon.
    n, m = 2500, 1200
    out.append(("large_mixed",
                frame({"x": rng.normal(0, 1, n), "y": rng.normal(0, 1, n), "shifted": rng.normal(0, 1, n),
                       "cat": rng.choice(np.arange(30), n), "few": rng.choice([0, 1, 2], n)}),
                frame({"x": rng.normal(0, 1, m), "y": rng.normal(0.02, 1, m), "shifted": rng.normal(0.5, 1.3, m),
                       "cat": rng.choice(np.arange(30), m, p=np.linspace(1, 3, 30) / np.linspace(1, 3, 30).sum()), "few": rng.choice([0, 1, 2], m, p=[.5, .3, .2])}),
                ["cat"], {}))
    # Every method named explicitly, with per-feature thresholds; PSI and Jensen-Shannon on Sturges bins.
    n, m = 800, 400
    out.append(("explicit_methods",
                frame({"p": rng.normal(0, 1, n), "j": rng.gamma(2, 1, n), "w": rng.normal(0, 1, n), "k": rng.normal(0, 1, n),
                       "pc": rng.choice([0, 1, 2], n), "cs": rng.choice([0, 1, 2, 3], n)}),
                frame({"p": rng.normal(0.3, 1, m), "j": rng.gamma(2.4, 1, m), "w": rng.normal(0.05, 1, m), "k": rng.normal(0.1, 1, m),
                       "pc": rng.choice([0, 1, 2], m, p=[.2, .3, .5]), "cs": rng.choice([0, 1, 2, 3], m)}),
                ["pc", "cs"],
                {"method": {"p": "psi", "j": "jensenshannon", "w": "wasserstein", "k": "ks", "pc": "psi", "cs": "chisquare"},
                 "threshold": {"w": 0.05, "k": 0.01}}))
    # KS with unequal large samples (the exact "inside" recursion over a large lcm).
    n, m = 3001, 1999
    out.append(("ks_unequal", frame({"a": rng.normal(0, 1, n), "b": rng.normal(0.05, 1, n)}),
                frame({"a": rng.normal(0, 1, m), "b": rng.normal(0, 1, m)}), [], {"method": "ks"}))
    # No drift at all.
    n, m = 1000, 500
    out.append(("no_drift", frame({"a": rng.normal(0, 1, n), "b": rng.uniform(-1, 1, n), "c": rng.choice([0, 1, 2], n)}),
                frame({"a": rng.normal(0, 1, m), "b": rng.uniform(-1, 1, m), "c": rng.choice([0, 1, 2], m)}), ["c"], {}))
    # KS beyond the exact limit (over 10,000 reference rows): scipy takes kstwo.sf at round(m·n/(m+n)) = 1156.
    # "near" sits 0.018 deviations off the reference's own quantiles (D ≈ 0.01: Durbin's matrix, p ≈ 0.9995),
    # "same" is a fresh draw (n·D² < 2.2: Pelz–Good), "shifted" and "far" land in the Smirnov tail.
    n, m = 10_400, 1_300
    near = rng.normal(0, 1, n)
    out.append(("ks_beyond_exact",
                frame({"near": near, "same": rng.normal(0, 1, n), "shifted": rng.normal(0, 1, n), "far": rng.normal(0, 1, n)}),
                frame({"near": np.quantile(near, (np.arange(m) + 0.5) / m) + 0.018, "same": rng.normal(0, 1, m),
                       "shifted": rng.normal(0.19, 1, m), "far": rng.normal(0.3, 1, m)}),
                [], {"method": "ks"}))
    return out


def float32(frame):
    """What the server sees: the rows travel as FP32."""
    return frame.astype(np.float32).astype(np.float64)


def evidently(reference, current, numerical, categorical, settings):
    mapping = ColumnMapping(numerical_features=numerical, categorical_features=categorical, target=None, prediction=None)
    method, threshold = settings.get("method"), settings.get("threshold")
    options = {}
    if isinstance(method, dict):
        options["per_column_stattest"] = method
    elif method:
        options["stattest"] = method
    if isinstance(threshold, dict):
        options["per_column_stattest_threshold"] = threshold
    elif threshold is not None:
        options["stattest_threshold"] = threshold
    report = Report(metrics=[DataDriftTable(**options), DatasetDriftMetric(**options)])
    report.run(reference_data=reference, current_data=current, column_mapping=mapping)
    result = report.as_dict()["metrics"]
    return result[0]["result"]["drift_by_columns"], result[1]["result"]


STATTEST_NAMES = {"K-S p_value": "ks", "Wasserstein distance (normed)": "wasserstein", "PSI": "psi", "Jensen-Shannon distance": "jensenshannon",
                  "chi-square p_value": "chisquare", "Z-test p_value": "z"}


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    if abs(a - b) <= ABSOLUTE:
        return True
    return abs(a - b) <= RELATIVE * max(abs(a), abs(b))


def scipy_figures(method, reference, current):
    """(statistic, p-value or distance) straight from scipy, where the method is one scipy function."""
    if method == "ks":
        result = scipy.stats.ks_2samp(reference, current)
        return float(result.statistic), float(result.pvalue)
    if method == "wasserstein":
        return None, float(scipy.stats.wasserstein_distance(reference, current) / max(np.std(reference), 0.001))
    return None, None


def main():
    serval, work = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(20261202)
    repository = os.path.join(work, "models")
    os.makedirs(repository, exist_ok=True)
    all_cases = cases(rng)
    regression_reference = pd.DataFrame({"a": rng.normal(0, 1, 400), "b": rng.normal(2, 1, 400)})
    regression_current = pd.DataFrame({"a": rng.normal(0.2, 1, 300), "b": rng.normal(2, 1.2, 300)})
    for name, reference, current, categorical, settings in all_cases + [("regression", regression_reference, regression_current, [], {})]:
        folder = os.path.join(repository, name)
        os.makedirs(os.path.join(folder, "1"), exist_ok=True)
        model = regressor(reference.shape[1]) if name == "regression" else classifier(reference.shape[1])
        onnx.save(model, os.path.join(folder, "1", "model.onnx"))
        with open(os.path.join(folder, "reference.csv"), "w") as handle:
            handle.write(",".join(reference.columns) + "\n")
            for row in reference.itertuples(index=False):
                handle.write(",".join(repr(float(v)) for v in row) + "\n")
        monitoring = {"reference": "reference.csv", "window": len(current), "categorical": categorical,
                      "drift": {"method": settings.get("method", "auto"), "threshold": settings.get("threshold"), "share": 0.5},
                      "performance": {"task": "regression" if name == "regression" else "classification"}}
        with open(os.path.join(folder, "config.yaml"), "w") as handle:
            handle.write("max_batch_size: 0\nmonitoring: " + json.dumps(monitoring) + "\n")
    port = free_port()
    log_path = os.path.join(work, "serve.log")
    process = subprocess.Popen([serval, "serve", "--model-repository", repository, "--data-dir", os.path.join(work, "data"),
                                "--http-port", str(port), "--grpc-port", str(free_port())],
                               stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    check = Checks()
    try:
        wait_ready(url, process, log_path, requests.get)
        for name, reference, current, categorical, settings in all_cases:
            rows = current.to_numpy(dtype=np.float32)
            for start in range(0, len(rows), 100):
                chunk = rows[start:start + 100]
                body = {"inputs": [{"name": "X", "shape": list(chunk.shape), "datatype": "FP32", "data": chunk.ravel().tolist()}]}
                answer = requests.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
                assert answer.status_code == 200, answer.text
            status = None
            for _ in range(300):
                status = requests.get(f"{url}/v2/models/{name}/monitoring/status", timeout=10).json()
                if status.get("window", {}).get("rows") == len(current):
                    break
                time.sleep(0.1)
            check(f"{name}: window holds the {len(current)} rows sent", status["window"]["rows"] == len(current), status.get("window"))
            seen = float32(current)
            # Serval compares at the model input's precision (FP32): the reference is rounded as the rows are.
            reference = float32(reference)
            numerical = [c for c in reference.columns if c not in categorical]
            by_column, dataset = evidently(reference, seen, numerical, categorical, settings)
            features = {f["name"]: f for f in status["features"]}
            for column in reference.columns:
                expected, got = by_column[column], features[column]
                method = STATTEST_NAMES[expected["stattest_name"]]
                check(f"{name}/{column}: method {method}", got["method"] == method, f"serval {got['method']}")
                check(f"{name}/{column}: score {expected['drift_score']:.6g}", close(got["score"], float(expected["drift_score"])), f"serval {got['score']}")
                check(f"{name}/{column}: threshold", close(got["threshold"], float(expected["stattest_threshold"])), f"serval {got['threshold']} vs {expected['stattest_threshold']}")
                check(f"{name}/{column}: verdict {expected['drift_detected']}", got["drifted"] == bool(expected["drift_detected"]), f"serval {got['drifted']}")
                statistic, score = scipy_figures(method, reference[column].to_numpy(), seen[column].to_numpy())
                if score is not None:
                    check(f"{name}/{column}: scipy {method} score", close(got["score"], score), f"serval {got['score']} scipy {score}")
                if statistic is not None:
                    check(f"{name}/{column}: scipy ks statistic", close(got["statistic"], statistic), f"serval {got['statistic']} scipy {statistic}")
            check(f"{name}: dataset drift {dataset['dataset_drift']}", status["dataset_drift"]["drifted"] == bool(dataset["dataset_drift"]),
                  f"serval {status['dataset_drift']}")
            check(f"{name}: drifted share", close(status["dataset_drift"]["share"], float(dataset["share_of_drifted_columns"])),
                  f"serval {status['dataset_drift']['share']} evidently {dataset['share_of_drifted_columns']}")
            # Prediction drift: the model's labels on the reference (onnxruntime) against its labels on the window.
            session = ort.InferenceSession(classifier(reference.shape[1]).SerializeToString(), providers=["CPUExecutionProvider"])
            reference_labels = session.run(["label"], {"X": reference.to_numpy(dtype=np.float32)})[0].astype(np.float64)
            current_labels = session.run(["label"], {"X": rows})[0].astype(np.float64)
            predicted, _ = evidently(pd.DataFrame({"prediction": reference_labels}), pd.DataFrame({"prediction": current_labels}),
                                     [], ["prediction"], {})
            expected, got = predicted["prediction"], status["prediction_drift"]
            check(f"{name}/prediction: method", got is not None and got["method"] == STATTEST_NAMES[expected["stattest_name"]], f"serval {got}")
            check(f"{name}/prediction: score {expected['drift_score']:.6g}", got is not None and close(got["score"], float(expected["drift_score"])), f"serval {got}")
            check(f"{name}/prediction: verdict", got is not None and got["drifted"] == bool(expected["drift_detected"]), f"serval {got}")
        realised_checks(check, url, "small_numeric", all_cases[0][2], rng, regression=False)
        realised_checks(check, url, "regression", regression_current, rng, regression=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    check.finish()


def realised_checks(check, url, name, current, rng, regression):
    """Sends `current` (again, for the regression model the first time), then ground truth for every row by the ids
    the answers returned; the realised metrics must equal scikit-learn's on the same pairs within 1e-9."""
    from sklearn.metrics import (accuracy_score, f1_score, mean_absolute_error, mean_squared_error, precision_score, r2_score,
                                 recall_score, roc_auc_score)
    rows = current.to_numpy(dtype=np.float32)
    items, truth, predicted, scores = [], [], [], []
    for start in range(0, len(rows), 100):
        chunk = rows[start:start + 100]
        body = {"inputs": [{"name": "X", "shape": list(chunk.shape), "datatype": "FP32", "data": chunk.ravel().tolist()}]}
        answer = requests.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30).json()
        outputs = {o["name"]: o for o in answer["outputs"]}
        if regression:
            values = outputs["value"]["data"]
            labels = [float(v) + float(e) for v, e in zip(values, rng.normal(0, 0.7, len(values)))]
            predicted += [float(np.float32(v)) for v in values]  # the FP32 values the server holds, not their decimal text
        else:
            labels = [int(v) for v in rng.integers(0, 2, len(chunk))]
            predicted += outputs["label"]["data"]
            probabilities = np.array(outputs["probabilities"]["data"], dtype=np.float64).reshape(-1, 2)
            scores += probabilities[:, 1].tolist()
        truth += labels
        items.append({"id": answer["id"], "ground_truth": labels})
    reply = requests.post(f"{url}/v2/models/{name}/feedback", json={"items": items}, timeout=30)
    check(f"{name}: feedback for {len(truth)} rows accepted", reply.status_code == 200 and reply.json()["rows"] == len(truth), reply.text)
    status = None
    for _ in range(300):
        status = requests.get(f"{url}/v2/models/{name}/monitoring/status", timeout=10).json()
        if status["performance"]["labelled_rows"] == len(truth):
            break
        time.sleep(0.1)
    realised = status["performance"]["realised"] or {}
    if regression:
        # The server's predictions are FP32 values; scikit-learn gets the same numbers the answers carried.
        expected = {"mae": mean_absolute_error(truth, predicted), "rmse": float(np.sqrt(mean_squared_error(truth, predicted))),
                    "r2": r2_score(truth, predicted)}
    else:
        expected = {"accuracy": accuracy_score(truth, predicted), "f1": f1_score(truth, predicted, average="macro", zero_division=0),
                    "precision": precision_score(truth, predicted, average="macro", zero_division=0),
                    "recall": recall_score(truth, predicted, average="macro", zero_division=0), "roc_auc": roc_auc_score(truth, scores)}
    check(f"{name}: {len(truth)} labelled rows", status["performance"]["labelled_rows"] == len(truth), status["performance"])
    for metric, value in expected.items():
        got = realised.get(metric)
        check(f"{name}: realised {metric} {value:.6f} equals scikit-learn's", got is not None and abs(got - value) <= 1e-9, f"serval {got}")


if __name__ == "__main__":
    main()
