"""Model registry: immutable published models and the choice of the best one.

Layout in a store (every object written once, never updated)::

    models/{task}/{model_type}/{version}/model.onnx
    models/{task}/{model_type}/{version}/card.json
    registry/{task}/{version}-{model_type}.json      # the Entry, written last

The registry is the *set* of entry objects, not a shared index file: two trainers
publishing at once each add their own object, so none is lost (the old summary.json,
updated by read-modify-write, lost entries that way). The entry is written last so an
entry never points at files that are not there yet; a publisher that dies half-way
leaves unreferenced files and no entry, which readers never see.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from velocast.core import tasks
from velocast.catalog.store import AlreadyExists, NotFound, Store, StoreError

log = logging.getLogger(__name__)

__all__ = [
    "METRIC_DIRECTIONS", "DEFAULT_METRIC", "TASKS", "TASK_METRICS", "Entry", "IntegrityError",
    "new_version", "publish", "list_entries", "read_card", "read_model_bytes",
    "read_verified",
]

# Derived from velocast.core.tasks, the one description of each task.
METRIC_DIRECTIONS: dict[str, str] = tasks.METRIC_DIRECTIONS
DEFAULT_METRIC: dict[str, str] = {t.name: t.default_metric for t in tasks.TASKS.values()}
TASKS = tasks.TASK_NAMES
TASK_METRICS: dict[str, tuple[str, ...]] = {t.name: t.metrics for t in tasks.TASKS.values()}

# Card keys the trainer must provide; publish adds the rest.
REQUIRED_CARD_KEYS = ("task", "model_type", "metrics", "feature_spec_version", "trained_from", "trained_to")

# model_type and version become object-name parts: keep them to safe characters.
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class IntegrityError(StoreError):
    """Model bytes that do not match their entry (sha256 or size)."""


@dataclass(frozen=True)
class Entry:
    task: str
    model_type: str
    version: str
    metrics: dict
    onnx_path: str
    card_path: str
    sha256: str
    size_bytes: int
    feature_spec_version: str
    trained_from: str
    trained_to: str
    published_at: str
    # The card's bytes' sha256. Older entries lack it and still serve (their stores must
    # keep working), with a warning at load; their card still passes velocast.catalog.model_checks.
    card_sha256: str = ""
    # A retrain's run: such an entry is served only once a promotion names it (catalog).
    run: str = ""
    # metric -> the backtest mean of this configuration (the card's backtest section).
    # (Not "backtest": the card repeats the entry's fields and has its own such section.)
    backtest_means: dict = dataclasses.field(default_factory=dict)

    # metrics is a dict, so the generated hash would fail; identity is enough.
    def __hash__(self) -> int:
        return hash((self.task, self.model_type, self.version))

    @property
    def registry_path(self) -> str:
        return f"registry/{self.task}/{self.version}-{self.model_type}.json"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["metrics"] = dict(self.metrics)
        for key in ("card_sha256", "run", "backtest_means"):
            if not d[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "Entry":
        """Build from a parsed entry; raises ValueError on anything malformed.

        Unknown keys are ignored so that newer publishers can add fields without
        breaking older readers.
        """
        if not isinstance(d, dict):
            raise ValueError(f"entry must be a JSON object, got {type(d).__name__}")
        required = [f for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [f.name for f in required if f.name not in d]
        if missing:
            raise ValueError(f"entry lacks {', '.join(missing)}")
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name in ("metrics", "backtest_means"):
                v = _clean_metrics(v)
            elif f.name == "size_bytes":
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"size_bytes must be a non-negative integer, got {v!r}")
            elif not isinstance(v, str) or not v:
                raise ValueError(f"{f.name} must be a non-empty string, got {v!r}")
            kw[f.name] = v
        if not _SEGMENT_RE.match(kw["model_type"]) or not _SEGMENT_RE.match(kw["version"]):
            raise ValueError("model_type and version must be simple names")
        for key in ("sha256", "card_sha256"):
            if key in kw and not re.fullmatch(r"[0-9a-f]{64}", kw[key]):
                raise ValueError(f"{key} must be 64 lowercase hex digits, got {kw[key]!r}")
        return cls(**kw)


def _clean_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a mapping of name to number, got {type(metrics).__name__}")
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"metric names must be non-empty strings, got {k!r}")
        if hasattr(v, "item") and not isinstance(v, (int, float)):
            v = v.item()  # numpy scalar, without importing numpy
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"metric {k!r} must be a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            # NaN would make every ranking comparison (catalog.ranked) false and is not valid JSON.
            raise ValueError(f"metric {k!r} is {v}; only finite values can be published")
        out[k] = v
    return out


def new_version() -> str:
    """UTC timestamp plus a random suffix: sorts by time, unique across publishers."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _iso_date(value: Any, key: str) -> str:
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        try:
            _dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise ValueError(f"card[{key!r}] must be an ISO date or datetime, got {value!r}")


