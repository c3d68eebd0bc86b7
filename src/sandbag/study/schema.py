"""A study's claims as data: the [[claims]] tables of a study file (and of lecture.toml) checked and turned into
`claims.Claim` values, once; and the hashes that preregister a design. No torch.

What a claim table may hold is in lecture.toml's header. Every mistake is one `ConfigError` line naming the claim
and the part, with a did-you-mean where one fits, raised before any run starts (`StudyConfig` calls
`parse_claims` when it is made).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import string
import tomllib
from importlib import resources

from ..errors import ConfigError
from .claims import BUILTINS, KINDS, PROBE, TIMING, Claim, Part
from .layout import FIGURES, PROBE_FIELDS, TIMING_FIELDS
from .results import METRICS
from .stats import DIRECTIONS, NEEDS_MARGIN

SCHEMA_VERSION = 1
LECTURE = "lecture.toml"
CLAIM_KEYS = ("id", "text", "text_ko", "figure", "for_each", "parts")
PART_KEYS = ("kind", "label", "label_ko", "metric", "a", "b", "first", "second", "direction", "margin",
             "smallest_effect", "ratio", "tolerance", "check", "key", "for_each")
SELECTORS = ("min_batch", "ref_batch", "max_batch")  # name@min_batch: the arm that runs `name` at that batch size
# In a study over train_sizes every arm is named at a size: name@500, name@min_size, name@max_size
SIZE_SELECTORS = ("min_size", "max_size")
TEMPLATE_FIELDS = ("tech", *SELECTORS, *SIZE_SELECTORS, "n", "learn_target")
TEXT_KEYS = ("text", "text_ko", "label", "label_ko")
ARM_KEYS = ("a", "b")
PAIR_KEYS = ("first", "second")


def lecture() -> dict:
    """lecture.toml: the lecture's arms and claims ({"arms": [...], "claims": [...]})."""
    return tomllib.loads(resources.files("sandbag.study").joinpath(LECTURE).read_text(encoding="utf-8"))


def study_tables(lecture_on: bool, arms: list[dict], claims: list[dict]) -> tuple[list[dict], list[dict]]:
    """The arm and claim tables a study runs: the lecture's (when `lecture_on`) followed by the study file's."""
    if not lecture_on:
        return list(arms), list(claims)
    base = lecture()
    return [*base["arms"], *arms], [*base["claims"], *claims]


def near(word: str, valid) -> str:
    """'; did you mean X?' for the closest valid word, or the valid words when none is close."""
    valid = [str(v) for v in valid]
    close = difflib.get_close_matches(str(word), valid, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(valid)}"


def is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# ----------------------------------------------------------------------------------------------------------------
# Claims


