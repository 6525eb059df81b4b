#!/usr/bin/env python3
"""Builds the ONNX models osprey's inference tests and benches run, and
records what onnxruntime answers for them.

    python tests/models/make_models.py              # test models -> tests/models/
    python tests/models/make_models.py --bench DIR  # bench models -> DIR

The bench models (a 100-tree RandomForest, 100-tree GradientBoosting binary
and multiclass, a wider MLP) are a few MB, so benches generate them into
target/ instead of the repository.

Needs scikit-learn, skl2onnx, onnx, onnxruntime and numpy. Everything is
seeded, so a rerun reproduces the same models and outputs. `cargo test`
never runs this script: its output is committed.

Test models (tests/models/):
  * scikit-learn models exported by skl2onnx the way a data scientist would
    (zipmap off): an MLP, RandomForest and GradientBoosting classifiers
    (binary and multiclass, integer and string labels), a RandomForest
    regressor, and an autoencoder whose reconstruction error is computed
    inside the graph;
  * small hand-built TreeEnsembleClassifier / TreeEnsembleRegressor graphs
    (tests/models/ops/) for what skl2onnx never emits: every branch mode,
    missing-value tracking, every post_transform, MIN/MAX/AVERAGE, several
    targets, base values, `*_as_tensor` (double) attributes, odd node ids.
Each scikit-learn model comes with a feature spec (NAME.toml, the format of
models/*.toml) whose columns are the first 20 of models/train/features.toml.
cases.json lists every case with onnxruntime's outputs for a fixed input
batch (input.json, 64 rows; input_nan.json, 16 rows with missing values).
"""

import argparse
import json
import os
import sys
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor

COLUMNS = 20
INPUT = "float_input"
OPSETS = {"": 17, "ai.onnx.ml": 3}


def datasets():
    """Fixed synthetic data: 3-class, binary and regression problems."""
    x3, y3 = make_classification(
        n_samples=3000, n_features=COLUMNS, n_informative=10, n_redundant=4,
        n_classes=3, n_clusters_per_class=2, random_state=7)
    x2, y2 = make_classification(
        n_samples=3000, n_features=COLUMNS, n_informative=8, n_redundant=4,
        n_classes=2, random_state=11)
    xr, yr = make_regression(
        n_samples=3000, n_features=COLUMNS, n_informative=10, noise=5.0,
        random_state=5)
    return (x3.astype(np.float32), y3), (x2.astype(np.float32), y2), (
        xr.astype(np.float32), yr.astype(np.float32))


def export(model, name):
    onx = convert_sklearn(
        model, name=name,
        initial_types=[(INPUT, FloatTensorType([None, COLUMNS]))],
        options={id(model): {"zipmap": False}} if hasattr(model, "classes_") else None,
        target_opset=OPSETS)
    # skl2onnx lists opsets in set order, which varies from run to run.
    opsets = sorted(onx.opset_import, key=lambda o: o.domain)
    del onx.opset_import[:]
    onx.opset_import.extend(opsets)
    return onx


def autoencoder(x, hidden):
    """MLPRegressor trained to reproduce its input; the graph then computes
    the mean squared reconstruction error per row as output "score"."""
    ae = MLPRegressor(hidden_layer_sizes=hidden, max_iter=300, random_state=3)
    ae.fit(x, x)
    onx = export(ae, "autoencoder")
    graph = onx.graph
    recon = graph.output[0].name
    # skl2onnx reshapes MLPRegressor's output to [N*targets, 1] (it expects a
    # single target); the reconstruction is the tensor before that reshape.
    last = [n for n in graph.node if recon in n.output][0]
    if last.op_type == "Reshape":
        recon = last.input[0]
        graph.node.remove(last)
        for init in [i for i in graph.initializer if i.name == last.input[1]]:
            graph.initializer.remove(init)
    graph.node.extend([
        helper.make_node("Sub", [recon, INPUT], ["ae_diff"], name="ae_sub"),
        helper.make_node("Mul", ["ae_diff", "ae_diff"], ["ae_sq"], name="ae_sq"),
        helper.make_node("ReduceMean", ["ae_sq"], ["score"], name="ae_mean",
                         axes=[1], keepdims=1),
    ])
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])])
    onnx.checker.check_model(onx)
    err = ((ae.predict(x) - x) ** 2).mean(axis=1)
    return onx, float(np.quantile(err, 0.99))


