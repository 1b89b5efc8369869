"""The ``idprops`` command."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _classes(text: str) -> list[int | str]:
    # Folder datasets also know their classes by folder name (see _by_folder_name).
    items = [c.strip() for c in text.split(",") if c.strip()]
    return [int(c) if c.lstrip("-").isdigit() else c for c in items]


def _by_folder_name(root: str, classes: list[int | str]) -> list[int | str]:
    """``classes`` for the image folder ``root``: numbers are folder names when its
    class folders are numbered, labels otherwise.

    Labels follow the folder names sorted as text, so with folders 1, 2 and 10 the
    label 1 is folder 10: there, ``--classes 1,2`` means the folders named so, and a
    number that names no folder is an error rather than a label.
    """
    try:
        names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    except OSError:  # load_dataset says what is wrong with the folder
        return classes
    if not any(name.lstrip("-").isdigit() for name in names):
        return classes
    missing = [c for c in classes if str(c) not in names]
    if missing:
        raise ValueError(
            f"--classes {','.join(map(str, missing))}: the class folders of {root} are "
            f"numbered, so numbers name folders, and these name none; folders: {', '.join(names)}"
        )
    return [str(c) for c in classes]


def _reads_a_folder(spec: str) -> bool:
    """Whether ``load_dataset(spec)`` reads an image folder (a path, or the name "folder")."""
    from .data import load_folder
    from .data.arrayfiles import ARRAY_SUFFIXES
    from .registry import available_datasets, get_dataset

    if spec in available_datasets():
        return get_dataset(spec) is load_folder
    # load_dataset takes any other string for a folder path, or says it is none.
    return not spec.lower().endswith(ARRAY_SUFFIXES)


def _is_dimension_estimator(obj: Any) -> bool:
    """Whether ``measure`` can build ``obj`` without arguments and fit it without labels."""
    if isinstance(obj, type):
        params = inspect.signature(obj).parameters.values()
        if any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            return False  # e.g. ReprDimension, built around a network
        obj = obj()
    # The plugins guide asks only for fit and dimension_, so a plugin may lack tags.
    tags = getattr(obj, "__sklearn_tags__", None)
    return tags is None or not tags().target_tags.required  # e.g. LabelSharpness needs y


def _check_dimension_estimators(specs: Sequence[str]) -> None:
    """Refuse, before any data are read, the names ``measure`` cannot estimate d_data with,
    and parameters (``mle:k=10``) that the estimator does not take."""
    from .parsing import parse_spec
    from .registry import available_estimators, get_estimator, resolve_estimator

    def usable(name: str) -> bool:
        # Only for listing the alternatives: a plugin that cannot even be built is not one.
        try:
            return _is_dimension_estimator(get_estimator(name))
        except Exception:
            return False

    for spec in specs:
        name, params = parse_spec(spec)
        try:
            estimator = get_estimator(name)
        except ValueError:
            problem = f"unknown estimator {name!r}"
        else:
            # A plugin that fails to build raises its own error here.
            if _is_dimension_estimator(estimator):
                try:
                    built = resolve_estimator(name, **params)
                    if hasattr(built, "_parameter_constraints"):  # scikit-learn checks types and ranges
                        built._validate_params()
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"--estimator {spec}: {exc}") from None
                continue
            problem = f"{name!r} is not a dimension estimator"
        valid = [other for other in available_estimators() if usable(other)]
        raise ValueError(
            f"--estimator: {problem}; choose from {', '.join(valid)}. K_F is measured unless "
            "--no-sharpness (sample size: --sharpness-samples), and the dimension of a "
            "network's layers with --model NAME --layer NAME"
        )


def _layers_of(model: str) -> str:
    """The layer names of the registered model ``model``, as a clause of an error."""
    from .nn import build_model

    try:
        built = build_model(model)  # the names do not depend on the input's shape
    except Exception as exc:  # unknown or unbuildable: say why instead
        return f"it cannot be built to list its layers ({exc})"
    names = [name for name, _ in built.named_modules() if name]
    return f"its layers: {', '.join(names)}"


def _add_measure(sub) -> None:
    p = sub.add_parser(
        "measure",
        help="measure d_data, K_F and d_repr of a dataset",
        description="Intrinsic dimension of the data by each estimator, label sharpness "
        "K_F, and the intrinsic dimension of network layers' activations.",
    )
    p.add_argument(
        "--data",
        default="digits",
        help="registered dataset name, image folder (one subfolder per class, or unlabelled "
        "images), or .npy/.npz/.pt file of samples (.npz: keys X and optionally y) (default: digits)",
    )
    p.add_argument("--root", help="local folder holding the dataset's files (torchvision datasets)")
    p.add_argument(
        "--classes",
        type=_classes,
        help="keep these classes, by label or (image folders) by folder name, e.g. 0,1 or cat,dog",
    )
    p.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="resize the images of an image folder to N x N pixels, so that images of different sizes can be measured together",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="largest image of an image folder read, in pixels (default 4096 x 4096; 0: no limit); "
        "a larger one is refused from its header, before it is decoded",
    )
    p.add_argument("--n", type=int, help="seeded subsample of this many images")
    p.add_argument(
        "--seed", type=int, default=0, help="seed for subsampling, K_F's sample and --model's random initialisation"
    )
    p.add_argument(
        "--scale", default="unit", choices=["unit", "paper"], help="pixel scale: [0, 1] or the paper's preset"
    )
    p.add_argument("--download", action="store_true", help="let torchvision download missing files into --root")
    p.add_argument("--split", default="all", choices=["all", "train", "test"], help="which part of the dataset")
    p.add_argument(
        "--estimator",
        action="append",
        dest="estimators",
        metavar="NAME[:KEY=VALUE,...]",
        help="dimension estimator by registered name (mle, twonn or a plugin's) with optional "
        "parameters, e.g. mle:k=10 or twonn:method=mle; repeatable (default: mle and twonn)",
    )
    p.add_argument("--no-sharpness", action="store_true", help="skip K_F")
    p.add_argument("--sharpness-samples", type=int, default=1000, help="K_F's sample size M (0: all)")
    p.add_argument("--model", help="registered model name for d_repr")
    p.add_argument(
        "--layer", action="append", dest="layers", default=[], metavar="NAME", help="layer for d_repr, repeatable"
    )
    p.add_argument("--weights", help="local state_dict file for --model (random init otherwise)")
    p.add_argument(
        "--device", help="torch device for the model (default: where the model is, the CPU for a model built by name)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the results as strict JSON: a non-finite number (K_F is infinite when "
        "identical images have different labels) is null",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=_run_measure)


def _run_measure(args) -> int:
    from .data import load_dataset
    from .data.arrayfiles import ARRAY_SUFFIXES
    from .jsonable import jsonable
    from .studies.measure import measure

    if args.layers and not args.model:
        raise ValueError("--layer needs --model")
    for flag in ("weights", "device"):
        if getattr(args, flag) and not args.model:
            raise ValueError(f"--{flag} needs --model: it is the model's")
    if args.model and not args.layers:
        raise ValueError(f"--model {args.model} needs at least one --layer NAME; {_layers_of(args.model)}")
    _check_dimension_estimators(args.estimators or ())
    folder = _reads_a_folder(args.data)
    if folder and args.classes:
        args.classes = _by_folder_name(args.root if args.data == "folder" else args.data, args.classes)
    names = [c for c in args.classes or () if isinstance(c, str)]
    if names and not folder:
        raise ValueError(
            f"--data {args.data} takes class labels, e.g. --classes 0,1; class names such as "
            f"{names[0]!r} select the class folders of an image folder"
        )
    if args.classes and len(set(args.classes)) < 2 and not args.no_sharpness:
        # The subset relabels its classes 0..k-1, so K_F's own error would name class 0.
        raise ValueError(
            f"K_F compares images of different classes, and --classes {args.classes[0]} keeps "
            "one: give two or more (e.g. --classes 3,5), or add --no-sharpness to measure "
            "only the dimension"
        )
    if args.image_size is not None:
        if not folder:
            raise ValueError(
                f"--image-size resizes the images of an image folder; --data {args.data} is "
                "served at its own size: leave --image-size out"
            )
        if args.image_size < 1:
            raise ValueError(f"--image-size is a number of pixels, 1 or more; got {args.image_size}")
    if args.max_pixels is not None:
        if not folder:
            raise ValueError(f"--max-pixels limits the images of an image folder; --data {args.data} is none")
        if args.max_pixels < 0:
            raise ValueError(f"--max-pixels is a number of pixels (0: no limit); got {args.max_pixels}")
    progress = False if (args.no_progress or args.json) else None
    kwargs = {
        "classes": args.classes,
        "n": args.n,
        "seed": args.seed,
        "scale": args.scale,
        "train": {"all": None, "train": True, "test": False}[args.split],
    }
    if args.data.lower().endswith(ARRAY_SUFFIXES) and args.scale == "unit":
        # Arrays keep their own scale (uint8 read as 0..255, floats as given) unless told.
        del kwargs["scale"]
    if args.root:
        kwargs["root"] = args.root
    if args.download:
        kwargs["download"] = True
    if args.image_size is not None:
        kwargs["image_size"] = args.image_size
    if args.max_pixels is not None:
        kwargs["max_pixels"] = args.max_pixels or None
    dataset = load_dataset(args.data, **kwargs)
    # A folder of images without class folders, or arrays saved without labels.
    unlabelled = getattr(dataset, "targets", ()) is None
    result = measure(
        dataset,
        estimators=args.estimators or ("mle", "twonn"),
        sharpness=not (args.no_sharpness or unlabelled),
        sharpness_samples=args.sharpness_samples or None,
        model=args.model,
        layers=args.layers,
        weights=args.weights,
        device=args.device,
        seed=args.seed,
        progress=progress,
    )
    result["data"]["name"] = args.data
    if unlabelled and not args.no_sharpness:
        result["sharpness_skipped"] = (
            f"K_F not measured: {args.data} has no labels (K_F compares images of different "
            "classes); sort the images into one subfolder per class, or save the labels as y."
        )
    if args.json:
        print(json.dumps(jsonable(result, nonfinite="null"), indent=2, allow_nan=False))
    else:
        print(format_measurement(result))
        if "sharpness_skipped" in result:
            print(result["sharpness_skipped"])
    return 0


def _pm(value: float, std: float | None, interval: Sequence[float] | None = None) -> str:
    if interval is not None:
        return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"{value:.3f} ± {std:.3f}" if std is not None and math.isfinite(std) else f"{value:.3f}"


def _count(n: int, one: str, many: str | None = None) -> str:
    """``"1 feature"``, ``"64 features"``."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def format_measurement(result: dict[str, Any]) -> str:
    """Render :func:`idprops.studies.measure.measure`'s result as a readable table."""
    data = result["data"]
    rows = []  # (quantity, value, duplicates, seconds)
    for search in result.get("searches", ()):
        shared = f", shared by {len(search['estimators'])}" if len(search["estimators"]) > 1 else ""
        rows.append((f"kNN search  k={search['k']}{shared}", "", "", f"{search['seconds']:.2f}"))
    for row in result["dimensions"]:
        params = row["params"]
        detail = f"k={params['k']}" if "k" in params else params.get("method", "")
        rows.append(
            (
                f"d_data  {row['estimator']} {detail}",
                _pm(row["dimension"], row["std"], row.get("interval")),
                f"{row['duplicates']}",
                f"{row['seconds']:.2f}",
            )
        )
    if "sharpness" in result:
        ks = result["sharpness"]
        rows.append(
            (
                f"K_F  (M={ks.get('samples', '?')})",
                f"{ks['K_F']:.4g}",
                f"{ks.get('identical_conflicts', '')}",
                f"{ks.get('seconds', math.nan):.2f}",
            )
        )
    if "representation" in result:
        rep = result["representation"]
        for i, row in enumerate(rep["layers"]):
            seconds = f"{rep['seconds']:.2f}" if i == 0 else ""  # one forward pass for all
            rows.append(
                (
                    f"d_repr  {rep['model']}.{row['layer']}",
                    _pm(row["dimension"], row["std"], row.get("interval")),
                    "",
                    seconds,
                )
            )
    # Dotted layer names can be long: the first column is as wide as its longest entry.
    width = max([26, *(len(row[0]) for row in rows)]) + 2
    rule = "-" * (width + 50)
    lines = [
        f"data: {data.get('name', 'given')}  ({_count(data['samples'], 'sample')}, "
        f"{_count(data['features'], 'feature')}, "
        f"{'unlabelled' if data['classes'] is None else _count(data['classes'], 'class', 'classes')}, "
        f"pixels: {data['pixel_scale']})",
        "",
        f"{'quantity':<{width}}{'value':>28}{'duplicates':>12}{'seconds':>10}",
        rule,
    ]
    for quantity, value, duplicates, seconds in rows:
        lines.append(f"{quantity:<{width}}{value:>28}{duplicates:>12}{seconds:>10}".rstrip())
    lines.append(rule)
    notes = list(result.get("warnings", ()))
    if "sharpness" in result:
        notes.append(f"K_F is on the pixel scale '{result['sharpness']['pixel_scale']}' (it scales as 1/pixel range).")
    if "representation" in result:
        rep = result["representation"]
        notes.append(f"d_repr by {rep['estimator']}; model weights: {rep['weights']}.")
    profile = result.get("scale_profile")
    if profile:
        notes.append(
            f"d_data varies by {100 * profile['variation']:.0f} % across scales (Gride at neighbour ranks "
            f"{profile['ranks'][0]}-{2 * profile['ranks'][-1]}; flat: trust it, falling with scale: noise)."
        )
    rows_with_errors = [*result["dimensions"], *result.get("representation", {}).get("layers", [])]
    if any(row.get("interval") is not None for row in rows_with_errors):
        notes.append("[low, high] is the 95 % interval (points that share neighbours counted).")
    elif any(row.get("std") is not None and math.isfinite(row["std"]) for row in rows_with_errors):
        notes.append("± is one standard error.")
    lines.extend(notes)
    lines.append(f"total time: {result['seconds']:.2f} s")
    return "\n".join(lines)


