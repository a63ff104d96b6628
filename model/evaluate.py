"""Score ``.tflite`` models (and optionally the float Keras checkpoint) on FER2013 PublicTest
and PrivateTest, through the same preprocessing the runtime uses.

    python -m model.evaluate --model model/emotion_int8.tflite --out model/eval
    python -m model.evaluate --model a.tflite --model b.tflite --tta --history runs/x/state.json --out dir
    python -m model.evaluate --tradeoff model/figures/tradeoff.json --out model/figures

Writes ``metrics.json``, ``report.md``, one confusion-matrix PNG per model and split,
training curves when ``--history`` is given, and the accuracy-against-MACs plot of the models
in a table (``tradeoff.png``) when ``--tradeoff`` is.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import LABELS, tf_environment
from . import data as fer


def tflite_scores(model_path: str | Path, x: np.ndarray, batch: int = 256, threads: int = 2,
                  flip: bool = False) -> np.ndarray:
    """Probabilities [N,7] for uint8 faces [N,48,48] via the runtime's own preprocessing;
    with ``flip``, averaged with the mirrored faces' scores."""
    from edge.classify import Classifier

    clf = Classifier(model_path, threads=threads)

    def run(faces):
        return np.concatenate([clf.scores_for_input(clf.model_input(faces[i:i + batch]))
                               for i in range(0, len(faces), batch)])

    p = run(x)
    return (p + run(np.ascontiguousarray(x[:, :, ::-1]))) / 2 if flip else p


def keras_scores(model_path: str | Path, x: np.ndarray) -> np.ndarray:
    tf_environment()
    import keras

    m = keras.models.load_model(model_path)
    return m.predict(x[..., None].astype(np.float32), batch_size=256, verbose=0)