def threshold_rows(models, rng, n):
    """Rows whose features sit exactly on split thresholds of the given tree
    models, so `<=` versus `<` shows."""
    pairs = []
    for onx in models:
        for node in onx.graph.node:
            if not node.op_type.startswith("TreeEnsemble"):
                continue
            a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
            for f, v, m in zip(a["nodes_featureids"], a["nodes_values"], a["nodes_modes"]):
                if m != b"LEAF":
                    pairs.append((f, np.float32(v)))
    rows = []
    for _ in range(n):
        row = rng.normal(size=COLUMNS).astype(np.float32)
        for i in rng.choice(len(pairs), size=min(len(pairs), 40), replace=False):
            f, v = pairs[i]
            row[f] = v
        rows.append(row)
    return np.array(rows, dtype=np.float32)


def run_ort(onx, x):
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outputs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    for col in unwritten_columns(onx):
        outputs["probabilities"][:, col] = np.nan  # not data: recorded as null
    return outputs


def encode_output(value):
    value = np.asarray(value)
    if value.dtype.kind in "OUS":
        return {"dtype": "string", "shape": list(value.shape), "data": [str(v) for v in value.ravel()]}
    if value.dtype.kind in "iu":
        return {"dtype": "int64", "shape": list(value.shape), "data": [int(v) for v in value.ravel()]}
    # JSON has no NaN or infinities: NaN is null, infinities are strings.
    return {"dtype": "float32", "shape": list(value.shape),
            "data": [None if np.isnan(v) else (str(float(v)) if np.isinf(v) else float(v))
                     for v in value.astype(np.float32).ravel()]}


def encode_rows(x):
    return [[None if np.isnan(v) else float(v) for v in row] for row in x]


# ---------------------------------------------------------------- hand-built

MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]


class Forest:
    """Random trees over the input columns, thresholds drawn from the input
    batch itself so that EQ/NEQ and the boundaries are actually hit."""

    def __init__(self, rng, x, trees, depth, modes, missing, node_id_base=0, shuffle=False):
        self.nodes = []  # (tree, node, feature, mode, value, true, false, missing)
        self.leaves = []  # (tree, node)
        for t in range(trees):
            counter = [node_id_base]
            listed = []

            def grow(d):
                me = counter[0]
                counter[0] += 1
                if d == depth or (d > 1 and rng.random() < 0.2):
                    listed.append((t, me, 0, "LEAF", 0.0, 0, 0, 0))
                    self.leaves.append((t, me))
                    return me
                f = int(rng.integers(COLUMNS))
                v = float(x[int(rng.integers(len(x))), f])
                if np.isnan(v):
                    v = 0.0
                mode = modes[int(rng.integers(len(modes)))]
                slot = len(listed)
                listed.append(None)
                yes = grow(d + 1)
                no = grow(d + 1)
                listed[slot] = (t, me, f, mode, v, yes, no, int(missing and rng.random() < 0.5))
                return me

            grow(0)
            if shuffle:
                # The root stays first, as onnxruntime requires; the rest of
                # the tree is listed in any order.
                rest = listed[1:]
                rng.shuffle(rest)
                listed = [listed[0]] + rest
            self.nodes.extend(listed)

    def node_attrs(self, as_tensor=False):
        cols = list(zip(*self.nodes))
        attrs = {
            "nodes_treeids": list(cols[0]), "nodes_nodeids": list(cols[1]),
            "nodes_featureids": list(cols[2]), "nodes_modes": list(cols[3]),
            "nodes_truenodeids": list(cols[5]), "nodes_falsenodeids": list(cols[6]),
            "nodes_missing_value_tracks_true": list(cols[7]),
        }
        if as_tensor:
            attrs["nodes_values_as_tensor"] = numpy_helper.from_array(
                np.array(cols[4], dtype=np.float64), "nodes_values")
        else:
            attrs["nodes_values"] = list(cols[4])
        return attrs


def leaf_weights(rng, forest, outputs, per_leaf, sign, scale):
    tree_ids, node_ids, ids, weights = [], [], [], []
    for t, n in forest.leaves:
        chosen = rng.choice(outputs, size=per_leaf(rng), replace=False) if outputs > 1 else [0] * per_leaf(rng)
        for c in chosen:
            tree_ids.append(t)
            node_ids.append(n)
            ids.append(int(c))
            w = float(rng.random() * scale)
            if sign == "mixed" and rng.random() < 0.5:
                w = -w
            weights.append(w)
    return tree_ids, node_ids, ids, weights