class _SpacesOnly(argparse.HelpFormatter):
    """Wraps descriptions at spaces only: study and preset names hold hyphens."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        text = " ".join(text.split())
        return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)


def _add_run_options(p, kind: str | None) -> None:
    """The options that every form of ``idprops study`` takes."""
    p.add_argument(
        "--set",
        action="append",
        dest="overrides",
        default=[],
        metavar="KEY=VALUE",
        help="override an entry of the study file, repeatable: training.epochs=1, sizes=[50,100]",
    )
    p.add_argument(
        "--store",
        help="SQLite results store (default: the study file's store, else OUT/results.sqlite); resumed when it exists",
    )
    p.add_argument("--out", help=f"folder of the report (default: ./{kind or 'KIND'}-report)")
    p.add_argument("--n-jobs", type=int, help="cells run at once (-1: all cores; default: the file's or 1)")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the cells on the dask.distributed cluster whose scheduler is at ADDRESS (tcp://host:8786); needs idprops[dask]",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="let torchvision download the missing files of every dataset into its root "
        "(as download = true in each dataset entry)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--allow-imports",
        action="store_true",
        help="let the study file name Python objects as package.module:object, which "
        "imports and so RUNS that module's code: only for files you trust (by default "
        "names resolve through the registry of built-ins and installed plugins only)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cells, how many the store holds already and an estimate of the time left; run nothing",
    )


def _presets_by_kind() -> dict[str, list[str]]:
    """The shipped presets' names, by the study kind their file names."""
    from .studies.study import available_presets, find_preset, load_study_file

    by_kind: dict[str, list[str]] = {}
    for name in available_presets():
        by_kind.setdefault(load_study_file(find_preset(name)).get("kind", "?"), []).append(name)
    return by_kind


