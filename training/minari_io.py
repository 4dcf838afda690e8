"""Datasets in Minari's format (the maintained successor of D4RL's), both ways.

`bpd collect --format minari --out NAMESPACE/NAME-v0` writes the rollout as a Minari dataset in Minari's
own local store (`$MINARI_DATASETS_PATH`, else ~/.minari/datasets), so `minari.load_dataset(ID)` and
every library built on it read it. Each step's teacher action (the label BPD clones) travels in the
episode's infos as `teacher_action`; bpd's dataset record (teacher hash, noise, seed, ...) travels in the
dataset's description after the marker `bpd-meta: `. The dataset is made in a hidden directory of the store and moved
under its id once whole: a collect stopped half way leaves none (killed outright, a `.bpd-collect-*` directory
Minari does not list, safe to delete).

Every command that reads a dataset (`distill`, `baseline`, `multitask`, `export --dataset`) takes
`minari:ID` (or an ID alone where no file of that name exists) in place of a `.npz`. A dataset written
by another tool has no teacher actions: it reads with its recorded actions as the labels, and `bpd distill`
labels its states with the given teacher instead (collect.teacher_labels); its rewards feed the value term as
usual. Dictionary or image observations, discrete actions and a dataset recorded through a wrapper that may
change observations or actions (RescaleAction, NormalizeObservation: bpd evaluates and runs the student on the bare
environment) are refused in one line.

Minari is an optional extra (`pip install -e '.[minari]'`); without it these paths say so in one line.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bpd.errors import BpdError

PREFIX = "minari:"
# gymnasium's wrappers that change no observation, action or reward: a dataset recorded through others is refused
BOOKKEEPING = {"RecordEpisodeStatistics", "TimeLimit", "OrderEnforcing", "PassiveEnvChecker", "RecordVideo",
               "HumanRendering", "RenderCollection"}
MARKER = "bpd-meta: "
# Minari's id syntax (minari.dataset.minari_dataset.DATASET_ID_RE, the version required): (namespace/)name-vN, names
# of letters, digits, - and _ (no dot), a namespace of two characters at least and of any depth (a/b)
ID_RE = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+-v\d+$")


def _minari():
    try:
        import minari
    except ImportError:
        raise BpdError("Minari datasets need the 'minari' extra: pip install -e '.[minari]'") from None
    return minari


def dataset_id(spec: str) -> str:
    """The Minari id of `minari:ID` or `ID`; a malformed one is a one-line error."""
    ds_id = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    if not ID_RE.match(ds_id):
        raise BpdError(f"{ds_id!r} is not a Minari dataset id (NAMESPACE/NAME-vN of letters, digits, - and _, "
                       "a namespace of two characters or more: e.g. bpd/hopper-teacher-v0)")
    return ds_id


def local_path(ds_id: str) -> Path:
    """Where Minari keeps (or would keep) this dataset on this machine."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path(ds_id))


def in_store(spec: str) -> bool:
    """Whether the Minari dataset `minari:ID` (or `ID`) is in Minari's local store (False without Minari)."""
    try:
        ds_id = dataset_id(spec)
        _minari()
        return (local_path(ds_id) / "data" / "metadata.json").is_file()
    except BpdError:
        return False


def is_minari(spec: str | Path) -> bool:
    """Whether a --dataset value names a Minari dataset: `minari:ID`, or an id of Minari's form that is no
    file here and is in Minari's local store."""
    s = str(spec)
    if s.startswith(PREFIX):
        return True
    if Path(s).exists() or not ID_RE.match(s):
        return False
    return in_store(s)


def canonical(spec: str) -> str:
    """A --dataset value as a run records it: `minari:ID` for a Minari dataset named by its id alone (is_minari), which
    a record would otherwise write as a path relative to itself ('../NS/NAME-v0', found nowhere); else as given."""
    return f"{PREFIX}{spec}" if not spec.startswith(PREFIX) and is_minari(spec) else spec


def was_minari(recorded: str, run_dir) -> str | None:
    """`minari:ID` where a run's recorded dataset path (relative to the run) was a bare Minari id given from the working
    directory (runs began before canonical() recorded it so), else None."""
    import os

    from bpd.io import path_from_record

    given = os.path.relpath(path_from_record(recorded, run_dir))
    return canonical(given) if not os.path.exists(given) and canonical(given) != given else None