def single_node_model(op, attrs, outputs, cast_double=False):
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, COLUMNS])]
    nodes = []
    source = INPUT
    if cast_double:
        nodes.append(helper.make_node("Cast", [INPUT], ["x64"], to=TensorProto.DOUBLE, name="cast"))
        source = "x64"
    nodes.append(helper.make_node(op, [source], [o[0] for o in outputs], domain="ai.onnx.ml",
                                  name=op.lower(), **attrs))
    outs = [helper.make_tensor_value_info(name, dt, shape) for name, dt, shape in outputs]
    graph = helper.make_graph(nodes, op.lower(), inputs, outs)
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)], producer_name="osprey-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def classifier(rng, x, name, n_classes, trees=5, depth=4, modes=MODES, missing=True,
               post="NONE", base=None, per_leaf=None, sign="positive", scale=1.0,
               labels="int", as_tensor=False, node_id_base=0, shuffle=False, class_ids=None):
    forest = Forest(rng, x, trees, depth, modes, missing, node_id_base, shuffle)
    per_leaf = per_leaf or (lambda r: int(r.integers(1, n_classes + 1)))
    tids, nids, cids, ws = leaf_weights(rng, forest, n_classes if class_ids is None else class_ids,
                                        per_leaf, sign, scale)
    attrs = forest.node_attrs(as_tensor)
    attrs.update({"class_treeids": tids, "class_nodeids": nids, "class_ids": cids,
                  "post_transform": post})
    if as_tensor:
        attrs["class_weights_as_tensor"] = numpy_helper.from_array(np.array(ws, np.float64), "w")
    else:
        attrs["class_weights"] = ws
    if base is not None:
        if as_tensor:
            attrs["base_values_as_tensor"] = numpy_helper.from_array(np.array(base, np.float64), "b")
        else:
            attrs["base_values"] = base
    if labels == "int":
        attrs["classlabels_int64s"] = [10 * (i + 1) for i in range(n_classes)]
        label_type = TensorProto.INT64
    else:
        attrs["classlabels_strings"] = [f"class_{chr(97 + i)}" for i in range(n_classes)]
        label_type = TensorProto.STRING
    outputs = [("label", label_type, [None]), ("probabilities", TensorProto.FLOAT, [None, n_classes])]
    return name, single_node_model("TreeEnsembleClassifier", attrs, outputs, cast_double=as_tensor)


def regressor(rng, x, name, n_targets, trees=5, depth=4, modes=MODES, missing=True,
              post="NONE", base=None, aggregate="SUM", per_leaf=None, sign="mixed",
              scale=1.0, as_tensor=False, node_id_base=0, shuffle=False):
    forest = Forest(rng, x, trees, depth, modes, missing, node_id_base, shuffle)
    per_leaf = per_leaf or (lambda r: int(r.integers(1, n_targets + 1)))
    tids, nids, ids, ws = leaf_weights(rng, forest, n_targets, per_leaf, sign, scale)
    attrs = forest.node_attrs(as_tensor)
    attrs.update({"target_treeids": tids, "target_nodeids": nids, "target_ids": ids,
                  "n_targets": n_targets, "post_transform": post, "aggregate_function": aggregate})
    if as_tensor:
        attrs["target_weights_as_tensor"] = numpy_helper.from_array(np.array(ws, np.float64), "w")
    else:
        attrs["target_weights"] = ws
    if base is not None:
        if as_tensor:
            attrs["base_values_as_tensor"] = numpy_helper.from_array(np.array(base, np.float64), "b")
        else:
            attrs["base_values"] = base
    outputs = [("variable", TensorProto.FLOAT, [None, n_targets])]
    return name, single_node_model("TreeEnsembleRegressor", attrs, outputs, cast_double=as_tensor)


def unwritten_columns(onx):
    """Probability columns onnxruntime never writes, so they hold whatever
    its allocator left there: with two classes, one voted class and PROBIT,
    it writes only the first column. The tests skip these."""
    node = onx.graph.node[-1]
    if node.op_type != "TreeEnsembleClassifier":
        return []
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    labels = a.get("classlabels_int64s") or a.get("classlabels_strings")
    if len(labels) == 2 and len(set(a["class_ids"])) == 1 and a.get("post_transform") == b"PROBIT":
        return [1]
    return []