def _add_study(sub) -> None:
    from .registry import available_studies, get_study

    presets = _presets_by_kind()
    p = sub.add_parser(
        "study",
        help="run a study (train, attack, measure) from a study file, resumably",
        formatter_class=_SpacesOnly,
        description="Run every cell of a study that its results store lacks, then write "
        "the report (Markdown, HTML, CSV, figures). Run it again to resume after an "
        "interruption: finished cells are not run again. 'idprops study run FILE' runs "
        "the study the file names by its kind; 'idprops study KIND --config FILE' (or "
        "--preset NAME) checks that the file is of that kind.",
        epilog="shipped presets (idprops study run NAME, or idprops study KIND --preset NAME): "
        + "; ".join(f"{kind}: {', '.join(names)}" for kind, names in presets.items()),
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="{run,KIND}")
    run = kinds.add_parser("run", help="run the study a study file (or a shipped preset) describes")
    run.add_argument("file", metavar="FILE", help="a TOML study file, or the name of a shipped preset (e.g. digits)")
    _add_run_options(run, None)
    run.set_defaults(run=_run_study)
    for kind in available_studies():
        if kind == "run":  # taken by the command above; a plugin's study of that name is run by its file
            continue
        cls = get_study(kind)
        k = kinds.add_parser(kind, help=f"run a {kind} study ({cls.__name__})")
        source = k.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--preset",
            metavar="NAME",
            help="a shipped study file (idprops/studies/presets/NAME.toml): "
            + (", ".join(presets.get(kind, ())) or f"none ships for {kind}"),
        )
        source.add_argument("--config", metavar="FILE", help="a TOML study file")
        _add_run_options(k, kind)
        k.set_defaults(run=_run_study)


