"""The table of API methods: name -> function, with parameter and result types.

The RPC server serves exactly this table (plus hello/status/model methods); the CLI calls the
same functions in-process, or by name on a remote engine (``--engine SPEC``). Parameters are
checked against the function's annotations: a wrong type is an :class:`InvalidParams` naming the
parameter, never a traceback from deep inside a step.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from engine.api import (
    classify,
    reading,
    report_draft,
    report_labels,
    report_style,
    review,
    steps,
    train,
)
from engine.errors import InvalidParams
from engine.serial import from_json, to_json

# Parameters that name a file or folder. An engine serves only paths inside the roots it was
# started with (``engine serve --root DIR``): see :func:`confine_paths`.
PATH_PARAMS = frozenset(
    {"out_dir", "input", "output", "heuristic", "bids_dir", "dicom_dir", "sidecar_metadata", "path"}
    | {"data", "out_model", "model_path", "files", "workspace", "cache", "config"}
    | {"paths", "image"}
    | {"images", "ehr", "refs", "icd_codes"}
    | {"priors", "pairs", "data_dir"}
    | {"reports", "pred", "ref", "plot"}
)
# Names of files inside OUT (resolved there by the workspace): no NUL character either.
FILE_NAME_PARAMS = frozenset({"name"})


@dataclass(frozen=True)
class ApiMethod:
    name: str
    func: Callable[..., Any]
    step: bool = False  # a pipeline step: one at a time per engine, cancellable
    doc: str = ""
    # cancelled by asking (context.cancelled()), never interrupted mid-step: training saves a
    # checkpoint at the step where it was cancelled, so a resume loses nothing
    cooperative: bool = False


def _m(
    name: str, func: Callable[..., Any], step: bool = False, cooperative: bool = False
) -> ApiMethod:
    doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
    return ApiMethod(name, func, step, doc, cooperative)


API: dict[str, ApiMethod] = {
    m.name: m
    for m in (
        _m("analyze", steps.analyze, step=True),
        _m("group", steps.group, step=True),
        _m("map", steps.map_, step=True),
        _m("generate", steps.generate, step=True),
        _m("validate", steps.validate, step=True),
        _m("convert", steps.convert, step=True),
        _m("review.remap", review.remap, step=True),
        _m("decide", review.decide),
        _m("decide_many", review.decide_many),
        _m("undo", review.undo),
        _m("redo", review.redo),
        _m("decisions", review.review_view),
        _m("review.check_name", review.check_name),
        _m("review.name_candidates", review.name_candidates),
        _m("workspace.view", review.workspace_view),
        _m("workspace.text", review.read_text),
        _m("heuristic.save", review.save_heuristic),
        _m("preview", review.preview),
        _m("image.render", reading.render_image),
        _m("reading.images", reading.images),
        _m("reading.ehr", reading.read_ehr),
        _m("reading.save", reading.save_report),
        _m("reading.saved", reading.saved_reports),
        _m("classify.train", classify.classify_train, step=True),
        _m("classify.evaluate", classify.classify_evaluate, step=True),
        _m("classify.predict", classify.classify_predict, step=True),
        _m("classify.second_opinion", classify.classify_second_opinion, step=True),
        _m("classify.confusion", classify.classify_confusion),
        _m("train.sft", train.train_sft, step=True, cooperative=True),
        _m("train.dpo", train.train_dpo, step=True, cooperative=True),
        _m("train.data", train.data_build),
        _m("train.check", train.data_check),
        _m("train.export", train.export, step=True),
        _m("report.draft", report_draft.report_draft, step=True),
        _m("report.ab", report_draft.report_ab, step=True),
        _m("report.style_build", report_style.style_build, step=True),
        _m("report.impression", report_style.impression, step=True),
        _m("report.impression_eval", report_style.impression_eval, step=True),
        _m("report.style_list", report_style.style_list),
        _m("report.style_corpus", report_style.style_corpus, step=True),
        _m("report.label", report_labels.report_label, step=True),
        _m("report.evaluate", report_labels.report_evaluate, step=True),
    )
}


@cache
def _signature(func: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, Any]]:
    return inspect.signature(func), typing.get_type_hints(func)


def params_type(func: Callable[..., Any]) -> type | None:
    """The parameters dataclass of a function that takes one (``map_(p: MapParams)``)."""
    sig, hints = _signature(func)
    ps = list(sig.parameters)
    if len(ps) == 1:
        tp = hints.get(ps[0])
        if dataclasses.is_dataclass(tp):
            return tp  # type: ignore[return-value]
    return None


def bind(func: Callable[..., Any], params: Any) -> dict[str, Any]:
    """Keyword arguments for ``func`` from JSON ``params``, checked against its annotations."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidParams("params must be an object of named parameters")
    sig, hints = _signature(func)
    ptype = params_type(func)
    if ptype is not None:
        names = {f.name for f in dataclasses.fields(ptype)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise InvalidParams(f"unknown parameter(s): {', '.join(unknown)}")
        missing = [
            f.name
            for f in dataclasses.fields(ptype)
            if f.name not in params
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        ]
        if missing:
            raise InvalidParams(f"missing parameter(s): {', '.join(missing)}")
        try:
            return {next(iter(sig.parameters)): from_json(ptype, params)}
        except TypeError as exc:
            raise InvalidParams(str(exc)) from None
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise InvalidParams(f"unknown parameter(s): {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, par in sig.parameters.items():
        if name not in params:
            if par.default is inspect.Parameter.empty:
                raise InvalidParams(f"missing parameter: {name}")
            continue
        try:
            kwargs[name] = from_json(hints.get(name, Any), params[name])
        except TypeError as exc:
            raise InvalidParams(f"{name}: {exc}") from None
    return kwargs


def call(name: str, params: Any = None) -> Any:
    """Run API method ``name`` in this process with JSON params; returns its JSON result."""
    m = API[name]
    return to_json(m.func(**bind(m.func, params)))


def result_type(name: str) -> Any:
    """The annotated return type of an API method (for the client to rebuild the result)."""
    _, hints = _signature(API[name].func)
    return hints.get("return", Any)


# --- workspace roots: where an engine may read and write -------------------------------------


def default_roots() -> list[str]:
    """The roots of an engine started without ``--root``: home, the current and the temp dir."""
    return [os.path.expanduser("~"), os.getcwd(), tempfile.gettempdir()]


def resolve_roots(roots: Iterable[str | os.PathLike[str]] | None) -> tuple[str, ...]:
    """``roots`` (default :func:`default_roots`) as absolute paths with symlinks resolved."""
    given = default_roots() if roots is None else list(roots)
    out: list[str] = []
    for r in given:
        real = os.path.realpath(os.path.expanduser(os.fspath(r)))
        if real not in out:
            out.append(real)
    return tuple(out)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def confine_paths(params: dict[str, Any], roots: Iterable[str] | None) -> None:
    """Refuse (:class:`InvalidParams`) any path parameter outside ``roots`` (resolved, symlinks
    too); ``roots`` None: no confinement (the CLI in this process). Values that are not strings
    are left to the type check of :func:`bind`."""
    for name in sorted(FILE_NAME_PARAMS & set(params)):
        if isinstance(params[name], str) and "\0" in params[name]:
            raise InvalidParams(f"{name}: a file name cannot contain a NUL character")
    if roots is None:
        return
    roots = tuple(roots)
    checks = [
        (name, v)
        for name in sorted(PATH_PARAMS & set(params))
        for v in (params[name] if isinstance(params[name], list) else [params[name]])
    ]
    for name, value in checks:
        if not isinstance(value, str):
            continue
        try:
            if "\0" in value:
                raise ValueError("embedded NUL character")
            candidates = {os.path.realpath(value), os.path.realpath(os.path.expanduser(value))}
        except (OSError, ValueError, RuntimeError) as exc:
            raise InvalidParams(f"{name}: {value[:200]!r} is not a usable path: {exc}") from None
        for real in candidates:
            if not any(_inside(real, root) for root in roots):
                raise InvalidParams(
                    f"{name}: {value[:200]!r} is outside the engine's roots "
                    f"({', '.join(roots)}); start the engine with --root DIR to serve it"
                )
