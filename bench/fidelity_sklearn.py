#!/usr/bin/env python3
"""scikit-learn's side of the model fidelity tests: fits the models of
tests/fixtures/fidelity/pipeline.mlp on the same rows (the `part` column is the
split) and prints their coefficients and test metrics as JSON.

    python3 bench/fidelity_sklearn.py tests/fixtures/fidelity/data.csv > tests/fixtures/fidelity/sklearn.json

runtime/tests/models.rs compares mlp's models with this file (and with a live
run of this script when Python with scikit-learn is available).
"""
import json
import sys

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, mean_squared_error
from sklearn.naive_bayes import GaussianNB
from sklearn.metrics import log_loss
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier
from sklearn.ensemble import AdaBoostClassifier, RandomForestClassifier
from sklearn.metrics import roc_auc_score

df = pd.read_csv(sys.argv[1])
tr, te = df[df.part == "train"], df[df.part == "test"]
X = ["x1", "x2", "x3"]
out = {}
for name, model in [("ols", LinearRegression()), ("ridge", Ridge(alpha=10.0)),
                    ("lasso", Lasso(alpha=0.1, max_iter=10000, tol=1e-7)),
                    ("enet", ElasticNet(alpha=0.1, l1_ratio=0.3, max_iter=10000, tol=1e-7))]:
    model.fit(tr[X], tr["y"])
    pred = model.predict(te[X])
    out[name] = {"coef": list(map(float, model.coef_)), "intercept": float(model.intercept_),
                 "rmse": float(np.sqrt(mean_squared_error(te["y"], pred)))}
# Permutation importance of the linear models on the test rows (scoring as
# mlp's report: the evaluation's first metric), 5 repeats, seeded.
ols = LinearRegression().fit(tr[X], tr["y"])
pi = permutation_importance(ols, te[X], te["y"], scoring="neg_root_mean_squared_error",
                            n_repeats=5, random_state=42)
out["ols"]["permutation"] = {"mean": list(map(float, pi.importances_mean)),
                             "std": list(map(float, pi.importances_std))}
clf = LogisticRegression(C=1.0, max_iter=1000).fit(tr[X], tr["label"])
pi = permutation_importance(clf, te[X], te["label"], scoring="accuracy", n_repeats=5, random_state=42)
perm_logistic = {"mean": list(map(float, pi.importances_mean)), "std": list(map(float, pi.importances_std))}
# The same objective solved to its minimum (a tight tol), for the coefficients.
tight = LogisticRegression(C=1.0, max_iter=10000, tol=1e-12).fit(tr[X], tr["label"])
out["logistic"] = {"accuracy": float(accuracy_score(te["label"], clf.predict(te[X]))),
                   "coef": list(map(float, tight.coef_[0])), "intercept": float(tight.intercept_[0]),
                   "permutation": perm_logistic}
# Weighted: class_weight as a map and balanced (the same objective, each
# row's loss weighted by its class's weight).
for name, cw in [("logistic_weighted", {"yes": 3.0}), ("logistic_balanced", "balanced")]:
    m = LogisticRegression(C=1.0, max_iter=10000, tol=1e-12, class_weight=cw).fit(tr[X], tr["label"])
    out[name] = {"coef": list(map(float, m.coef_[0])), "intercept": float(m.intercept_[0])}

# Weighted row by row by the column `w` (sample_weight).
m = LogisticRegression(C=1.0, max_iter=10000, tol=1e-12).fit(tr[X], tr["label"], sample_weight=tr["w"])
out["logistic_sw"] = {"coef": list(map(float, m.coef_[0])), "intercept": float(m.intercept_[0])}
# Both: scikit-learn's balanced weights count each class's rows by their
# sample weights.
m = LogisticRegression(C=1.0, max_iter=10000, tol=1e-12, class_weight="balanced").fit(
    tr[X], tr["label"], sample_weight=tr["w"])
out["logistic_balanced_sw"] = {"coef": list(map(float, m.coef_[0])), "intercept": float(m.intercept_[0])}


def probabilistic(model, sample_weight=None):
    """Accuracy, log loss and ROC AUC on the test rows, and P(yes) per row."""
    model.fit(tr[X], tr["label"], sample_weight=sample_weight)
    p = model.predict_proba(te[X])
    yes = list(model.classes_).index("yes")
    out = {"accuracy": float(accuracy_score(te["label"], model.predict(te[X]))),
           "log_loss": float(log_loss(te["label"], p, labels=model.classes_)),
           "roc_auc": float(roc_auc_score(te["label"] == "yes", p[:, yes])),
           "proba_yes": [float(v) for v in p[:, yes]]}
    if hasattr(model, "feature_importances_"):
        out["importances"] = [float(v) for v in model.feature_importances_]
    return out