class _Context:
    """What claim templates and arm references resolve against: the study's arms and settings."""

    def __init__(self, arms: list[dict], cfg: dict, techniques: list[str]):
        self.arms = [a for a in arms if a["group"] != "sweep"]
        self.names = {a["arm"]: (a["group"], a["arm"]) for a in self.arms}
        sizes = cfg["batch_sizes"]
        self.batch = {"min_batch": min(sizes), "ref_batch": cfg["batch_size"], "max_batch": max(sizes)}
        self.sizes = list(cfg.get("train_sizes") or [])
        by_size = {"min_size": min(self.sizes), "max_size": max(self.sizes)} if self.sizes else {}
        self.fields = {**self.batch, **by_size, "learn_target": cfg["learn_target"]}
        self.techniques = [t for t in techniques if t in self.names]
        self.smallest = cfg.get("smallest_effect") or {}

    def arm(self, ref, where: str) -> tuple[str, str]:
        if not isinstance(ref, str) or not ref:
            raise ConfigError(f"{where}: an arm is named by a string, got {ref!r}")
        name, _, selector = ref.partition("@")
        if self.sizes:
            return self.sized(name, selector, ref, where)
        if selector in SIZE_SELECTORS or selector.isdigit():
            raise ConfigError(f"{where}: {ref!r} names an arm at a training-set size, but the study has no "
                              "train_sizes")
        if selector:
            if selector not in SELECTORS:
                raise ConfigError(f"{where}: unknown arm selector {selector!r} in {ref!r}{near(selector, SELECTORS)}")
            size = self.batch[selector]
            found = [a for a in self.arms if a.get("base", a["arm"]) == name and a["batch_size"] == size]
            if found:
                return found[0]["group"], found[0]["arm"]
            if name in self.names:
                raise ConfigError(f"{where}: no arm runs {name!r} at batch size {size} ({ref!r})")
        if name not in self.names:
            raise ConfigError(f"{where}: unknown arm {name!r}{near(name, self.names)} (the arms this study runs)")
        if selector:
            raise ConfigError(f"{where}: no arm runs {name!r} at batch size {self.batch[selector]} ({ref!r})")
        return self.names[name]

    def sized(self, name: str, selector: str, ref: str, where: str) -> tuple[str, str]:
        """(group, "name@size") of an arm at one of the study's sizes: how the map's claims read across cells."""
        if name not in self.names:
            raise ConfigError(f"{where}: unknown arm {name!r}{near(name, self.names)} (the arms this study runs)")
        sizes = ", ".join(str(n) for n in self.sizes)
        if not selector:
            raise ConfigError(f"{where}: the study runs every arm at train_sizes {sizes}: name {name!r} at one, "
                              f"e.g. '{name}@{self.sizes[0]}' or '{name}@min_size'")
        size = self.fields.get(selector) if selector in SIZE_SELECTORS else (
            int(selector) if selector.isdigit() else None)
        if size not in self.sizes:
            raise ConfigError(f"{where}: {ref!r}: {selector!r} is not one of the study's train_sizes ({sizes}) "
                              "or min_size / max_size")
        return self.names[name][0], f"{name}@{size}"


def _fill(text, fields: dict, where: str):
    """A template with its {fields} filled in (lists element-wise); an unknown field is an error."""
    if isinstance(text, list):
        return [_fill(t, fields, where) for t in text]
    if not isinstance(text, str):
        return text
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"{where}: bad template {text!r} ({exc})") from None
    unknown = sorted(n for n in names if n not in fields)
    if unknown:
        raise ConfigError(f"{where}: unknown placeholder {{{unknown[0]}}} in {text!r}{near(unknown[0], fields)}")
    return text.format(**fields) if names else text


def _check_keys(table, valid, where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    for key in table:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key {key!r}{near(key, valid)}")


def _string(table: dict, key: str, where: str, required: bool = False) -> str:
    value = table.get(key, "")
    if (required and not value) or not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a non-empty string, got {table.get(key)!r}")
    return value


def _positive(table: dict, key: str, where: str) -> float | None:
    value = table.get(key)
    if value is not None and not (is_number(value) and value > 0):
        raise ConfigError(f"{where}: {key} must be a number > 0, got {value!r}")
    return value


def _metric(part: dict, where: str, ctx: _Context) -> str:
    metric = _string(part, "metric", where, required=True)
    if metric.startswith(PROBE):
        field = metric[len(PROBE):]
        if field not in PROBE_FIELDS:
            raise ConfigError(f"{where}: unknown probe field {field!r}{near(field, PROBE_FIELDS)}")
    elif metric.startswith(TIMING):
        if ctx.sizes:  # the timing phase measures arms per cell, not the map's arms at a size
            raise ConfigError(f"{where}: timing claims are not available in a study over train_sizes")
        field = metric[len(TIMING):]
        if field not in TIMING_FIELDS:
            raise ConfigError(f"{where}: unknown timing quantity {field!r}{near(field, TIMING_FIELDS)}")
    elif metric not in METRICS:
        valid = [*METRICS, *(PROBE + f for f in PROBE_FIELDS), *(TIMING + f for f in TIMING_FIELDS)]
        raise ConfigError(f"{where}: unknown metric {metric!r}{near(metric, valid)}")
    return metric


def _direction(part: dict, where: str) -> tuple[str, float]:
    direction = part.get("direction")
    if direction not in DIRECTIONS:
        raise ConfigError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}"
                          + (near(direction, DIRECTIONS) if isinstance(direction, str) else ""))
    margin = _positive(part, "margin", where)
    if direction in NEEDS_MARGIN and margin is None:
        raise ConfigError(f"{where}: direction {direction!r} needs a margin (a number > 0, in the metric's units)")
    if direction not in NEEDS_MARGIN and margin is not None:
        raise ConfigError(f"{where}: a margin goes with {' or '.join(NEEDS_MARGIN)}, not {direction!r}")
    return direction, float(margin or 0.0)


