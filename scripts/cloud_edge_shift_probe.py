"""How the shipped mnist1d teacher fails on a shifted edge, against rolled logits (docs/tasks.md, task sets).

For each draw of mnist1d (4,000 instances, generator seed 7): the teacher's accuracy, its mean confidence
on right and wrong instances, the AUROC of 1 − confidence as a detector of its errors, and the fraction of
instances it gets wrong with confidence above 0.9. Rolled logits keep every confidence and move the argmax,
so their AUROC is 0.5 by construction.

    python scripts/cloud_edge_shift_probe.py
"""

from __future__ import annotations

import random

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from kd_envs.tasks import make_task, predict_logits

SHIFTS = ({}, {"corr_noise_scale": 0.5}, {"iid_noise_scale": 0.1}, {"shear_scale": 1.5}, {"scale_coeff": 0.8})


def draw(seed: int = 7, n: int = 4000, **shift) -> tuple[torch.Tensor, torch.Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = n, 1.0, seed
    for key, value in shift.items():
        setattr(args, key, value)
    state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
    return torch.tensor(data["x"], dtype=torch.float32), torch.tensor(data["y"])


def main() -> None:
    torch.set_num_threads(1)
    teacher = make_task("mnist1d-cloud-edge").teacher
    print("| shift | accuracy | confidence right / wrong | AUROC(1 − conf → error) | wrong with conf > 0.9 |")
    print("|---|---|---|---|---|")
    for shift in SHIFTS:
        x, y = draw(**shift)
        confidence, prediction = torch.softmax(predict_logits(teacher, x), 1).max(1)
        wrong = (prediction != y).numpy()
        auroc = roc_auc_score(wrong, -confidence.numpy())
        print(f"| {shift or 'none'} | {1 - wrong.mean():.3f} | {confidence[~wrong].mean():.3f} / "
              f"{confidence[wrong].mean():.3f} | {auroc:.3f} | {(wrong & (confidence.numpy() > 0.9)).mean():.3f} |")


if __name__ == "__main__":
    main()