# Trees: a leaf's probability is its training rows' class shares; a forest
# averages its trees'; AdaBoost is SAMME (softmax of the weighted votes).
out["tree"] = probabilistic(DecisionTreeClassifier(max_depth=4, random_state=0))
out["tree_balanced"] = probabilistic(DecisionTreeClassifier(max_depth=4, random_state=0,
                                                            class_weight="balanced"))
out["forest"] = probabilistic(RandomForestClassifier(
    n_estimators=50, max_depth=4, max_features=0.7, random_state=3))
out["boost"] = probabilistic(AdaBoostClassifier(
    DecisionTreeClassifier(max_depth=1), n_estimators=30, random_state=3))
# Histogram gradient boosting with its defaults (100 iterations, 31 leaves,
# 255 bins; no early stopping under 10,000 rows).
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import r2_score
hgb = HistGradientBoostingRegressor().fit(tr[X], tr["y"])
out["gbr"] = {"rmse": float(np.sqrt(mean_squared_error(te["y"], hgb.predict(te[X])))),
              "r2": float(r2_score(te["y"], hgb.predict(te[X])))}
out["gbc"] = probabilistic(HistGradientBoostingClassifier())
out["gbc_balanced"] = probabilistic(HistGradientBoostingClassifier(class_weight="balanced"))
out["tree_sw"] = probabilistic(DecisionTreeClassifier(max_depth=4, random_state=0), tr["w"])
hgb = HistGradientBoostingRegressor().fit(tr[X], tr["y"], sample_weight=tr["w"])
out["gbr_sw"] = {"rmse": float(np.sqrt(mean_squared_error(te["y"], hgb.predict(te[X])))),
                 "r2": float(r2_score(te["y"], hgb.predict(te[X])))}
from sklearn.metrics import mean_absolute_error
for name, sw in [("gbr_l1", None), ("gbr_l1_sw", tr["w"])]:
    hgb = HistGradientBoostingRegressor(loss="absolute_error").fit(tr[X], tr["y"], sample_weight=sw)
    out[name] = {"mae": float(mean_absolute_error(te["y"], hgb.predict(te[X]))),
                 "r2": float(r2_score(te["y"], hgb.predict(te[X])))}
from sklearn.ensemble import GradientBoostingRegressor
for name, sw in [("gbr_huber", None), ("gbr_huber_sw", tr["w"])]:
    gb = GradientBoostingRegressor(loss="huber", alpha=0.9, n_estimators=100, learning_rate=0.1,
                                   max_depth=None, max_leaf_nodes=31, min_samples_leaf=20,
                                   random_state=0).fit(tr[X], tr["y"], sample_weight=sw)
    out[name] = {"rmse": float(np.sqrt(mean_squared_error(te["y"], gb.predict(te[X])))),
                 "mae": float(mean_absolute_error(te["y"], gb.predict(te[X])))}
# A category input split natively (its levels sorted, as mlp codes them).
Xc = X + ["grp"]
cat = lambda d: d[Xc].assign(grp=d["grp"].astype("category"))
hgb = HistGradientBoostingRegressor(categorical_features=["grp"]).fit(cat(tr), tr["yc"])
out["gbr_cat"] = {"rmse": float(np.sqrt(mean_squared_error(te["yc"], hgb.predict(cat(te))))),
                  "r2": float(r2_score(te["yc"], hgb.predict(cat(te))))}
hgb = HistGradientBoostingClassifier(categorical_features=["grp"]).fit(cat(tr), tr["label_c"])
proba = hgb.predict_proba(cat(te))
out["gbc_cat"] = {"log_loss": float(log_loss(te["label_c"], proba)),
                  "roc_auc": float(roc_auc_score(te["label_c"] == "yes", proba[:, 1]))}
out["gbc_sw"] = probabilistic(HistGradientBoostingClassifier(class_weight="balanced"), tr["w"])
nb = GaussianNB().fit(tr[X], tr["label"])
out["nb"] = {"accuracy": float(accuracy_score(te["label"], nb.predict(te[X]))),
             "log_loss": float(log_loss(te["label"], nb.predict_proba(te[X])))}
for name, model in [("svm_rbf", SVC(kernel="rbf", gamma=0.5, C=1.0)), ("svm_lin", SVC(kernel="linear", C=1.0))]:
    model.fit(tr[X], tr["label"])
    out[name] = {"accuracy": float(accuracy_score(te["label"], model.predict(te[X])))}
svr = SVR(kernel="linear", C=1.0, epsilon=0.1).fit(tr[X], tr["y"])
out["svr"] = {"rmse": float(np.sqrt(mean_squared_error(te["y"], svr.predict(te[X]))))}
print(json.dumps(out, indent=2))