def _part(raw: dict, fields: dict, ctx: _Context, where: str) -> Part | None:
    """One part table as a `Part` (None when its two sides are the same arm: nothing to compare)."""
    _check_keys(raw, PART_KEYS, where)
    kind = raw.get("kind", "paired")
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r}{near(kind, KINDS)}")
    raw = {k: _fill(v, fields, where) if k in (*TEXT_KEYS, *ARM_KEYS, *PAIR_KEYS) else v for k, v in raw.items()}
    allowed = {"paired": {"metric", "a", "b", "direction", "margin", "smallest_effect", "ratio", "key"},
               "diff_of_diffs": {"metric", "first", "second", "direction", "margin", "smallest_effect"},
               "check": {"metric", "a", "tolerance", "key"}, "builtin": {"check", "tolerance", "key"}}[kind]
    stray = sorted(set(raw) - allowed - {"kind", "label", "label_ko"})
    if stray:
        raise ConfigError(f"{where}: {stray[0]!r} does not go with kind {kind!r} "
                          f"(it takes {', '.join(sorted(allowed))})")
    for key in ("label", "label_ko", "key"):
        _string(raw, key, where)
    if not isinstance(raw.get("ratio", False), bool):
        raise ConfigError(f"{where}: ratio must be true or false, got {raw['ratio']!r}")
    common = {"kind": kind, "label_ko": raw.get("label_ko", ""), "key": raw.get("key", "")}
    if kind == "builtin":
        check = raw.get("check")
        if check not in BUILTINS:
            raise ConfigError(f"{where}: unknown built-in check {check!r}{near(check, BUILTINS)}")
        return Part(label=raw.get("label") or check, check=check, tolerance=_tolerance(raw, where), **common)
    metric = _metric(raw, where, ctx)
    if kind == "check":
        if not metric.startswith(PROBE):
            raise ConfigError(f"{where}: a check reads a probe field (probe.<field>), not {metric!r}")
        a = ctx.arm(raw.get("a"), where)
        return Part(label=raw.get("label") or f"{metric}: {a[1]}", metric=metric, a=a,
                    tolerance=_tolerance(raw, where), **common)
    direction, margin = _direction(raw, where)
    smallest = _positive(raw, "smallest_effect", where)
    column = metric.split(".", 1)[1] if metric.startswith((PROBE, TIMING)) else metric
    if smallest is None and not metric.startswith(PROBE):
        smallest = ctx.smallest.get(column)
    shared = dict(metric=metric, direction=direction, margin=margin, smallest_effect=smallest, **common)
    if kind == "diff_of_diffs":
        first, second = (_pair(raw, key, ctx, where) for key in PAIR_KEYS)
        if first == second:
            return None
        label = raw.get("label") or f"{metric}: ({first[0][1]} - {first[1][1]}) - ({second[0][1]} - {second[1][1]})"
        return Part(label=label, first=first, second=second, **shared)
    a = ctx.arm(raw.get("a"), where)
    if raw.get("b") is None and not metric.startswith(PROBE):
        raise ConfigError(f"{where}: a part on {metric!r} compares two arms: give b (only a probe field stands alone)")
    b = ctx.arm(raw["b"], where) if raw.get("b") is not None else None
    if a == b:
        return None
    sign = "/" if raw.get("ratio") else "minus"
    label = raw.get("label") or (f"{metric}: {a[1]} {sign} {b[1]}" if b else f"{metric}: {a[1]}")
    return Part(label=label, a=a, b=b, ratio=bool(raw.get("ratio", False)), **shared)


def _part_rounds(raw, fields: dict, ctx: _Context, where: str) -> list[tuple[dict, dict]]:
    """A part table as the (table, template fields) it makes: once, or with ``for_each = "train_size"`` once per
    size of the study, {n} the size."""
    if not isinstance(raw, dict) or "for_each" not in raw:
        return [(raw, fields)]
    raw = dict(raw)
    for_each = raw.pop("for_each")
    if for_each != "train_size":
        raise ConfigError(f"{where}: a part's for_each must be 'train_size', got {for_each!r}")
    if not ctx.sizes:
        raise ConfigError(f"{where}: for_each = 'train_size' needs the study's train_sizes")
    return [(raw, {**fields, "n": n}) for n in ctx.sizes]