def content_hash(spec: str) -> str:
    """sha256 over the dataset's data files, those in subdirectories too (Minari's arrow format keeps a
    directory per episode); the run records it as it records a .npz's hash."""
    d = local_path(dataset_id(spec)) / "data"
    h = hashlib.sha256()
    for f in sorted(f for f in d.rglob("*") if f.is_file()):
        h.update(f.relative_to(d).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _episode_bounds(ds: Any) -> list[tuple[int, int]]:
    ends = np.flatnonzero((ds.terminals > 0) | (ds.truncations > 0))
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [(int(a), int(b) + 1) for a, b in zip(starts, ends)]


def write_minari(ds: Any, spec: str) -> str:
    """Write a bpd dataset as a new Minari dataset; returns its id. An existing id is refused (nothing is
    replaced)."""
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    ds_id = dataset_id(spec)
    if local_path(ds_id).exists():
        raise BpdError(f"Minari dataset {ds_id} exists ({local_path(ds_id)}); choose another id or remove it")
    buffers = []
    for i, (a, b) in enumerate(_episode_bounds(ds)):
        obs = np.concatenate([ds.observations[a:b], ds.next_observations[b - 1:b]])
        # infos hold one entry per observation: the last observation's teacher action is not recorded
        teacher = np.concatenate([ds.teacher_actions[a:b], np.full((1, ds.teacher_actions.shape[1]), np.nan,
                                                                   np.float32)])
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=ds.actions[a:b],
                                     rewards=ds.rewards[a:b].tolist(),
                                     terminations=(ds.terminals[a:b] > 0).tolist(),
                                     truncations=(ds.truncations[a:b] > 0).tolist(),
                                     infos={"teacher_action": teacher}))
    meta = ds.meta
    text = (f"Rolled out by `bpd collect` on {meta['env_id']}: {meta['steps']} steps, teacher sha256 "
            f"{meta.get('teacher_sha256')}, exploration noise {meta.get('noise')}, seed {meta.get('seed')}. Each "
            "step's infos['teacher_action'] is the teacher's noise-free action at that observation.\n"
            + MARKER + json.dumps(meta, sort_keys=True))
    from training.envs import make_env

    # an id with a module to import first (firmware_host.rig:bpd/...-v0) or a rig of one's own (rig:PATH) is no id
    # Minari parses: it takes the environment itself, whose spec names its entry point (and a rig's YAML)
    env: Any = make_env(meta["env_id"]) if ":" in str(meta["env_id"]) else meta["env_id"]
    try:
        _create_whole(minari, ds_id, buffers, env=env, algorithm_name="bpd collect", author="bpd",
                      description=text, data_format="hdf5")
    finally:
        if not isinstance(env, str):
            env.close()
    return ds_id


