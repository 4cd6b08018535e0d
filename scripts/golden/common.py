"""Shared measures for the golden checks."""
import numpy as np


def cosine_distance(a, b):
    """1 - cos(a, b) over all elements, in float64."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(1 - a.dot(b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def int8_verdict(label, actual, reference, ort_int8):
    """Checks an int8 run by serval against the float reference and onnxruntime's int8 run; prints one line.
    Both int8 runs must be within 1% cosine distance of float, and within 1e-3 of each other."""
    serval_distance, ort_distance = cosine_distance(actual, reference), cosine_distance(ort_int8, reference)
    between = cosine_distance(actual, ort_int8)
    ok = actual.shape == reference.shape and serval_distance < 1e-2 and ort_distance < 1e-2 and between < 1e-3
    print(f"{'ok  ' if ok else 'FAIL'} {label}: cosine distance to float: serval {serval_distance:.2e}, "
          f"onnxruntime {ort_distance:.2e} (limit 1e-2); serval vs onnxruntime int8 {between:.2e} (limit 1e-3)")
    return ok
