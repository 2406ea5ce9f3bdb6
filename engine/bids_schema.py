"""BIDS naming knowledge, read from the official schema (``bidsschematools``), never hand-typed.

Entities are handled by their short key (``acq``, ``dir``, ``run``); the schema's long names
(``acquisition``, ``direction``) stay inside this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from engine.errors import UserError

# MRI raw-data datatypes this tool writes.
MRI_DATATYPES: tuple[str, ...] = ("anat", "func", "dwi", "fmap", "perf")


@dataclass(frozen=True)
class FileRule:
    """One schema rule: suffixes of a datatype and the entities they allow."""

    datatype: str
    suffixes: tuple[str, ...]
    entities: dict[str, str]  # short key -> "required" | "optional"


@dataclass(frozen=True)
class BidsName:
    """The one BIDS name value type: datatype, suffix and entities (no ``sub``/``ses``).

    A group's decision is a name without ``run`` (:attr:`template` ``func/task-rest_bold``);
    a series' file adds ``run`` (:meth:`relpath`). Entities keep schema order when made with
    :meth:`of`; :meth:`problems` says why the schema refuses a name.
    """

    datatype: str
    suffix: str
    entities: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, datatype: str, suffix: str, entities: dict[str, str] | None = None) -> BidsName:
        """A name with ``entities`` in schema order (unknown keys last, as given); unchecked."""
        ents = {str(k): str(v) for k, v in (entities or {}).items()}
        order = get_schema().entity_order
        known = [k for k in order if k in ents]
        rest = [k for k in ents if k not in order]
        return cls(datatype, suffix, tuple((k, ents[k]) for k in known + rest))

    @classmethod
    def parse(cls, text: str) -> BidsName:
        """``"func/task-rest_bold"`` -> the name; :class:`BidsNameError` says what is wrong."""
        text = text.strip()
        datatype, sep, rest = text.partition("/")
        if not sep or not datatype.strip() or not rest:
            raise BidsNameError(
                f"{text!r}: write datatype/[entities_]suffix, e.g. func/task-rest_bold"
            )
        *pairs, suffix = rest.split("_")
        entities: dict[str, str] = {}
        for p in pairs:
            k, s, v = p.partition("-")
            if not s or not k or not v:
                raise BidsNameError(f"{p!r} is not a key-value entity (like task-rest)")
            entities[k] = v
        if not suffix or "-" in suffix:
            raise BidsNameError(f"{text!r}: the name must end in a suffix such as bold or T1w")
        return cls.of(datatype.strip(), suffix.strip(), entities)

    @property
    def entity_dict(self) -> dict[str, str]:
        return dict(self.entities)

    @property
    def template(self) -> str:
        """``func/task-rest_bold``: what a group decides (``run`` is the series')."""
        ents = "_".join(f"{k}-{v}" for k, v in self.entities if k != "run")
        return f"{self.datatype}/{ents + '_' if ents else ''}{self.suffix}"

    def with_entities(self, **entities: str) -> BidsName:
        return BidsName.of(self.datatype, self.suffix, {**self.entity_dict, **entities})

    def problems(self) -> list[str]:
        """Why the schema refuses this as a group's name (``run`` is numbered per series)."""
        out = []
        ents = self.entity_dict
        if "run" in ents:
            out.append("entity 'run' is numbered from the series order, not set per group")
            ents.pop("run")
        return out + get_schema().check(self.datatype, self.suffix, ents)

    def filename(self, subject: str, session: str = "") -> str:
        parts = [f"sub-{subject}"]
        if session:
            parts.append(f"ses-{session}")
        parts += [f"{k}-{v}" for k, v in self.entities]
        return "_".join(parts + [self.suffix])

    def relpath(self, subject: str, session: str = "") -> str:
        """``sub-X[/ses-Y]/datatype/filename`` without extension."""
        folder = f"sub-{subject}" + (f"/ses-{session}" if session else "")
        return f"{folder}/{self.datatype}/{self.filename(subject, session)}"

    def __str__(self) -> str:
        return self.template


class BidsNameError(UserError, ValueError):
    """A name the schema rejects; the message says why."""


class BidsSchema:
    """Queries over the loaded BIDS schema."""

    def __init__(self) -> None:
        import logging

        from bidsschematools import schema as _schema

        logging.getLogger("bidsschematools").setLevel(logging.WARNING)  # "no schema path" chatter

        self._s = _schema.load_schema()
        ents = self._s.objects.entities
        self.long_to_key: dict[str, str] = {
            long: ents[long]["name"] for long in self._s.rules.entities
        }
        self.key_to_long = {v: k for k, v in self.long_to_key.items()}
        self.entity_order: tuple[str, ...] = tuple(
            self.long_to_key[e] for e in self._s.rules.entities
        )
        formats = self._s.objects.formats
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._enums: dict[str, tuple[str, ...]] = {}
        for long, key in self.long_to_key.items():
            obj = ents[long]
            fmt = obj.get("format", "label")
            self._patterns[key] = re.compile(f"^(?:{formats[fmt]['pattern']})$")
            if obj.get("enum"):
                self._enums[key] = tuple(
                    v if isinstance(v, str) else v.get("name", str(v)) for v in obj["enum"]
                )
        self.rules: list[FileRule] = []
        for dt in MRI_DATATYPES:
            for rule in self._s.rules.files.raw[dt].values():
                if dt not in rule.get("datatypes", []):
                    continue
                entities = {
                    self.long_to_key[e]: (v if isinstance(v, str) else v.get("level", "optional"))
                    for e, v in rule["entities"].items()
                }
                self.rules.append(FileRule(dt, tuple(rule["suffixes"]), entities))

    @property
    def version(self) -> str:
        return str(self._s["bids_version"])

    def datatypes(self) -> tuple[str, ...]:
        return MRI_DATATYPES

    def suffixes(self, datatype: str) -> tuple[str, ...]:
        out: list[str] = []
        for r in self.rules:
            if r.datatype == datatype:
                out += [s for s in r.suffixes if s not in out]
        return tuple(out)

    def rule_for(self, datatype: str, suffix: str) -> FileRule | None:
        for r in self.rules:
            if r.datatype == datatype and suffix in r.suffixes:
                return r
        return None

    def allowed_entities(self, datatype: str, suffix: str) -> tuple[str, ...]:
        """Entity keys allowed for this datatype/suffix, in schema order (sub, ses excluded)."""
        rule = self.rule_for(datatype, suffix)
        if rule is None:
            return ()
        return tuple(k for k in self.entity_order if k in rule.entities and k not in {"sub", "ses"})

    def required_entities(self, datatype: str, suffix: str) -> tuple[str, ...]:
        rule = self.rule_for(datatype, suffix)
        if rule is None:
            return ()
        return tuple(
            k
            for k in self.entity_order
            if rule.entities.get(k) == "required" and k not in {"sub", "ses"}
        )

    def entity_values(self, key: str) -> tuple[str, ...]:
        """Allowed values of an enum entity (``part``, ``mt``), else ``()``."""
        return self._enums.get(key, ())

    def value_ok(self, key: str, value: str) -> bool:
        pat = self._patterns.get(key)
        if pat is None or not pat.match(value):
            return False
        enum = self._enums.get(key)
        return not enum or value in enum

    def check(self, datatype: str, suffix: str, entities: dict[str, str]) -> list[str]:
        """Every reason the schema rejects this name; empty when it is valid."""
        problems: list[str] = []
        if datatype not in MRI_DATATYPES:
            return [f"datatype {datatype!r} is not one of {', '.join(MRI_DATATYPES)}"]
        rule = self.rule_for(datatype, suffix)
        if rule is None:
            return [
                f"suffix {suffix!r} is not allowed in {datatype}/ (allowed: {', '.join(self.suffixes(datatype))})"
            ]
        for key, value in entities.items():
            if key in {"sub", "ses"}:
                problems.append(f"entity {key!r} comes from the series, not the mapping")
            elif key not in rule.entities:
                problems.append(
                    f"entity {key!r} is not allowed for {datatype}/{suffix} "
                    f"(allowed: {', '.join(self.allowed_entities(datatype, suffix))})"
                )
            elif not self.value_ok(key, str(value)):
                enum = self._enums.get(key)
                want = (
                    f"one of {', '.join(enum)}"
                    if enum
                    else f"matching {self._patterns[key].pattern}"
                )
                problems.append(f"{key}-{value!r} is not a valid value (must be {want})")
        for key in self.required_entities(datatype, suffix):
            if key not in entities and key != "run":
                problems.append(f"{datatype}/{suffix} requires the entity {key!r}")
        return problems

    def make_name(self, datatype: str, suffix: str, entities: dict[str, str]) -> BidsName:
        """A :class:`BidsName` with entities in schema order; raises :class:`BidsNameError`."""
        problems = self.check(datatype, suffix, entities)
        if problems:
            raise BidsNameError("; ".join(problems))
        ordered = tuple((k, str(entities[k])) for k in self.entity_order if k in entities)
        return BidsName(datatype, suffix, ordered)

    def parse_filename(self, name: str) -> tuple[dict[str, str], str]:
        """Split ``sub-1_task-x_bold`` (no extension) into its entities and suffix."""
        *pairs, suffix = name.split("_")
        entities: dict[str, str] = {}
        for p in pairs:
            key, sep, value = p.partition("-")
            if not sep:
                raise BidsNameError(f"{p!r} in {name!r} is not a key-value entity")
            entities[key] = value
        return entities, suffix

    def check_relpath(self, relpath: str) -> list[str]:
        """Problems with ``sub-X[/ses-Y]/datatype/name`` (extension optional); empty when valid."""
        parts = relpath.strip("/").split("/")
        if len(parts) not in (3, 4):
            return [f"{relpath!r} is not sub-X[/ses-Y]/datatype/filename"]
        datatype = parts[-2]
        stem = parts[-1].split(".", 1)[0]
        try:
            entities, suffix = self.parse_filename(stem)
        except BidsNameError as exc:
            return [str(exc)]
        problems: list[str] = []
        sub = entities.pop("sub", None)
        ses = entities.pop("ses", None)
        if sub is None or not self.value_ok("sub", sub) or parts[0] != f"sub-{sub}":
            problems.append(
                f"{relpath!r}: subject folder and sub- entity must agree and be a label"
            )
        if len(parts) == 4 and (
            ses is None or parts[1] != f"ses-{ses}" or not self.value_ok("ses", ses)
        ):
            problems.append(
                f"{relpath!r}: session folder and ses- entity must agree and be a label"
            )
        if len(parts) == 3 and ses is not None:
            problems.append(f"{relpath!r}: ses- entity without a session folder")
        order = [k for k in entities]
        expected = [k for k in self.entity_order if k in entities]
        if order != expected:
            problems.append(f"{relpath!r}: entities out of order, expected {'_'.join(expected)}")
        problems += self.check(datatype, suffix, entities)
        return problems


def name_candidates(text: str) -> list[str]:
    """Completions of a partly typed group name (``func/task-`` ...): datatypes, then entities
    allowed for the datatype's suffixes (not ``run``: that is the series'), values, suffixes."""
    s = get_schema()
    if "/" not in text:
        return [f"{dt}/" for dt in s.datatypes() if dt.startswith(text)]
    datatype, _, rest = text.partition("/")
    if datatype not in s.datatypes():
        return []
    *done, current = rest.split("_")
    prefix = f"{datatype}/" + "".join(p + "_" for p in done)
    used = {p.partition("-")[0] for p in done}
    suffixes = s.suffixes(datatype)
    if "-" in current:  # an entity value
        key, _, val = current.partition("-")
        return [f"{prefix}{key}-{v}_" for v in s.entity_values(key) if v.startswith(val)]
    allowed: list[str] = []
    for suf in suffixes:
        for e in s.allowed_entities(datatype, suf):
            if e not in allowed and e not in used and e != "run":
                allowed.append(e)
    out = [f"{prefix}{e}-" for e in allowed if e.startswith(current)]
    return out + [f"{prefix}{suf}" for suf in suffixes if suf.startswith(current)]


@lru_cache(maxsize=1)
def get_schema() -> BidsSchema:
    """The process-wide schema (loading takes ~0.3 s, so do it once)."""
    return BidsSchema()


_LABEL_BAD = re.compile(r"[^0-9a-zA-Z]+")


def sanitize_label(text: str) -> str:
    """Make free text a valid BIDS label: alphanumerics only, words joined in camelCase-ish form.

    ``"finger tapping_2"`` -> ``"fingerTapping2"``; returns ``""`` when nothing usable is left.
    """
    words = [w for w in _LABEL_BAD.split(text) if w]
    if not words:
        return ""
    first, rest = words[0], words[1:]
    return first + "".join(w[:1].upper() + w[1:] for w in rest)
