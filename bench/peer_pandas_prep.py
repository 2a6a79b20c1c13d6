#!/usr/bin/env python3
"""The peer for the data phases: the first phases of shared/bench/peer_sklearn.py
(read with declared dtypes, validate, derive features, split 80/20 with seed 42)
followed by the preprocessing its pipeline fits (median imputation and standard
scaling of the numeric columns, one-hot encoding of city and condition), fitted
on the train rows and applied to all rows, as `bench/houses_prep.mlp` does.

    python3 bench/peer_pandas_prep.py houses.csv

Prints one JSON object with seconds per phase and the total.
"""
import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CITIES = ["Austin", "Boston", "Chicago", "Denver", "Miami", "Portland", "Seattle", "Tucson"]


def main():
    path = sys.argv[1]
    t = {}
    t0 = time.perf_counter()
    s = time.perf_counter()
    df = pd.read_csv(
        path,
        dtype={"id": "int64", "city": "category", "condition": "category", "sqft": "float64",
               "lot_sqft": "float64", "bedrooms": "Int64", "year_built": "Int64",
               "has_garage": "bool", "price": "float64", "sold_fast": "bool"},
        parse_dates=["sold_at"], date_format="%Y-%m-%d")
    t["read"] = time.perf_counter() - s

    s = time.perf_counter()
    problems = []
    if not df["id"].is_unique:
        problems.append("unique id")
    for c in ["id", "sqft", "price"]:
        if df[c].isna().any():
            problems.append(f"not_null {c}")
    yb = df["year_built"].dropna()
    if ((yb < 1800) | (yb > 2030)).any():
        problems.append("range year_built")
    if ((df["sqft"] < 100) | (df["sqft"] > 50000)).any():
        problems.append("range sqft")
    if not df["city"].isin(CITIES).all():
        problems.append("values city")
    if len(df) < 1000:
        problems.append("rows >= 1000")
    t["validate"] = time.perf_counter() - s
    if problems:
        print(json.dumps({"error": "checks failed", "failed": problems}))
        sys.exit(1)

    s = time.perf_counter()
    df["age"] = (df["sold_at"].dt.year - df["year_built"]).astype("float64")
    df["month"] = df["sold_at"].dt.month.astype("float64")
    df["weekend"] = (df["sold_at"].dt.day_of_week >= 5).astype("float64")
    df["per_room"] = df["sqft"] / (df["bedrooms"].astype("float64") + 1)
    df["bedrooms"] = df["bedrooms"].astype("float64")
    df["year_built"] = df["year_built"].astype("float64")
    train, test = train_test_split(df, test_size=0.2, random_state=42)
    t["features_split"] = time.perf_counter() - s

    s = time.perf_counter()
    numeric = ["sqft", "lot_sqft", "bedrooms", "year_built", "age", "month", "per_room"]
    prep = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")),
                          ("scale", StandardScaler())]), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "condition"]),
    ])
    prep.fit(train)
    out_train = prep.transform(train)
    out_test = prep.transform(test)
    t["preprocess"] = time.perf_counter() - s
    t["total"] = time.perf_counter() - t0
    print(json.dumps({"tool": "pandas+scikit-learn", "rows": len(df),
                      "train_rows": int(out_train.shape[0]), "test_rows": int(out_test.shape[0]),
                      "seconds": t}))


if __name__ == "__main__":
    main()
