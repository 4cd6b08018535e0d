#!/usr/bin/env python3
"""Writes the ONNX backend test data that `serval conformance` runs.

Usage: generate-data.py OUT_DIR

OUT_DIR/node/<case>/              single-node cases, regenerated from the onnx wheel's case generators
OUT_DIR/{simple,pytorch-converted,pytorch-operator}/<case>/   copied from the wheel
OUT_DIR/light/<case>/             the wheel's model-zoo topologies, turned into ordinary case folders
                                  (input as onnx's backend runner makes it: arange(n)/n, float32)

Every case folder holds model.onnx and test_data_set_N/{input,output}_K.pb (TensorProto).
The output is deterministic: the onnx case generators seed numpy per case.
"""
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case.node import collect_testcases
from onnx.backend.test.cmd_tools import generate_data


def write_node_cases(out: str) -> None:
    # generate_data writes the cases returned by the model case collector; hand it the node cases instead.
    import onnx.backend.test.case.model as model_cases

    original = model_cases.collect_testcases
    model_cases.collect_testcases = lambda *args, **kwargs: collect_testcases(None)
    try:
        class Args:
            output = out
            op_type = None
        generate_data(Args())
    finally:
        model_cases.collect_testcases = original


def copy_wheel_sets(out: str, data_dir: str) -> None:
    for name in ("simple", "pytorch-converted", "pytorch-operator"):
        target = os.path.join(out, name)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(os.path.join(data_dir, name), target)


def write_light_cases(out: str, data_dir: str) -> None:
    light = os.path.join(data_dir, "light")
    for file in sorted(os.listdir(light)):
        if not file.endswith(".onnx"):
            continue
        stem = file[: -len(".onnx")]
        model = onnx.load(os.path.join(light, file))
        initializers = {i.name for i in model.graph.initializer}
        case_dir = os.path.join(out, "light", "test_" + stem[len("light_"):])
        data_set = os.path.join(case_dir, "test_data_set_0")
        shutil.rmtree(case_dir, ignore_errors=True)
        os.makedirs(data_set)
        shutil.copy(os.path.join(light, file), os.path.join(case_dir, "model.onnx"))
        index = 0
        for value in model.graph.input:
            if value.name in initializers:
                continue
            shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim)
            count = int(np.prod(shape))
            array = (np.arange(count).reshape(shape) / count).astype(np.float32)
            with open(os.path.join(data_set, f"input_{index}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(array, value.name).SerializeToString())
            index += 1
        for k in range(len(model.graph.output)):
            shutil.copy(os.path.join(light, f"{stem}_output_{k}.pb"), os.path.join(data_set, f"output_{k}.pb"))


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: generate-data.py OUT_DIR")
    out = os.path.abspath(sys.argv[1])
    data_dir = os.path.join(os.path.dirname(onnx.backend.test.__file__), "data")
    os.makedirs(out, exist_ok=True)
    write_node_cases(out)
    copy_wheel_sets(out, data_dir)
    write_light_cases(out, data_dir)


if __name__ == "__main__":
    main()
