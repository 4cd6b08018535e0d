"""Shared measures for the golden checks."""
import numpy as np


def cosine_distance(a, b):
    """1 - cos(a, b) over all elements, in float64."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(1 - a.dot(b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def cpu_has_vnni():
    """Whether this CPU has VNNI (AVX-512 VNNI or AVX-VNNI), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags


def int8_verdict(label, actual, reference, ort_int8):
    """Checks an int8 run by serval against the float reference and onnxruntime's int8 run; prints one line.
    Both int8 runs must be within 1% cosine distance of float, and within 1e-3 of each other.

    Without VNNI, onnxruntime's u8s8 kernels multiply-add pairs into saturating 16-bit sums (VPMADDUBSW), so its
    int8 output can drift from the exact integer result. There, when onnxruntime's own run misses the float limit,
    serval (exact 32-bit accumulation) is held to the float limit alone and onnxruntime's figures are reported."""
    serval_distance, ort_distance = cosine_distance(actual, reference), cosine_distance(ort_int8, reference)
    between = cosine_distance(actual, ort_int8)
    saturating = not cpu_has_vnni() and ort_distance >= 1e-2
    if saturating:
        ok = actual.shape == reference.shape and serval_distance < 1e-2
        note = " (no VNNI here: onnxruntime's u8s8 kernel saturates, so only the float limit applies)"
    else:
        ok = actual.shape == reference.shape and serval_distance < 1e-2 and ort_distance < 1e-2 and between < 1e-3
        note = ""
    print(f"{'ok  ' if ok else 'FAIL'} {label}: cosine distance to float: serval {serval_distance:.2e}, "
          f"onnxruntime {ort_distance:.2e} (limit 1e-2); serval vs onnxruntime int8 {between:.2e} (limit 1e-3){note}")
    return ok
