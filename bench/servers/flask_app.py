"""Flask + onnxruntime KServe-v2-style server: the 'write it yourself in Python' peer for bench/server.py.

Run: gunicorn -w 2 -b 127.0.0.1:PORT 'flask_app:create_app("/path/to/repository")'
"""
import os

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def create_app(repository):
    app = Flask(__name__)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {
        name: ort.InferenceSession(os.path.join(repository, name, "1", "model.onnx"), options, providers=["CPUExecutionProvider"])
        for name in os.listdir(repository)
    }

    @app.get("/v2/health/ready")
    def ready():
        return jsonify({"ready": True})

    @app.post("/v2/models/<name>/infer")
    def infer(name):
        session = sessions[name]
        body = request.get_json(force=True)
        feeds = {i["name"]: np.asarray(i["data"], dtype=DTYPES[i["datatype"]]).reshape(i["shape"]) for i in body["inputs"]}
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, feeds)
        outputs = [{"name": n, "shape": list(r.shape), "datatype": "FP32" if r.dtype == np.float32 else "INT64",
                    "data": r.flatten().tolist()} for n, r in zip(names, results)]
        return jsonify({"model_name": name, "outputs": outputs})

    return app