def _pair(raw: dict, key: str, ctx: _Context, where: str):
    pair = raw.get(key)
    if not (isinstance(pair, list) and len(pair) == 2):
        raise ConfigError(f"{where}: {key} must be two arm names [A, B] (the effect A minus B), got {pair!r}")
    return tuple(ctx.arm(x, where) for x in pair)


def _tolerance(raw: dict, where: str) -> float:
    tolerance = _positive(raw, "tolerance", where)
    if tolerance is None:
        raise ConfigError(f"{where}: a check needs a tolerance (a number > 0)")
    return float(tolerance)


def parse_claims(tables: list[dict], arms: list[dict], cfg: dict, techniques: list[str]) -> list[Claim]:
    """The claim tables as `Claim`s, numbered in order, templates filled and arms resolved against `arms` (the
    study's expanded arms, as study.json records them); `cfg` supplies batch sizes, learn_target and the smallest
    effects, `techniques` the registry's order for ``for_each = "technique"``."""
    if not isinstance(tables, list):
        raise ConfigError(f"claims must be a list of [[claims]] tables, got {tables!r}")
    ctx = _Context(arms, cfg, techniques)
    out: list[Claim] = []
    seen: set[str] = set()
    for number, raw in enumerate(tables, 1):
        where = f"claim {number}"
        _check_keys(raw, CLAIM_KEYS, where)
        cid = _string(raw, "id", where, required=True)
        where = f"claim {cid!r}"
        if cid in seen:
            raise ConfigError(f"{where}: duplicate id (each claim needs its own)")
        seen.add(cid)
        for key in ("text", "text_ko", "figure"):
            _string(raw, key, where, required=key == "text")
        figure = raw.get("figure") or None
        if figure is not None and figure not in FIGURES:
            raise ConfigError(f"{where}: unknown figure {figure!r}{near(figure, FIGURES)}")
        parts = raw.get("parts")
        if not isinstance(parts, list) or not parts:
            raise ConfigError(f"{where}: needs [[claims.parts]], at least one")
        for_each = raw.get("for_each")
        if for_each not in (None, "technique"):
            raise ConfigError(f"{where}: for_each must be 'technique', got {for_each!r}")
        if for_each and not ctx.techniques:
            raise ConfigError(f"{where}: for_each = 'technique' finds no arm named after a technique")
        rounds = [{**ctx.fields, "tech": t} for t in ctx.techniques] if for_each else [ctx.fields]
        built = [_part(p, f, ctx, f"{where} part {i}") for fields in rounds for i, p in enumerate(parts, 1)
                 for p, f in _part_rounds(p, fields, ctx, f"{where} part {i}")]
        out.append(Claim(number, cid, _fill(raw["text"], ctx.fields, where),
                         tuple(p for p in built if p is not None),
                         _fill(raw.get("text_ko", ""), ctx.fields, where), figure))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Preregistration


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def claim_hash(claim: Claim) -> str:
    """What a claim asserts and how it is decided (texts, parts, margins, smallest effects), not its position."""
    d = claim.to_dict()
    d.pop("number")
    return _digest(d)


def design_hash(arms: list[dict], claims: list[Claim], seeds: dict) -> str:
    """The whole design: the arms, every claim as `claim_hash` sees it, and the seed counts."""
    return _digest({"version": SCHEMA_VERSION, "arms": arms, "claims": [claim_hash(c) for c in claims],
                    "seeds": seeds})


def preregistration(arms: list[dict], claims: list[Claim], seeds: dict) -> dict:
    return {"design": design_hash(arms, claims, seeds), "claims": {c.id: claim_hash(c) for c in claims}}


def exploratory(first: dict | None, claims: list[Claim]) -> set[str]:
    """Ids of the claims added or changed since the preregistration `first` (none without one)."""
    if not first:
        return set()
    return {c.id for c in claims if first.get("claims", {}).get(c.id) != claim_hash(c)}