def _json_default(o: Any) -> Any:
    # Trainer cards carry numpy/pandas values; convert them without importing either.
    if isinstance(o, (_dt.date, _dt.datetime)):
        return o.isoformat()
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return sorted(o) if isinstance(o, (set, frozenset)) else list(o)
    raise TypeError(f"card value of type {type(o).__name__} is not JSON serialisable")


def _dumps(obj: Any, what: str) -> bytes:
    try:
        return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False,
                          default=_json_default).encode("utf-8")
    except ValueError as e:
        raise ValueError(f"{what} must be strict JSON (no NaN or infinity): {e}") from e


def _looks_like_pickle(data: bytes) -> bool:
    # Protocol 2+ pickles start with PROTO (0x80) and the protocol number.
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def publish(store: Store, onnx_bytes: bytes, card: dict) -> Entry:
    """Write model, card and registry entry (in that order, all write-once).

    ``card`` is not modified; the stored card is a copy with version (if absent),
    sha256, size_bytes, onnx_path and published_at added. Raises ValueError for a bad
    card, AlreadyExists if an explicit ``card["version"]`` is already published.
    """
    if not isinstance(card, dict):
        raise ValueError("card must be a dict")
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise ValueError(f"card lacks {', '.join(missing)}")
    onnx_bytes = bytes(onnx_bytes)
    if not onnx_bytes:
        raise ValueError("onnx_bytes is empty")
    if _looks_like_pickle(onnx_bytes):
        raise ValueError("onnx_bytes looks like a pickle; only ONNX models are published")

    task, model_type = card["task"], card["model_type"]
    if task not in TASKS:
        raise ValueError(f"card['task'] must be one of {', '.join(TASKS)}, got {task!r}")
    if not isinstance(model_type, str) or not _SEGMENT_RE.match(model_type):
        raise ValueError(f"card['model_type'] must be a simple name like 'gbdt', got {model_type!r}")
    fsv = card["feature_spec_version"]
    if not isinstance(fsv, str) or not fsv:
        raise ValueError(f"card['feature_spec_version'] must be a non-empty string, got {fsv!r}")
    metrics = _clean_metrics(card["metrics"])
    trained_from = _iso_date(card["trained_from"], "trained_from")
    trained_to = _iso_date(card["trained_to"], "trained_to")

    sha256 = hashlib.sha256(onnx_bytes).hexdigest()
    if "sha256" in card and card["sha256"] != sha256:
        raise ValueError("card['sha256'] does not match the ONNX bytes")

    explicit = card.get("version")
    if explicit is not None and (not isinstance(explicit, str) or not _SEGMENT_RE.match(explicit)):
        raise ValueError(f"card['version'] must be a simple name, got {explicit!r}")

    # A clash of auto-generated versions is astronomically unlikely, but it costs one
    # loop to turn it into a retry instead of a failed training run.
    for _ in range(3):
        version = explicit or new_version()
        base = f"models/{task}/{model_type}/{version}"
        onnx_path, card_path = f"{base}/model.onnx", f"{base}/card.json"
        try:
            store.write_once(onnx_path, onnx_bytes, "application/octet-stream")
        except AlreadyExists:
            if explicit:
                raise
            continue
        break
    else:  # pragma: no cover
        raise StoreError("could not find a free version name")

    published_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    entry = Entry(
        task=task,
        model_type=model_type,
        version=version,
        metrics=metrics,
        onnx_path=onnx_path,
        card_path=card_path,
        sha256=sha256,
        size_bytes=len(onnx_bytes),
        feature_spec_version=fsv,
        trained_from=trained_from,
        trained_to=trained_to,
        published_at=published_at,
        run=str(card.get("run", "")),
        backtest_means=_backtest_means(card, task, model_type),
    )
    # The card repeats the entry's fields so that it stands alone when read by hand; the
    # entry then pins the card's bytes (counter table included) by their hash.
    card_fields = {k: v for k, v in card.items() if k != "card_sha256"}
    card_bytes = _dumps({**card_fields, **entry.to_dict()}, "card")
    store.write_once(card_path, card_bytes, "application/json")
    entry = dataclasses.replace(entry, card_sha256=hashlib.sha256(card_bytes).hexdigest())
    store.write_once(entry.registry_path, _dumps(entry.to_dict(), "entry"), "application/json")
    log.info("published %s/%s %s to %s", task, model_type, version, getattr(store, "uri", store))
    return entry