def _study_path(args):
    from pathlib import Path

    from .studies.study import available_presets, find_preset

    if args.kind != "run":
        return find_preset(args.preset) if args.preset else Path(args.config)
    path = Path(args.file).expanduser()
    if not path.exists() and args.file in available_presets():
        return find_preset(args.file)
    return path


def _check_writable_folder(folder, flag: str) -> None:
    """Fail before any cell runs when the report could not be written into ``folder``."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OSError(
            f"cannot write the report into {folder}: {exc.strerror or exc}; pass {flag} a folder you can write"
        ) from exc


def _run_study(args) -> int:
    from dataclasses import replace
    from pathlib import Path

    from .studies.specs import parse_datasets
    from .studies.study import parse_overrides, read_study_file

    if importlib.util.find_spec("matplotlib") is None and not args.dry_run:
        # Fail before the cells run, not after: the report is what the user asked for.
        raise RuntimeError(
            "the study's report draws figures with matplotlib, which is not installed; pip install 'idprops[plot]'"
        )
    path = _study_path(args)
    study, options = read_study_file(
        path,
        parse_overrides(args.overrides),
        kind=None if args.kind == "run" else args.kind,
        allow_imports=args.allow_imports,
    )
    # "--out=~/x" reaches here unexpanded by the shell; a literal ./~ folder is never meant.
    out = Path(args.out or f"{study.kind}-report").expanduser()
    if args.store:
        options["store"] = args.store
    if args.n_jobs is not None:
        options["n_jobs"] = args.n_jobs
    if args.no_progress:
        options["progress"] = False
    if args.download:
        if "datasets" not in study.get_params():
            raise ValueError(f"--download: a {study.kind} study reads bundled data; there is nothing to download")
        study.set_params(datasets=[replace(d, download=True) for d in parse_datasets(study.datasets)])
    if options.get("store") is None:  # neither --store nor the study file names one
        options["store"] = str(out / "results.sqlite")
    if args.dry_run:
        print(study.plan(options["store"], n_jobs=options.get("n_jobs", 1)))
        return 0
    _check_writable_folder(out, "--out")
    with contextlib.ExitStack() as stack:
        if args.dask:
            try:
                from dask.distributed import Client
            except ImportError as exc:
                raise RuntimeError("--dask needs dask.distributed: pip install 'idprops[dask]'") from exc
            from joblib import parallel_config

            stack.enter_context(Client(args.dask))
            stack.enter_context(parallel_config(backend="dask"))
        results = study.run(**options)
    reused = len(results) - results.n_run
    print(f"{study.kind}: {results.n_run} cell(s) run, {reused} taken from {results.store_path}")
    print(f"report: {study.report(results, out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idprops",
        description="Intrinsic properties of datasets and of neural networks' representations.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_measure(sub)
    _add_study(sub)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout, a batch scheduler), handled as Ctrl-C is."""


