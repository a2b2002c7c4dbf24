"""Does a label keep its meaning when the market's level moves? Positive rate per split, per label.

For each data set (the synthetic market as it is, with its volatility level doubling and
halving between the training and the test split, and every real recording present in
``REAL_TICKS_DIR``) and each label definition, labels the rows as training does (the 60/20/20
split with its embargo, tau fitted on the training rows where the mode fits one, the gap
rules) and prints the positive rate of each split and the ratio test / train. The target
(docs/modeling.md, "Which label"): a ratio within 0.5-2 on every data set. No models, no MLflow::

    REAL_TICKS_DIR=../shared/real-ticks .venv/bin/python bench/label_stability.py --ticks 300000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import pandas as pd
import quality_data

from volpipe.modeling import label as L
from volpipe.modeling.synthetic import synthetic_features


def split_rates(rows: pd.DataFrame, spec: L.LabelSpec) -> dict[str, float]:
    """Positive rate of each split (and labelled rows) under ``spec``, as ``train.prepare`` labels them."""
    split = L.chronological_split(rows, spec.horizon)
    target = L.label_target(rows, spec)
    y = L.make_labels(rows, target, spec, L.training_tau(target, split == L.TRAIN, spec))
    out = {}
    for code, name in L.SPLIT_NAMES.items():
        labelled = y[(split == code) & np.isfinite(y)]
        out[name] = float(labelled.mean()) if len(labelled) else float("nan")
        out[f"{name}_rows"] = len(labelled)
    return out


def label_definitions(trailing_rows: list[int], relative_k: list[float]) -> dict[str, L.LabelSpec]:
    """The definitions compared: forward (fixed tau), relative at each k, trailing at each span."""
    base = L.LabelSpec()
    specs = {"forward q=0.95": dataclasses.replace(base, mode="forward")}
    specs.update({f"relative k={k:g}": dataclasses.replace(base, mode="relative", relative_k=k) for k in relative_k})
    specs.update(
        {f"trailing S={s}": dataclasses.replace(base, mode="trailing", trailing_rows=s) for s in trailing_rows}
    )
    return specs


def data_sets(ticks: int, seed: int) -> dict[str, pd.DataFrame]:
    """The synthetic market as it is, doubled and halved after 70% of its ticks, and every recording."""
    sets = {
        "synthetic": L.order_rows(synthetic_features(ticks, seed=seed)),
        "synthetic x2": quality_data.shifted_market(ticks, 2.0, seed),
        "synthetic x0.5": quality_data.shifted_market(ticks, 0.5, seed),
    }
    sets.update({f"real {path.stem}": quality_data.recording_features(path) for path in quality_data.recordings()})
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=300_000, help="synthetic ticks per data set (300000)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--trailing-rows", default="600,1500,3000,6000,18000")
    parser.add_argument("--relative-k", default="1.5,2")
    args = parser.parse_args(argv)
    specs = label_definitions(
        [int(s) for s in args.trailing_rows.split(",")], [float(k) for k in args.relative_k.split(",")]
    )
    sets = data_sets(args.ticks, args.seed)
    print(
        f"synthetic: {args.ticks:,} ticks, seed {args.seed}; H={L.LabelSpec().horizon}, "
        f"max gap {L.LabelSpec().max_gap_seconds:g} s; positive rate train / validation / test (test/train)"
    )
    print(f"| label | {' | '.join(sets)} |")
    print("|---|" + "---|" * len(sets))
    for name, spec in specs.items():
        cells = []
        for rows in sets.values():
            rates = split_rates(rows, spec)
            ratio = rates["test"] / rates["train"] if rates["train"] > 0 else float("nan")
            cells.append(
                f"{rates['train']:.3f} / {rates['validation']:.3f} / {rates['test']:.3f} "
                f"({'**' if not 0.5 <= ratio <= 2 else ''}{ratio:.2f}{'**' if not 0.5 <= ratio <= 2 else ''})"
            )
        print(f"| {name} | {' | '.join(cells)} |")
    print(
        "labelled rows (train/validation/test) under the default: "
        + "; ".join(
            f"{name} {'/'.join(str(split_rates(rows, L.LabelSpec())[f'{s}_rows']) for s in L.SPLIT_NAMES.values())}"
            for name, rows in sets.items()
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