def _backtest_means(card: dict, task: str, model_type: str) -> dict:
    """metric -> mean over the backtest folds, from the card's `backtest.mean_sd`."""
    mean_sd = (card.get("backtest") or {}).get("mean_sd", {}).get(model_type, {})
    return _clean_metrics({m: v[0] for m, v in mean_sd.items() if m in TASK_METRICS[task]})


def _load_entry(store: Store, name: str) -> Entry | None:
    try:
        raw = store.read(name)
    except NotFound:
        log.warning("registry entry %s disappeared while listing; skipped", name)
        return None
    # StoreUnavailable propagates: a partial list would silently pick a worse model.
    try:
        entry = Entry.from_dict(json.loads(raw.decode("utf-8")))
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        log.warning("skipping malformed registry entry %s in %s: %s", name, getattr(store, "uri", store), e)
        return None
    if name != entry.registry_path:
        # A copied or renamed file would otherwise count twice or under the wrong task.
        log.warning("skipping registry entry %s: its content says %s", name, entry.registry_path)
        return None
    return entry


def list_entries(store: Store, task: str | None = None) -> list[Entry]:
    """All readable entries (of one task), sorted by task, model_type, version.

    Malformed entries are skipped with a warning. StoreUnavailable is raised, not
    swallowed, so callers can tell "nothing published" from "cannot reach the store".
    Cost: one list call plus one small read per entry (read in parallel).
    """
    if task is not None and (not isinstance(task, str) or not _SEGMENT_RE.match(task)):
        raise ValueError(f"invalid task {task!r}")
    prefix = f"registry/{task}/" if task else "registry/"
    names = [n for n in store.list(prefix) if n.endswith(".json")]
    if len(names) <= 1:
        loaded = [_load_entry(store, n) for n in names]
    else:
        with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            loaded = list(pool.map(lambda n: _load_entry(store, n), names))
    entries = [e for e in loaded if e is not None]
    entries.sort(key=lambda e: (e.task, e.model_type, e.version))
    return entries


def read_card(store: Store, entry: Entry, raw: bytes | None = None) -> dict:
    raw = store.read(entry.card_path) if raw is None else raw
    try:
        card = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"card {entry.card_path} is not valid JSON: {e}") from e
    if not isinstance(card, dict):
        raise StoreError(f"card {entry.card_path} is not a JSON object")
    return card


def read_model_bytes(store: Store, entry: Entry) -> bytes:
    """The ONNX bytes, checked against the entry's size and sha256 (IntegrityError)."""
    data = store.read(entry.onnx_path)
    if len(data) != entry.size_bytes:
        raise IntegrityError(f"{entry.onnx_path}: {len(data)} bytes, entry says {entry.size_bytes}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise IntegrityError(f"{entry.onnx_path}: sha256 {digest}, entry says {entry.sha256}")
    return data


def read_verified(store: Store, entry: Entry, feature_spec_version: str) -> tuple[dict, bytes]:
    """The card and ONNX bytes of ``entry``, or IntegrityError: paths other than the
    ones its version implies, a card or bytes that do not match the entry's hashes, a
    card that disagrees with its entry, or a feature spec other than the serving code's."""
    if entry.feature_spec_version != feature_spec_version:
        raise IntegrityError(f"feature spec {entry.feature_spec_version} != this code's "
                             f"{feature_spec_version}")
    base = f"models/{entry.task}/{entry.model_type}/{entry.version}"
    if (entry.onnx_path, entry.card_path) != (f"{base}/model.onnx", f"{base}/card.json"):
        # Otherwise an entry could serve another model type's or version's files.
        raise IntegrityError(f"entry paths {entry.onnx_path}, {entry.card_path} are not "
                             f"its version's {base}/model.onnx and card.json")
    raw_card = store.read(entry.card_path)
    if entry.card_sha256:
        digest = hashlib.sha256(raw_card).hexdigest()
        if digest != entry.card_sha256:
            raise IntegrityError(f"{entry.card_path}: card sha256 {digest}, entry says "
                                 f"{entry.card_sha256}")
    else:
        log.warning("%s has no card_sha256 (published before cards were hashed)", entry.registry_path)
    card = read_card(store, entry, raw_card)
    model_bytes = read_model_bytes(store, entry)
    if card.get("sha256") != entry.sha256:   # a card without sha256 is refused too
        raise IntegrityError(f"card sha256 {card.get('sha256')} does not match the registry's "
                             f"{entry.sha256}")
    if card.get("feature_spec_version") != feature_spec_version:
        raise IntegrityError(f"card feature spec {card.get('feature_spec_version')} != "
                             f"{feature_spec_version}")
    return card, model_bytes