def _terminate(signum, frame):
    # As a KeyboardInterrupt, it stops the worker processes and keeps finished cells.
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``idprops`` command; errors are one line, unless ``--debug``.

    ``argv`` defaults to the command line's arguments; the exit status is returned.

    Examples
    --------
    >>> main(["measure", "--classes", "0,1", "--estimator", "twonn", "--no-sharpness"])
    data: digits  (360 samples, 64 features, 2 classes, pixels: unit [0, 1])
    <BLANKLINE>
    quantity                                           value  duplicates   seconds
    ------------------------------------------------------------------------------
    kNN search  k=16                                                          ...
    d_data  twonn regression            8.587 [7.214, 9.961]           0      ...
    ------------------------------------------------------------------------------
    d_data varies by 35 % across scales (Gride at neighbour ranks 1-16; flat: trust it, falling with scale: noise).
    [low, high] is the 95 % interval (points that share neighbours counted).
    total time: ... s
    0

    An error is one line on standard error ("idprops: error: --layer needs --model")
    and exit status 2:

    >>> main(["measure", "--layer", "fc1"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("IDPROPS_DEBUG")
    # Signal handlers can only be set from the main thread.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return args.run(args)
    except KeyboardInterrupt as exc:
        if debug:
            raise
        # A study's interrupt wraps the signal's and says what is saved where.
        terminated = isinstance(exc, _Terminated) or isinstance(exc.__cause__, _Terminated)
        detail = f": {exc}" if str(exc) else ""
        print(f"idprops: {'terminated' if terminated else 'interrupted'}{detail}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:  # one clear line instead of a traceback
        if debug:
            raise
        print(f"idprops: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if main_thread:  # None: a handler set outside Python, which cannot be put back
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    sys.exit(main())
