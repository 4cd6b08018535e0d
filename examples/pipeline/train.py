"""Trains the example's classifier: scikit-learn's logistic regression (or, with the param `model: mlp`, a small
neural network worth quantizing), exported to ONNX with skl2onnx.
Serval's pipeline calls it as `python train.py --train ${data.train} --params ${params_file} --out ${outputs.model}`;
the contract is only to write an ONNX file at --out."""
import argparse
import json

import numpy as np
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", required=True)
    parser.add_argument("--params", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.params) as handle:
        params = json.load(handle)
    data = np.loadtxt(args.train, delimiter=",", skiprows=1)
    features, labels = data[:, :4].astype(np.float32), data[:, 4].astype(np.int64)
    if params.get("model") == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(64, 64), alpha=1.0 / float(params["C"]), max_iter=int(params["max_iter"]), random_state=0)
    else:
        model = LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"]))
    model.fit(features, labels)
    print(f"trained on {len(labels)} rows with C={params['C']}: training accuracy {model.score(features, labels):.4f}")
    onnx = to_onnx(model, features[:1], options={id(model): {"zipmap": False}}, target_opset=15)
    with open(args.out, "wb") as handle:
        handle.write(onnx.SerializeToString())


if __name__ == "__main__":
    main()
