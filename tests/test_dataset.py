"""Dataset validation: wrong dimensions and NaNs are refused with a clear message."""

import numpy as np
import pytest

from bpd.errors import BpdError
from training.collect import Dataset, load_dataset, save_dataset


def make(n=10, od=4, ad=1) -> Dataset:
    z = np.zeros
    return Dataset(meta={"format": "bpd-dataset", "env_id": "InvertedPendulum-v5", "obs_dim": od, "act_dim": ad},
                   observations=z((n, od)), actions=z((n, ad)), teacher_actions=z((n, ad)), rewards=np.ones(n),
                   next_observations=z((n, od)), terminals=z(n), truncations=z(n), obs_mean=z(od),
                   obs_std=np.ones(od), action_low=-np.ones(ad), action_high=np.ones(ad))


def test_roundtrip(tmp_path):
    save_dataset(make(), tmp_path / "d.npz")
    ds = load_dataset(tmp_path / "d.npz", 4, 1)
    assert len(ds) == 10 and ds.rewards.sum() == 10


def test_wrong_dims_for_teacher(tmp_path):
    save_dataset(make(od=3), tmp_path / "d.npz")
    with pytest.raises(BpdError, match="3 dimensions, the teacher expects 4"):
        load_dataset(tmp_path / "d.npz", 4, 1)


def test_inconsistent_shapes(tmp_path):
    ds = make()
    ds.actions = np.zeros((10, 2))
    save_dataset(ds, tmp_path / "d.npz")
    with pytest.raises(BpdError, match="actions has shape"):
        load_dataset(tmp_path / "d.npz")


def test_nan(tmp_path):
    ds = make()
    ds.rewards[3] = np.nan
    save_dataset(ds, tmp_path / "d.npz")
    with pytest.raises(BpdError, match="rewards contains NaN"):
        load_dataset(tmp_path / "d.npz")