def hand_built(x):
    rng = np.random.default_rng(2024)
    one = lambda r: 1  # noqa: E731
    cases = []
    # Multiclass, sparse votes (some classes unvoted in some leaves).
    for post in ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"]:
        cases.append(classifier(rng, x, f"cls4_{post.lower()}", 4, post=post, sign="mixed",
                                base=[0.1, -0.2, 0.3, 0.0]))
    cases.append(classifier(rng, x, "cls4_probit", 4, post="PROBIT", scale=0.18))
    cases.append(classifier(rng, x, "cls4_nobase_sparse", 4, per_leaf=one, sign="mixed"))
    cases.append(classifier(rng, x, "cls3_strings", 3, labels="str", sign="mixed", post="SOFTMAX"))
    cases.append(classifier(rng, x, "cls3_as_tensor", 3, as_tensor=True, post="SOFTMAX",
                            base=[0.25, 0.5, -0.125], sign="mixed"))
    cases.append(classifier(rng, x, "cls3_odd_ids", 3, node_id_base=5, shuffle=True, sign="mixed"))
    # Binary with a single voted class: the forms skl2onnx emits and their siblings.
    cases.append(classifier(rng, x, "bin_positive_none", 2, class_ids=1, per_leaf=one, scale=0.2))
    cases.append(classifier(rng, x, "bin_positive_logistic", 2, class_ids=1, per_leaf=one,
                            scale=0.2, post="LOGISTIC"))
    cases.append(classifier(rng, x, "bin_mixed_logistic_base1", 2, class_ids=1, per_leaf=one,
                            sign="mixed", post="LOGISTIC", base=[0.3]))
    cases.append(classifier(rng, x, "bin_mixed_none", 2, class_ids=1, per_leaf=one, sign="mixed"))
    cases.append(classifier(rng, x, "bin_mixed_softmax", 2, class_ids=1, per_leaf=one,
                            sign="mixed", post="SOFTMAX"))
    cases.append(classifier(rng, x, "bin_probit", 2, class_ids=1, per_leaf=one, scale=0.15,
                            post="PROBIT"))
    cases.append(classifier(rng, x, "bin_strings_logistic", 2, class_ids=1, per_leaf=one,
                            sign="mixed", post="LOGISTIC", labels="str", base=[-0.1]))
    cases.append(classifier(rng, x, "bin_mixed_base2", 2, class_ids=1, per_leaf=one,
                            sign="mixed", post="LOGISTIC", base=[0.2, 0.2]))
    # Binary with both classes voted (not onnxruntime's "binary case").
    cases.append(classifier(rng, x, "bin_two_ids_softmax", 2, sign="mixed", post="SOFTMAX"))
    cases.append(classifier(rng, x, "bin_two_ids_base2", 2, per_leaf=lambda r: 2, sign="mixed",
                            post="NONE", base=[0.5, 0.5]))
    # One branch mode per forest: osprey's specialised traversals.
    for mode in MODES:
        cases.append(regressor(rng, x, f"reg1_{mode.lower()}", 1, modes=[mode], missing=False,
                               per_leaf=one, trees=8, depth=5))
    cases.append(regressor(rng, x, "reg1_leq_missing", 1, modes=["BRANCH_LEQ"], missing=True,
                           per_leaf=one, trees=8, depth=5))
    for agg in ["SUM", "AVERAGE", "MIN", "MAX"]:
        cases.append(regressor(rng, x, f"reg1_{agg.lower()}_base", 1, aggregate=agg, base=[0.75],
                               per_leaf=one))
        cases.append(regressor(rng, x, f"reg3_{agg.lower()}", 3, aggregate=agg,
                               base=[0.5, -1.0, 2.0]))
    cases.append(regressor(rng, x, "reg1_probit", 1, post="PROBIT", per_leaf=one, sign="positive",
                           scale=0.15))
    cases.append(regressor(rng, x, "reg1_first_weight_only", 1, per_leaf=lambda r: 2))
    for post in ["LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]:
        scale = 0.1 if post == "PROBIT" else 1.0
        sign = "positive" if post == "PROBIT" else "mixed"
        cases.append(regressor(rng, x, f"reg3_{post.lower()}", 3, post=post, scale=scale, sign=sign))
    cases.append(regressor(rng, x, "reg2_as_tensor", 2, as_tensor=True, base=[0.1, 0.2]))
    cases.append(regressor(rng, x, "reg1_as_tensor_avg", 1, as_tensor=True, aggregate="AVERAGE",
                           per_leaf=one, base=[1.5]))
    return cases


# ---------------------------------------------------------------- main

FEATURES_TOML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                             "train", "features.toml")


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, np.floating, np.integer)):
        return repr(float(v)) if isinstance(v, (float, np.floating)) else str(int(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def spec_toml(name, onnx_file, kind, x_train, classes=None, threshold=None, label=True):
    """A feature spec (models/NAME.toml format) for one test model: the first
    COLUMNS columns of models/train/features.toml, a standard scaler fitted
    on the training data, and the outputs osprey reads."""
    with open(FEATURES_TOML, "rb") as f:
        template = tomllib.load(f)
    lines = [
        "# Generated by tests/models/make_models.py: a test fixture, not a real model.",
        "[model]",
        f"name = {toml_value(name)}",
        'version = "test"',
        f"onnx = {toml_value(onnx_file)}",
        f"kind = {toml_value('classifier' if kind == 'classifier' else 'anomaly')}",
        f"description = {toml_value('scikit-learn ' + name + ' on synthetic data')}",
        "",
        "[input]",
        f"name = {toml_value(INPUT)}",
        'dtype = "float32"',
        "",
    ]
    for feat in template["feature"][:COLUMNS]:
        lines.append("[[feature]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in feat.items())
        lines.append("")
    lines += ["[scaler]", 'kind = "standard"',
              f"center = {toml_value([round(float(v), 6) for v in x_train.mean(axis=0)])}",
              f"scale = {toml_value([round(float(v), 6) for v in x_train.std(axis=0)])}", ""]
    if kind == "classifier":
        names = [str(c) for c in classes]
        if label and np.asarray(classes).dtype.kind in "iu":
            lines += ["[[output]]", 'name = "label"', 'dtype = "int64"', 'meaning = "label"', ""]
        lines += ["[[output]]", 'name = "probabilities"', 'dtype = "float32"',
                  'meaning = "probabilities"', f"classes = {toml_value(names)}", "",
                  "[alert]", f"benign_class = {toml_value(names[0])}", "min_probability = 0.5", ""]
    else:
        out = "variable" if kind == "regressor" else "score"
        lines += ["[[output]]", f"name = {toml_value(out)}", 'dtype = "float32"', 'meaning = "score"',
                  f"threshold = {toml_value(float(threshold))}", ""]
    return "\n".join(lines)


def test_models(out):
    (x3, y3), (x2, y2), (xr, yr) = datasets()
    names3 = np.array(["benign", "scan", "flood"])
    sk = []
    mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=1).fit(x3, y3)
    sk.append(("mlp_classifier", export(mlp, "mlp"), dict(kind="classifier", x_train=x3, classes=mlp.classes_)))
    rf = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=1).fit(x3, y3)
    sk.append(("rf_classifier", export(rf, "rf"), dict(kind="classifier", x_train=x3, classes=rf.classes_)))
    rfs = RandomForestClassifier(n_estimators=8, max_depth=5, random_state=2).fit(x3, names3[y3])
    sk.append(("rf_strings", export(rfs, "rf_strings"), dict(kind="classifier", x_train=x3, classes=rfs.classes_)))
    rfb = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=3).fit(x2, y2)
    sk.append(("rf_binary", export(rfb, "rf_binary"), dict(kind="classifier", x_train=x2, classes=rfb.classes_)))
    gbb = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=4).fit(x2, y2)
    sk.append(("gb_binary", export(gbb, "gb_binary"), dict(kind="classifier", x_train=x2, classes=gbb.classes_)))
    gbm = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=5).fit(x3, y3)
    sk.append(("gb_multiclass", export(gbm, "gb_multiclass"),
               dict(kind="classifier", x_train=x3, classes=gbm.classes_)))
    rfr = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=6).fit(xr, yr)
    sk.append(("rf_regressor", export(rfr, "rf_regressor"),
               dict(kind="regressor", x_train=xr, threshold=float(np.quantile(yr, 0.95)))))
    ae, ae_threshold = autoencoder(x3, (8,))
    sk.append(("autoencoder", ae, dict(kind="score", x_train=x3, threshold=ae_threshold)))

    rng = np.random.default_rng(99)
    x_held, _ = make_classification(
        n_samples=56, n_features=COLUMNS, n_informative=10, n_redundant=4, n_classes=3,
        n_clusters_per_class=2, random_state=1234)
    boundary = threshold_rows([m for _, m, _ in sk if _ != "mlp_classifier"], rng, 6)
    extreme = np.array([np.zeros(COLUMNS), np.full(COLUMNS, 1e6)], dtype=np.float32)
    x = np.concatenate([x_held.astype(np.float32), boundary, extreme]).astype(np.float32)
    x_nan = x[:16].copy()
    mask = rng.random(x_nan.shape) < 0.25
    x_nan[mask] = np.nan
    x_nan[0, :] = np.nan

    os.makedirs(os.path.join(out, "ops"), exist_ok=True)
    inputs = {"input.json": x, "input_nan.json": x_nan}
    for fname, arr in inputs.items():
        with open(os.path.join(out, fname), "w") as f:
            json.dump({"columns": COLUMNS, "rows": encode_rows(arr)}, f)

    cases = []
    for name, onx, spec_args in sk:
        path = f"{name}.onnx"
        onnx.save(onx, os.path.join(out, path))
        spec = f"{name}.toml"
        with open(os.path.join(out, spec), "w") as f:
            f.write(spec_toml(name, path, **spec_args))
        size = os.path.getsize(os.path.join(out, path))
        assert size < 1_000_000, f"{path} is {size} bytes"
        tree = any(n.op_type.startswith("TreeEnsemble") for n in onx.graph.node)
        for fname in (["input.json", "input_nan.json"] if tree else ["input.json"]):
            outputs = run_ort(onx, inputs[fname])
            cases.append({"name": f"{name}/{fname[:-5]}", "model": path, "input": fname, "spec": spec,
                          "outputs": {k: encode_output(v) for k, v in outputs.items()},
                          "unwritten": unwritten_columns(onx)})
    for name, onx in hand_built(x):
        path = f"ops/{name}.onnx"
        onnx.save(onx, os.path.join(out, path))
        for fname in ["input.json", "input_nan.json"]:
            outputs = run_ort(onx, inputs[fname])
            cases.append({"name": f"{name}/{fname[:-5]}", "model": path, "input": fname, "spec": None,
                          "outputs": {k: encode_output(v) for k, v in outputs.items()},
                          "unwritten": unwritten_columns(onx)})
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"generated_by": "tests/models/make_models.py",
                   "onnxruntime": ort.__version__, "cases": cases}, f, indent=0)
    print(f"{len(cases)} cases, {len(sk)} scikit-learn models, written to {out}")