def _create_whole(minari: Any, ds_id: str, buffers: list, **kw: Any) -> None:
    """Minari's create_dataset_from_buffers, made in a hidden store beside the dataset's final place (Minari lists no
    hidden directory) and moved into place once whole: a collect stopped half way leaves no dataset under its id."""
    import os
    import shutil
    import tempfile

    from minari.namespace import create_namespace, list_local_namespaces

    namespace = ds_id.rpartition("/")[0]
    if namespace and namespace not in list_local_namespaces():  # made in the real store as Minari would
        create_namespace(namespace)
    # the stage beside its final place (one file system, one rename), absolute: Minari joins a relative
    # MINARI_DATASETS_PATH to its own data path a second time ('.../data/store/bpd/.../data/main_data.hdf5')
    home = local_path(ds_id).parent.resolve()
    home.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".bpd-collect-", dir=home))
    before = os.environ.get("MINARI_DATASETS_PATH")
    try:
        os.environ["MINARI_DATASETS_PATH"] = str(stage)
        try:
            with warnings.catch_warnings():  # Minari warns of every optional field left out
                warnings.simplefilter("ignore")
                minari.create_dataset_from_buffers(ds_id, buffers, **kw)
        finally:
            if before is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = before
        os.rename(stage / ds_id, local_path(ds_id))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def read_minari(spec: str) -> tuple[dict, dict[str, np.ndarray]]:
    """A Minari dataset's record and arrays, as training.collect.load_dataset makes a Dataset of them."""
    minari = _minari()

    ds_id = dataset_id(spec)
    if not local_path(ds_id).exists():  # Minari's own message asks for a keyword of its Python API
        raise BpdError(f"Minari dataset {ds_id}: not in Minari's local store ({local_path(ds_id)}; "
                       f"MINARI_DATASETS_PATH moves it, `minari download {ds_id}` fetches a published one)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = minari.load_dataset(ds_id)
            episodes = list(m.iterate_episodes())
    except Exception as e:  # noqa: BLE001 - Minari raises many kinds for a missing or malformed dataset
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise BpdError(f"Minari dataset {ds_id}: cannot be read ({first})") from None
    space = m.action_space
    if not hasattr(space, "low") or len(getattr(space, "shape", ()) or ()) != 1:
        raise BpdError(f"Minari dataset {ds_id}: actions must be a flat continuous box (bpd distils continuous "
                       "policies)")
    if not episodes:
        raise BpdError(f"Minari dataset {ds_id}: has no episodes")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "teacher_actions", "rewards",
                                                          "next_observations", "terminals", "truncations")}
    labelled = True
    for ep in episodes:
        obs = ep.observations
        if not isinstance(obs, np.ndarray) or obs.ndim != 2:
            raise BpdError(f"Minari dataset {ds_id}: observations must be flat vectors (not dictionaries or "
                           "images)")
        n = len(ep.actions)
        acts = np.asarray(ep.actions, np.float32).reshape(n, -1)
        teacher = (ep.infos or {}).get("teacher_action")
        if teacher is None:
            labelled = False
            teacher = acts
        try:  # another tool's infos may hold anything under this name: one action per step, or refused
            teacher = np.asarray(teacher, np.float32)
            if teacher.ndim == 0 or len(teacher) < n:
                raise ValueError
            teacher = teacher[:n].reshape(n, -1)
        except (TypeError, ValueError):
            raise BpdError(f"Minari dataset {ds_id}: episode {ep.id}: infos['teacher_action'] is not one action "
                           "per step") from None
        parts["observations"].append(obs[:n])
        parts["next_observations"].append(obs[1:n + 1])
        parts["actions"].append(acts)
        parts["teacher_actions"].append(teacher)
        parts["rewards"].append(np.asarray(ep.rewards, np.float32))
        parts["terminals"].append(np.asarray(ep.terminations, np.float32))
        trunc = np.asarray(ep.truncations, np.float32)
        if n and not trunc[-1] and not parts["terminals"][-1][-1]:  # an episode cut short ends as a truncation
            trunc = trunc.copy()
            trunc[-1] = 1.0
        parts["truncations"].append(trunc)
    arr = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}
    recorded = _bpd_meta(m.storage.metadata.get("description") or "")
    env_spec = m.spec.env_spec
    env_id = recorded.get("env_id") or (env_spec.id if env_spec is not None else None)
    if not env_id:
        raise BpdError(f"Minari dataset {ds_id}: records no environment (bpd evaluates the student on it); write it "
                       "with minari.create_dataset_from_buffers(..., env=ID), or through DataCollector(gym.make(ID))")
    wrapped = [w.name for w in getattr(env_spec, "additional_wrappers", None) or ()
               if w.entry_point.rpartition(":")[2] not in BOOKKEEPING or not w.entry_point.startswith("gymnasium.")]
    if wrapped:  # RescaleAction, NormalizeObservation, ...: not the observations and actions of env_id
        raise BpdError(f"Minari dataset {ds_id}: recorded through wrappers bpd does not apply ({', '.join(wrapped)}): "
                       f"its observations or actions may not be {env_id}'s, where the student is evaluated and run; "
                       f"record it on gym.make({env_id!r}) as it is")
    od, ad = arr["observations"].shape[1], arr["actions"].shape[1]
    meta = {"env_id": env_id, "obs_dim": od, "act_dim": ad,
            "steps": len(arr["observations"]), "episodes": len(episodes), "source": f"{PREFIX}{ds_id}",
            "labels": "teacher actions" if labelled else "the dataset's actions (no teacher actions recorded)"}
    meta = {k: v for k, v in recorded.items() if k not in meta} | meta
    return meta, arr | {"obs_mean": arr["observations"].mean(0), "obs_std": arr["observations"].std(0) + 1e-3,
                        "action_low": np.asarray(space.low, np.float32),
                        "action_high": np.asarray(space.high, np.float32)}


def _bpd_meta(description: str) -> dict:
    for line in description.splitlines():
        if line.startswith(MARKER):
            try:
                meta = json.loads(line[len(MARKER):])
            except ValueError:
                return {}
            return meta if isinstance(meta, dict) else {}
    return {}
