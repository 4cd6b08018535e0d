"""The pipeline's evaluate metrics against scikit-learn, through `serval pipeline evaluate`.

    python scripts/golden/evaluate.py PATH_TO_SERVAL WORK_DIR

Trains scikit-learn models on generated data (a 3-class logistic regression exported with a ZipMap, a binary
classifier with string labels and a plain probability matrix, a regressor), exports them with skl2onnx, and
compares serval's metrics on an evaluation CSV with scikit-learn's on onnxruntime's predictions of the same rows:
within 1e-9 for accuracy, F1, precision, recall and ROC-AUC, within 1e-6 relative for log_loss, mae, rmse and r2
(computed from float32 outputs). Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime
from sklearn import metrics as sk
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier
from skl2onnx import to_onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from checks import Checks  # noqa: E402

serval, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
check = Checks()
EXACT = {"accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc"}


def write_csv(path, features, labels, label_format):
    with open(path, "w") as f:
        f.write(",".join([f"f{j}" for j in range(features.shape[1])] + ["y"]) + "\n")
        for row, label in zip(features, labels):
            f.write(",".join("%.9g" % v for v in row) + "," + label_format(label) + "\n")


def serval_metrics(model_path, csv_path, names):
    result = subprocess.run([serval, "pipeline", "evaluate", model_path, "--data", csv_path, "--label-column", "y",
                             "--metrics", ",".join(names), "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        return None, result.stderr
    return json.loads(result.stdout), ""


def exported(model, sample, name, zipmap=True):
    """The model exported with skl2onnx to WORK/NAME.onnx, and an onnxruntime session on it."""
    path = os.path.join(work, f"{name}.onnx")
    options = None if zipmap else {id(model): {"zipmap": False}}
    with open(path, "wb") as f:
        f.write(to_onnx(model, sample, options=options).SerializeToString())
    return path, onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def compare(case, ours, reference):
    for name, want in reference.items():
        got = None if ours is None else ours.get(name)
        if name in EXACT:
            good = got is not None and abs(got - want) <= 1e-9
        else:
            good = got is not None and abs(got - want) <= 1e-6 * max(1.0, abs(want))
        check(f"{case}: {name} {got} equals scikit-learn's {want}", good)


# 1. three classes, a ZipMap output
x, y = make_classification(n_samples=600, n_features=5, n_informative=3, n_redundant=0, n_classes=3, random_state=7)
x = x.astype(np.float32)
train, evaluation = slice(0, 400), slice(400, 600)
model = LogisticRegression(max_iter=500).fit(x[train], y[train])
path, session = exported(model, x[:1], "multiclass")
csv = os.path.join(work, "multiclass.csv")
write_csv(csv, x[evaluation], y[evaluation], str)
labels, maps = session.run(None, {session.get_inputs()[0].name: x[evaluation]})
classes = sorted(maps[0].keys())
probabilities = np.array([[m[c] for c in classes] for m in maps], dtype=np.float32)
truth = y[evaluation]
reference = {"accuracy": sk.accuracy_score(truth, labels), "f1_macro": sk.f1_score(truth, labels, average="macro"),
             "precision_macro": sk.precision_score(truth, labels, average="macro", zero_division=0),
             "recall_macro": sk.recall_score(truth, labels, average="macro"), "log_loss": sk.log_loss(truth, probabilities, labels=classes)}
ours, error = serval_metrics(path, csv, list(reference))
check("multiclass: serval pipeline evaluate exits 0", ours is not None, error)
compare("multiclass (ZipMap)", ours, reference)

# 2. two classes with string labels, a probability matrix (no ZipMap)
x, y = make_classification(n_samples=500, n_features=4, n_informative=2, n_redundant=0, random_state=3, flip_y=0.2)
x = x.astype(np.float32)
names = np.array(["no", "yes"])[y]
model = RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0).fit(x[:300], names[:300])
path, session = exported(model, x[:1], "binary", zipmap=False)
csv = os.path.join(work, "binary.csv")
write_csv(csv, x[300:], names[300:], str)
labels, probabilities = session.run(None, {session.get_inputs()[0].name: x[300:]})
truth = names[300:]
reference = {"accuracy": sk.accuracy_score(truth, labels), "f1_macro": sk.f1_score(truth, labels, average="macro"),
             "precision_macro": sk.precision_score(truth, labels, average="macro", zero_division=0),
             "recall_macro": sk.recall_score(truth, labels, average="macro"),
             "roc_auc": sk.roc_auc_score(truth, probabilities[:, list(model.classes_).index("yes")]),
             "log_loss": sk.log_loss(truth, probabilities, labels=list(model.classes_))}
ours, error = serval_metrics(path, csv, list(reference))
check("binary: serval pipeline evaluate exits 0", ours is not None, error)
compare("binary (string labels)", ours, reference)

# 3. a neural classifier: its class list is the constant the label output indexes by the argmax (no classifier op)
x, y = make_classification(n_samples=500, n_features=6, n_informative=4, n_redundant=0, random_state=11, flip_y=0.1)
x = x.astype(np.float32)
names = np.array(["ham", "spam"])[y]
model = MLPClassifier(hidden_layer_sizes=(16,), max_iter=400, random_state=0).fit(x[:300], names[:300])
path, session = exported(model, x[:1], "mlp", zipmap=False)
csv = os.path.join(work, "mlp.csv")
write_csv(csv, x[300:], names[300:], str)
labels, probabilities = session.run(None, {session.get_inputs()[0].name: x[300:]})
truth = names[300:]
reference = {"accuracy": sk.accuracy_score(truth, labels), "f1_macro": sk.f1_score(truth, labels, average="macro"),
             "roc_auc": sk.roc_auc_score(truth, probabilities[:, list(model.classes_).index("spam")]),
             "log_loss": sk.log_loss(truth, probabilities, labels=list(model.classes_))}
ours, error = serval_metrics(path, csv, list(reference))
check("mlp: serval pipeline evaluate exits 0", ours is not None, error)
compare("mlp (class list by argmax)", ours, reference)

# 4. regression
x, y = make_regression(n_samples=400, n_features=6, noise=10.0, random_state=5)
x = x.astype(np.float32)
model = LinearRegression().fit(x[:250], y[:250])
path, session = exported(model, x[:1], "regression")
csv = os.path.join(work, "regression.csv")
write_csv(csv, x[250:], y[250:], lambda v: "%.17g" % v)
predicted = session.run(None, {session.get_inputs()[0].name: x[250:]})[0].ravel().astype(np.float64)
truth = y[250:]
reference = {"mae": sk.mean_absolute_error(truth, predicted), "rmse": float(np.sqrt(sk.mean_squared_error(truth, predicted))),
             "r2": sk.r2_score(truth, predicted)}
ours, error = serval_metrics(path, csv, list(reference))
check("regression: serval pipeline evaluate exits 0", ours is not None, error)
compare("regression", ours, reference)

# 5. a label column that is not there
result = subprocess.run([serval, "pipeline", "evaluate", path, "--data", csv, "--label-column", "species"], capture_output=True, text=True)
check("an absent label column is exit 1 naming it", result.returncode == 1 and "label_column 'species' is not a column" in result.stderr, result.stderr)
check.finish()