def metrics(y: np.ndarray, p: np.ndarray) -> dict:
    pred = p.argmax(1)
    k = len(LABELS)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    per = {}
    f1s = []
    for i, lab in enumerate(LABELS):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": round(float(prec), 4), "recall": round(float(rec), 4), "f1": round(float(f1), 4),
                    "support": int(cm[i, :].sum())}
        f1s.append(f1)
    return {"accuracy": round(float((pred == y).mean()), 4), "macro_f1": round(float(np.mean(f1s)), 4),
            "per_class": per, "confusion": cm.tolist()}


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display on a server or a Pi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm, title: str, path: Path) -> None:
    plt = pyplot()

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_history(state: dict, path: Path, title: str = "training") -> None:
    """Accuracy and loss per epoch from a run's ``state.json`` (training vs PublicTest)."""
    plt = pyplot()

    history = state.get("history", state)
    recipe = state.get("recipe", {})
    teachers = state.get("teachers")
    how = [w for w, on in (("augmented", recipe.get("augment")), ("smoothed labels", recipe.get("label_smoothing")),
                           ("distilled", teachers)) if on]
    train_label = "Training" + (f" ({', '.join(how)})" if how else "")
    ep = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for ax, key in ((axes[0], "accuracy"), (axes[1], "loss")):
        ax.plot(ep, history[key], label=train_label)
        ax.plot(ep, history[f"val_{key}"], label="PublicTest")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_runs(states: dict[str, dict], path: Path, title: str = "PublicTest accuracy per run") -> None:
    """PublicTest accuracy per epoch of several runs on one axis, to read run-to-run spread
    (seeds, reruns) at a glance. A run whose ``average.json`` was found (key ``"averaged"``)
    also gets its weight average as a marker one step after the last epoch."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    last = max(len(st.get("history", st)["val_accuracy"]) for st in states.values())
    for name, state in states.items():
        acc = np.asarray(state.get("history", state)["val_accuracy"]) * 100
        ep = np.arange(1, len(acc) + 1)
        (line,) = ax.plot(ep, acc, marker=".", label=name)
        if "averaged" in state:
            ax.plot([last + 1], [state["averaged"] * 100], marker="*", markersize=11, color=line.get_color(),
                    linestyle="none")
    if any("averaged" in st for st in states.values()):
        ticks = list(range(1, last + 2))
        ax.set_xticks(ticks, [str(t) for t in ticks[:-1]] + ["avg"])
    ax.set_xlabel("epoch (star, avg: weight average of the kept epochs)")
    ax.set_ylabel("PublicTest accuracy, %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_tradeoff(table: dict, path: Path) -> None:
    """PrivateTest and PublicTest accuracy against MACs per face, one marker per model and a line from
    each PublicTest to its PrivateTest score, with the budget and the target drawn in: where a
    model sits against both is the question every row of the model card's table answers."""
    plt = pyplot()

    style = {"single": ("o", "tab:blue"), "shipped": ("*", "tab:red"), "pair": ("D", "tab:green"),
             "ensemble": ("s", "tab:gray")}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    seen = set()
    for m in table["models"]:
        marker, color = style[m["kind"]]
        x = m["macs"] / 1e6
        ax.plot([x, x], [m["public"] * 100, m["private"] * 100], color=color, alpha=0.35, lw=1)
        ax.plot([x], [m["public"] * 100], marker=marker, color=color, mfc="white", linestyle="none")
        ax.plot([x], [m["private"] * 100], marker=marker, color=color, linestyle="none",
                markersize=11 if marker == "*" else 6, label=None if m["kind"] in seen else m["kind"])
        seen.add(m["kind"])
        if "label" in m:  # the cloud near the budget is too dense to name every model
            ax.annotate(m["label"], (x, m["private"] * 100), xytext=(5, 2), textcoords="offset points", fontsize=7)
    ax.axvline(table["budget_macs"] / 1e6, color="k", ls="--", lw=0.8)
    ax.axhline(table["target_private"] * 100, color="tab:red", ls=":", lw=0.8)
    ax.text(table["budget_macs"] / 1e6, ax.get_ylim()[0], " budget", fontsize=7, va="bottom")
    ax.text(ax.get_xlim()[0], table["target_private"] * 100, " PrivateTest target", fontsize=7, va="bottom",
            color="tab:red")
    ax.set_xlabel("M multiply-accumulates per face")
    ax.set_ylabel("int8 accuracy, % (filled: PrivateTest, hollow: PublicTest)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("FER2013 accuracy against cost, single forward pass", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _run_state(history: str) -> tuple[str, dict]:
    """A run's name and state; its weight average's PublicTest score is added when the run has one."""
    path = Path(history)
    state = json.loads(path.read_text())
    avg = path.parent / "average.json"
    if avg.is_file():
        state["averaged"] = json.loads(avg.read_text())["public_test_averaged"]
    return path.parent.name, state


def camera_suite(model_path: str | Path, split, threads: int = 2) -> dict:
    """Accuracy (FER2013 labels) on ``split`` clean and under each of model.camera.CONDITIONS, single pass,
    through the runtime's preprocessing; "mean" is the mean of the degraded conditions."""
    from .camera import CONDITIONS, condition

    out = {}
    for name in CONDITIONS:
        p = tflite_scores(model_path, condition(split.x, name, seed=0), threads=threads)
        out[name] = round(float((p.argmax(1) == split.y).mean()), 4)
    out["mean"] = round(float(np.mean([v for k, v in out.items() if k != "clean"])), 4)
    return out


def plot_camera(results: dict, path: Path) -> None:
    """Grouped bars: each model's accuracy per camera condition."""
    plt = pyplot()

    names = list(results)
    conds = list(next(iter(results.values())))
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    w = 0.8 / len(names)
    for i, n in enumerate(names):
        xs = np.arange(len(conds)) + (i - (len(names) - 1) / 2) * w
        ax.bar(xs, [results[n][c] * 100 for c in conds], width=w, label=n)
    ax.set_xticks(range(len(conds)), conds, rotation=20, ha="right")
    ax.set_ylabel("PrivateTest accuracy, %")
    ax.set_ylim(30, 80)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("FER2013 PrivateTest under camera conditions (single pass, int8)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(models: list[str], data_path, splits, tta: bool, keras_model: str | None, out: Path | None,
             history: list[str] | None = None, threads: int = 2, camera: bool = False) -> dict:
    d = fer.load(data_path, splits=tuple(splits))
    results: dict = {}
    runs = [(Path(m).name, lambda x, m=m: tflite_scores(m, x, threads=threads)) for m in models]
    if keras_model:
        runs.append((Path(keras_model).name + " (float)", lambda x: keras_scores(keras_model, x)))
    for name, fn in runs:
        results[name] = {}
        for split in splits:
            s = d[split]
            t = time.monotonic()
            p = fn(s.x)
            r = metrics(s.y, p)
            if s.votes is not None:
                # FER+ majority over the seven classes; faces whose votes all went to contempt, unknown or
                # not-a-face have no majority and are left out.
                major = s.ferplus_majority()
                keep = major >= 0
                r["ferplus_majority_accuracy"] = round(float((p[keep].argmax(1) == major[keep]).mean()), 4)
                r["ferplus_faces"] = int(keep.sum())
            r["seconds"] = round(time.monotonic() - t, 1)
            if tta:
                pf = fn(s.x[:, :, ::-1].copy())
                r["flip_tta"] = {k: v for k, v in metrics(s.y, (p + pf) / 2).items() if k in ("accuracy", "macro_f1")}
            results[name][split] = r
            extra = f"  flip-TTA {r['flip_tta']['accuracy']:.4f}" if tta else ""
            if "ferplus_majority_accuracy" in r:
                extra += f"  FER+ majority {r['ferplus_majority_accuracy']:.4f}"
            print(f"{name:<32} {split:<12} accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}{extra}",
                  flush=True)
            if out:
                out.mkdir(parents=True, exist_ok=True)
                stem = Path(name.split(" ")[0]).stem
                plot_confusion(r["confusion"], f"{name} on FER2013 {split}: accuracy {r['accuracy']:.1%}",
                               out / f"confusion_{stem}_{split}.png")
    if camera:
        split = d["PrivateTest"] if "PrivateTest" in d else d[splits[-1]]
        cams = {}
        for name, m in zip([Path(m).name for m in models], models):
            cams[name] = camera_suite(m, split, threads)
            print(f"{name:<32} camera suite  " + "  ".join(f"{k} {v:.4f}" for k, v in cams[name].items()), flush=True)
            results[name]["camera"] = cams[name]
        if out:
            out.mkdir(parents=True, exist_ok=True)
            plot_camera(cams, out / "camera.png")
    if out:
        (out / "metrics.json").write_text(json.dumps(results, indent=1))
        (out / "report.md").write_text(report_md(results))
        if history:
            state = json.loads(Path(history[0]).read_text())
            name = state.get("recipe", {}).get("arch", Path(history[0]).parent.name)
            plot_history(state, out / "training_curves.png", title=f"{name}: accuracy and loss per epoch")
        if history and len(history) > 1:
            plot_runs(dict(_run_state(h) for h in history), out / "runs_public_test.png")
    return results


def report_md(results: dict) -> str:
    lines = ["| model | split | accuracy | FER+ majority | macro-F1 | flip-TTA accuracy |", "|---|---|---|---|---|---|"]
    for name, per in results.items():
        for split, r in per.items():
            if split == "camera":
                continue
            tta = f"{r['flip_tta']['accuracy']:.1%}" if "flip_tta" in r else "-"
            fp = f"{r['ferplus_majority_accuracy']:.1%}" if "ferplus_majority_accuracy" in r else "-"
            lines.append(f"| {name} | {split} | {r['accuracy']:.1%} | {fp} | {r['macro_f1']:.3f} | {tta} |")
    lines += ["", "Per class (precision / recall / F1):", ""]
    for name, per in results.items():
        for split, r in per.items():
            if split == "camera":
                continue
            lines.append(f"**{name}, {split}**")
            lines.append("")
            lines.append("| class | precision | recall | F1 | support |")
            lines.append("|---|---|---|---|---|")
            for lab, c in r["per_class"].items():
                lines.append(f"| {lab} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], help=".tflite to score (repeatable; default: the shipped one)")
    p.add_argument("--keras", help="also score a float .keras checkpoint (needs the train extra)")
    p.add_argument("--data", help="fer2013plus.csv.gz, fer2013.csv[.gz] or image folder "
                                   "(default: ../shared/data/fer2013plus.csv.gz)")
    p.add_argument("--splits", nargs="+", default=["PublicTest", "PrivateTest"], choices=fer.SPLITS)
    p.add_argument("--tta", action="store_true", help="also report horizontal-flip test-time averaging")
    p.add_argument("--history", action="append", default=[],
                   help="state.json of a training run: plot its accuracy and loss curves; repeated, "
                        "also plot the runs' PublicTest accuracy side by side (runs_public_test.png)")
    p.add_argument("--tradeoff", metavar="JSON",
                   help="also plot accuracy against MACs for the models listed in this file "
                        "(model/figures/tradeoff.json) as tradeoff.png; alone, only that")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--camera", action="store_true",
                   help="also the camera suite: PrivateTest under blur, motion, noise, JPEG, small faces and low "
                        "light (camera.png)")
    p.add_argument("--out", help="folder for metrics.json, report.md and PNGs")
    args = p.parse_args(argv)
    models = args.model
    if args.tradeoff:
        if not args.out:
            print("error: --tradeoff needs --out", file=sys.stderr)
            return 2
        if not Path(args.tradeoff).is_file():
            print(f"error: {args.tradeoff}: no such file", file=sys.stderr)
            return 2
        Path(args.out).mkdir(parents=True, exist_ok=True)
        plot_tradeoff(json.loads(Path(args.tradeoff).read_text()), Path(args.out) / "tradeoff.png")
        if not models and not args.keras:
            return 0
    if not models and not args.keras:
        from edge.classify import shipped_model

        models = [str(shipped_model())]
    for m in models:
        if not Path(m).is_file():
            print(f"error: {m}: no such model file", file=sys.stderr)
            return 2
    return fer.cli(lambda: evaluate(models, args.data, args.splits, args.tta, args.keras,
                                    Path(args.out) if args.out else None, args.history, args.threads,
                                    args.camera))


if __name__ == "__main__":
    sys.exit(main())