def bench_models(out):
    """Bigger models for benches/inference.rs and benches/ort_compare.py, each
    with its spec, and a 1,024-row input: too large to commit."""
    (x3, y3), (x2, y2), _ = datasets()
    os.makedirs(out, exist_ok=True)
    models = {}
    mlp = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300, random_state=1).fit(x3, y3)
    models["mlp"] = (export(mlp, "mlp"), dict(kind="classifier", x_train=x3, classes=mlp.classes_))
    rf = RandomForestClassifier(n_estimators=100, random_state=1).fit(x3, y3)
    models["rf100"] = (export(rf, "rf100"), dict(kind="classifier", x_train=x3, classes=rf.classes_))
    gbb = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=4).fit(x2, y2)
    models["gb100_binary"] = (export(gbb, "gb100_binary"),
                              dict(kind="classifier", x_train=x2, classes=gbb.classes_))
    gbm = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=5).fit(x3, y3)
    models["gb100_multiclass"] = (export(gbm, "gb100_multiclass"),
                                  dict(kind="classifier", x_train=x3, classes=gbm.classes_))
    x_test, _ = make_classification(
        n_samples=1024, n_features=COLUMNS, n_informative=10, n_redundant=4, n_classes=3,
        n_clusters_per_class=2, random_state=4321)
    for name, (onx, spec_args) in models.items():
        onnx.save(onx, os.path.join(out, f"{name}.onnx"))
        with open(os.path.join(out, f"{name}.toml"), "w") as f:
            f.write(spec_toml(name, f"{name}.onnx", **spec_args))
    with open(os.path.join(out, "input.json"), "w") as f:
        json.dump({"columns": COLUMNS, "rows": encode_rows(x_test.astype(np.float32))}, f)
    print(f"{len(models)} bench models written to {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", metavar="DIR", help="write the bench models to DIR instead")
    args = parser.parse_args()
    if args.bench:
        bench_models(args.bench)
    else:
        test_models(os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    sys.exit(main())
