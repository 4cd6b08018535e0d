"""Writes an iris-like data set for the retraining example: data/train.csv and data/eval.csv (four measurements,
species 0/1/2), and models/iris/reference.csv, the rows monitoring compares live traffic with.

    python make_data.py            # the world the first model is trained on
    python make_data.py --shifted  # later: petals grow longer and sepals narrower, so the old model errs
"""
import argparse
import os

import numpy as np

MEANS = np.array([[5.0, 3.4, 1.5, 0.25], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
SPREAD = np.array([0.35, 0.3, 0.45, 0.2])
SHIFT = np.array([0.0, -0.6, 1.6, 0.5])
HEADER = "sepal_length,sepal_width,petal_length,petal_width,species"


def rows(count, shifted, rng):
    species = rng.integers(0, 3, size=count)
    features = MEANS[species] + rng.normal(size=(count, 4)) * SPREAD + (SHIFT if shifted else 0)
    return features, species


def write(path, features, species):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(HEADER + "\n")
        for row, label in zip(features, species):
            handle.write(",".join(f"{value:.3f}" for value in row) + f",{label}\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shifted", action="store_true")
    parser.add_argument("--folder", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed if args.seed is not None else (2 if args.shifted else 1))
    write(os.path.join(args.folder, "data/train.csv"), *rows(600, args.shifted, rng))
    write(os.path.join(args.folder, "data/eval.csv"), *rows(300, args.shifted, rng))
    if not args.shifted:
        write(os.path.join(args.folder, "models/iris/reference.csv"), *rows(300, False, rng))


if __name__ == "__main__":
    main()
