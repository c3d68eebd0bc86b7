"""The `sandbag` command line: train, evaluate, summary (and study, report). Errors are one line, exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .errors import SandbagError
from .progress import StudyProgress, TrainProgress

ERROR_EXIT = 2
LANG_HELP = "report language: en, ko (Korean text and figures; needs a Hangul font, e.g. Debian's fonts-nanum)"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to find help), like every other sandbag error."""

    def error(self, message: str):
        self.exit(ERROR_EXIT, f"sandbag: error: {message} (see '{self.prog} --help')\n")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    from .data import DATASETS
    from .models import MODELS
    from .regularizers import SPEC_HELP
    from .runs import default

    p.add_argument("--data", default=default("data"),
                   help=f"data set: {', '.join(DATASETS)} (default: {default('data')})")
    p.add_argument("--model", default=default("model"),
                   help=f"architecture: {', '.join(MODELS)}, or your own model's factory as package.module:function, "
                   "called as function(input_shape, num_classes, techniques) and imported from the current "
                   f"directory first (default: {default('model')})")
    p.add_argument(
        "--reg", action="append", default=[], metavar="SPEC",
        help=f"a technique, repeatable: {SPEC_HELP}. Options: bias/bn include biases / BN scale+shift in a "
        "penalty; decoupled = AdamW-style decay; prox = L1 by soft-thresholding after each step (exact zeros); "
        "hidden = noise after each hidden activation; spatial = channel dropout after each conv block; "
        "post = BN after the activation",
    )


def _add_train_options(train: argparse.ArgumentParser) -> None:
    """`sandbag train`'s run options: each RunConfig field's default is RunConfig's (None here: not given)."""
    from .runs import OPTIMIZERS, default

    def option(flag: str, field: str, kind, text: str = "", **extra) -> None:
        shown = default(field)
        train.add_argument(flag, dest=field, type=kind, default=None,
                           help=f"{text} (default: {'none' if shown is None else shown})".lstrip(), **extra)

    option("--epochs", "epochs", int)
    option("--batch-size", "batch_size", int, "global batch size; with --nproc N each process takes batch-size / N")
    option("--lr", "lr", float, "learning rate")
    option("--optimizer", "optimizer", str, f"{', '.join(OPTIMIZERS)} (sgd with momentum "
                                            f"{default('momentum')})", choices=OPTIMIZERS)
    option("--seed", "seed", int, "seeds weights, batch order, dropout and noise")
    option("--train-size", "train_size", int, "train on a stratified subset of this many samples")
    option("--val-fraction", "val_fraction", float, "carve a stratified validation split from the training data")
    option("--val-size", "val_size", int, "a stratified validation split of this many images not used for training")
    option("--test", "test", str, "default: the data set's test split; rest: every image not used for training or "
                                  "validation (needs --train-size)", choices=("default", "rest"))
    option("--eval-every", "eval_every", int, "clean train/val/test figures every k epochs and at the last one")
    option("--track-size", "track_size", int, "clean accuracy on a fixed stratified subset of this many training "
                                              "images every epoch (track_acc)")
    train.add_argument("--standardize", action="store_true", default=None,
                       help="per-channel mean 0 / std 1 from training data")
    option("--device", "device", str, "auto (a CUDA GPU when present), cpu, cuda, cuda:N")
    option("--threads", "threads", int, "torch CPU threads; none = torch's choice")
    train.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None,
                       help="keep the default NCHW memory layout (channels_last is faster on CPU)")
    train.add_argument("--tensorboard", action="store_true", default=None, help="also write TensorBoard event files")
    option("--amp", "amp", str, "bf16: bfloat16 autocast for the forward pass (mostly for GPUs; part of the config "
                                "hash)", choices=("bf16",))


def _add_study_parser(sub) -> None:
    """`sandbag study`: every default comes from StudyConfig (via the preset) or the executors; none is kept here."""
    from .study.config import PRESETS, defaults

    study_defaults = defaults()
    study = sub.add_parser("study", help="run every technique on several seeds and write a report")
    study.add_argument("--preset", default=None,
                       help=f"{', '.join(PRESETS)} (default: {study_defaults['name']})")
    study.add_argument("--config", help="a study described in a TOML file (see src/sandbag/presets/*.toml)")
    study.add_argument("--data", action="append",
                       help="data set(s) to study instead of the preset's; repeatable (StudyConfig default: "
                       f"{', '.join(study_defaults['data'])})")
    study.add_argument("--train-size", type=int,
                       help="stratified subset of the training data (default: the preset's; StudyConfig default: "
                       f"{study_defaults['train_size'] or 'all'})")
    study.add_argument("--seeds", type=int, help="seeds of the headline comparison, overriding the preset's "
                       f"(StudyConfig default {study_defaults['seeds']}); rerun on the same --out to add seeds")
    study.add_argument("--extra-seeds", type=int, help="seeds of the sub-experiments, overriding the preset's "
                       f"(StudyConfig default {study_defaults['extra_seeds']})")
    study.add_argument("--replicate", type=int, metavar="R",
                       help="run the same design again on seeds R*1000... and samples no other replicate uses, into "
                       "its own folder (default: studies/<date>-<name>-r<R>); 0: the study itself (default)")
    study.add_argument("--against", metavar="STUDY_DIR",
                       help="show this study's verdicts beside another's, part by part (default for a replicate: "
                       "the original beside its folder, when there is one)")
    study.add_argument("--retime", action="store_true",
                       help="measure the timing phase again (finished runs are reused) and rebuild the report")
    study.add_argument("--nproc", type=int, metavar="N",
                       help="data-parallel processes per run (adds a bn-sync arm next to bn; default: the preset's, "
                       f"StudyConfig default {study_defaults['nproc']})")
    _add_runner_options(study)


def _add_runner_options(p: argparse.ArgumentParser) -> None:
    """What `study` and `compare` share: where the runs go and how they run and report."""
    from .study.executors import EXECUTORS
    from .study.i18n import LANGS

    p.add_argument("--out", help="study folder (default: studies/<date>-<name>); rerun to resume")
    p.add_argument("--workers", type=int, help="parallel runs (default: one per core)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: 1)")
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help=f"{EXECUTORS[0]}: a process pool here (default); ray: each run a Ray task (pip install "
                   "'sandbag[ray]')")
    p.add_argument("--address", help="Ray cluster to use with --executor ray (default: start a local instance)")
    p.add_argument("--seeds-together", choices=("auto", "on", "off"), default="auto",
                   help="train each arm's seeds as one vmapped model (sandbag.multiseed; arms without batch "
                   "norm, local executor); auto: on where a CUDA GPU trains the runs (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--lang", choices=LANGS, default="en", help=LANG_HELP)


def _add_compare_parser(sub) -> None:
    from .data import DATASETS
    from .runs import OPTIMIZERS
    from .study.compare import BASE_PRESET
    from .study.config import defaults, preset_table

    base = argparse.Namespace(**{**defaults(), **preset_table(BASE_PRESET)})
    compare = sub.add_parser(
        "compare", help="does A beat B? Two arms on several seeds, paired, with a verdict per claim",
        description="Train A and B on the same seeds and samples and decide, claim by claim (test accuracy, gap, "
        "learning speed), whether the difference is real. A study without the lecture: its folder resumes on the "
        f"same --out and `sandbag report` rebuilds it. Settings not given are the {BASE_PRESET} preset's.")
    compare.add_argument("a", metavar="A", help="comma-separated specs, e.g. dropout=0.5 or l2=1e-3,bn; "
                         "l2={l2} lets a validation sweep choose the strength; none: no technique")
    compare.add_argument("b", metavar="B", help="the other side, written as A")
    compare.add_argument("--data", help=f"data set: {', '.join(DATASETS)} (default: {base.data[0]})")
    compare.add_argument("--model", help=f"architecture or package.module:function (default: {base.model})")
    compare.add_argument("--epochs", type=int, help=f"(default: {base.epochs})")
    compare.add_argument("--train-size", type=int, help=f"(default: {base.train_size})")
    compare.add_argument("--test", choices=("default", "rest"), help=f"(default: {base.test})")
    compare.add_argument("--val-size", type=int, help="validation images held out of training and test")
    compare.add_argument("--batch-size", type=int, help=f"(default: {base.batch_size})")
    compare.add_argument("--lr", type=float, help=f"(default: {base.lr})")
    compare.add_argument("--optimizer", choices=OPTIMIZERS, help=f"(default: {base.optimizer})")
    compare.add_argument("--seeds", type=int, default=10, help="paired seeds, each arm (default: 10)")
    _add_runner_options(compare)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sandbag", description=__doc__.split(":")[0] + ": train CNNs under regularization.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train one model and write a run folder")
    _add_run_options(train)
    _add_train_options(train)
    train.add_argument("--out", help="run folder (default: runs/<time>-<config hash>); one holding a finished run "
                       "is refused unless --overwrite")
    train.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar or table")
    train.add_argument("--nproc", type=int, metavar="N",
                       help="data-parallel training on N processes here (DDP under torchrun: gloo on CPU, nccl with "
                       "a GPU each); --batch-size stays the global batch, split among them. BN normalizes over each "
                       "process's batch unless --reg bn:sync. For several nodes: torchrun ... -m sandbag train ...")

    evaluate = sub.add_parser("evaluate", help="reload a run folder and report its metrics")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data", help="evaluate on other data with the same input shape")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")

    summary = sub.add_parser("summary", help="print the model's Keras-style summary")
    _add_run_options(summary)

    _add_study_parser(sub)
    _add_compare_parser(sub)

    export = sub.add_parser("export", help="write a run's model with batch norm folded in, for inference")
    export.add_argument("run_dir")
    export.add_argument("--out", help="output file (default: RUN_DIR/model-folded.pt)")

    from .study import i18n

    report = sub.add_parser("report", help="rebuild a study's report from its results, without training")
    report.add_argument("study_dir")
    report.add_argument("--lang", choices=i18n.LANGS, default="en", help=LANG_HELP)
    report.add_argument("--against", metavar="STUDY_DIR", help="show another study's verdicts beside these, part "
                        "by part, with the count that agree (e.g. a replicate and its original)")
    report.add_argument("--out", metavar="DIR", help="write the report (report.html, report.md, figures/, "
                        "verdicts.json, analysis.json) into DIR and only read STUDY_DIR, e.g. a Korean report beside "
                        "the English one (default: STUDY_DIR itself)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if args.command in ("train", "evaluate", "study", "compare", "report", "export"):
            from .allocator import tune_allocator

            tune_allocator()
        return _COMMANDS[args.command](args)
    except SandbagError as exc:
        if args.debug:
            raise
        print(f"sandbag: error: {exc}", file=sys.stderr)
        return ERROR_EXIT
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("sandbag: interrupted; files already written are complete", file=sys.stderr)
        return 130


# ----------------------------------------------------------------------------------------------------------------


def _cmd_train(args) -> int:
    from contextlib import nullcontext

    from . import distributed
    from .errors import ConfigError
    from .train import RunConfig, fit

    world = distributed.env_world_size()  # set when this process is a rank that torchrun started
    if world and args.nproc not in (None, world):
        raise ConfigError(f"--nproc {args.nproc} disagrees with torchrun's {world} processes; leave --nproc out")
    given = {f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name, None) is not None}
    cfg = RunConfig(**{**given, "regs": args.reg, "nproc": world or args.nproc or 1})
    if world is None:  # here, not in each rank torchrun starts
        _warn_own_regularization(cfg)
    out = Path(args.out) if args.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.key()[:6]}"
    if not args.overwrite:
        _keep_finished_run(out)
    if world is None and cfg.nproc > 1:  # the same command as nproc ranks under torchrun; rank 0 writes `out`
        distributed.check_resources(cfg.nproc, cfg.device)
        distributed.launch(cfg.nproc, ["-m", "sandbag", *args.argv, "--out", str(out)], threads=cfg.threads)
        summary = json.loads((out / "summary.json").read_text())
    else:
        with distributed.process_group(cfg.device) if world else nullcontext() as ctx:
            quiet = args.quiet or (ctx is not None and not ctx.is_main)
            console = Console(stderr=True, quiet=quiet)
            with TrainProgress(console, cfg.epochs, enabled=not quiet) as bar:
                summary = fit(cfg, out, on_epoch=bar.epoch_done, on_step=bar.step, dist=ctx)
        if ctx is not None and (distributed.launched() or not ctx.is_main):
            return 0 if distributed.launched() or summary["status"] == "finished" else 1  # the launcher reports
    if not args.quiet:
        Console().print(_metrics_table(summary, f"{out}  ({summary['status']})"))
    else:
        print(out)
    return 0 if summary["status"] == "finished" else 1


def _warn_own_regularization(cfg) -> None:
    """One line on stderr when a factory's model regularizes on its own: its dropout or bn stays in the run
    whatever --reg says (a study refuses such a model unless its file allows it)."""
    from .data import load
    from .models import is_factory, own_regularization, own_regularization_note

    if not is_factory(cfg.model):
        return
    ds = load(cfg.data)
    layers = own_regularization(cfg.model, ds.input_shape, ds.num_classes, cfg.specs)
    if layers:
        print(f"sandbag: warning: {own_regularization_note(cfg.model, layers)}", file=sys.stderr)


def _keep_finished_run(out: Path) -> None:
    """Refuse to train into a folder that holds a complete run (its summary.json, written last, says finished or
    diverged): training would replace it without a word. An unfinished or empty folder is used as it is."""
    from .errors import ConfigError
    from .runs import read_summary

    summary = read_summary(out)
    if summary is not None:
        raise ConfigError(f"{out} holds a {summary['status']} run (summary.json); pass --overwrite to replace it, or "
                          "choose another --out")


def _cmd_evaluate(args) -> int:
    from .train import evaluate_run

    result = evaluate_run(args.run_dir, data=args.data, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        Console().print(_metrics_table(result, f"{args.run_dir} on {result['data']}"))
    return 0


def _cmd_summary(args) -> int:
    from .data import load
    from .models import build_model, is_factory, keras_summary
    from .regularizers import parse_specs

    specs = parse_specs(args.reg)
    ds = load(args.data)
    model = build_model(args.model, ds.input_shape, ds.num_classes, specs)
    print(keras_summary(model, ds.input_shape, title=args.model if is_factory(args.model) else "sequential"))
    return 0


def _cmd_study(args) -> int:
    from .errors import ConfigError
    from .study.config import StudyConfig, defaults, load_config, load_preset

    if args.config and args.preset:
        raise ConfigError("give either --preset or --config, not both")
    cfg = load_config(args.config) if args.config else load_preset(args.preset or defaults()["name"])
    overrides = {k: v for k, v in (("data", args.data), ("train_size", args.train_size), ("nproc", args.nproc),
                                   ("seeds", args.seeds), ("extra_seeds", args.extra_seeds),
                                   ("replicate", args.replicate)) if v is not None}
    if overrides:
        cfg = StudyConfig.from_dict({**cfg.to_dict(), **overrides})
    out = _run_and_report(cfg, args)
    _print_verdicts(out, args.quiet, args.lang)
    _print_costs(out)
    return _failed_runs(out, args.debug)


def _run_and_report(cfg, args) -> Path:
    """Run (or resume) the study of `cfg` into --out, then build its report; return the folder."""
    from .models import own_regularization_note
    from .study.costs import add_report_seconds
    from .study.executors import EXECUTORS
    from .study.report import build_report
    from .study.runner import run_study

    if cfg.model_own_layers:  # allowed by the study (a compare always allows them): said, not refused
        print(f"sandbag: warning: {own_regularization_note(cfg.model, cfg.model_own_layers)}", file=sys.stderr)
    suffix = f"-r{cfg.replicate}" if cfg.replicate else ""
    out = Path(args.out) if args.out else Path("studies") / f"{time.strftime('%Y-%m-%d')}-{cfg.name}{suffix}"
    console = Console(stderr=True, quiet=args.quiet)
    command = " ".join(["sandbag", *sys.argv[1:]]) if sys.argv[0].endswith("sandbag") else None
    with StudyProgress(console, enabled=not args.quiet, show_data=len(cfg.cells) > 1) as display:
        run_study(cfg, out, workers=args.workers, threads=args.threads, command=command, on_progress=display.update,
                  executor=args.executor or EXECUTORS[0], address=args.address,
                  seeds_together={"auto": None, "on": True, "off": False}[args.seeds_together],
                  retime=getattr(args, "retime", False))
    started = time.perf_counter()
    build_report(out, lang=args.lang, against=_original(out, cfg.replicate, getattr(args, "against", None)))
    add_report_seconds(out, time.perf_counter() - started)
    return out


def _original(out: Path, replicate: int, against: str | None) -> Path | None:
    """The study to show beside this one: --against, else for a replicate the folder named as it is without its
    -r<R> suffix, when that holds a finished study."""
    if against:
        return Path(against)
    suffix = f"-r{replicate}"
    if replicate and out.name.endswith(suffix):
        original = out.with_name(out.name[: -len(suffix)])
        if (original / "verdicts.json").is_file():
            return original
    return None


def _print_costs(out: Path) -> None:
    meta = json.loads((out / "study.json").read_text())
    spent = meta.get("time") or {}
    print(f"study wall time {meta['wall_seconds'] / 60:.1f} min ({meta['runs']} runs, {meta['hardware']['workers']} "
          f"workers x {meta['hardware']['threads_per_worker']} thread(s) on {meta['hardware']['cpus']} CPUs)")
    if spent.get("share"):
        print("time: " + ", ".join(f"{name} {share:.0%}" for name, share in spent["share"].items() if share >= 0.005))
    print(out / "report.html")


def _failed_runs(out: Path, debug: bool) -> int:
    """The study's exit code: 1 with one line naming the failed runs and why ("2 of 144 runs failed: ..."), else
    0. With --debug, each failed run's traceback first (failed.json keeps it)."""
    from . import files
    from .study.executors import FAILED
    from .study.results import read_results

    rows = read_results(out)
    failed = [r for r in rows if r["status"] == "failed"]
    if not failed:
        return 0
    if debug:
        for r in failed:
            print((files.read_json(out / r["run_dir"] / FAILED) or {}).get("traceback", ""), file=sys.stderr)
    named = "; ".join(f"{r['group']}/{r['arm']} seed {r['seed']} ({r['reason']})" for r in failed[:3])
    more = f"; and {len(failed) - 3} more (results.csv)" if len(failed) > 3 else ""
    print(f"sandbag: {len(failed)} of {len(rows)} runs failed: {named}{more}", file=sys.stderr)
    return 1


def _cmd_compare(args) -> int:
    from .study.compare import SETTINGS, compare_config

    cfg = compare_config(args.a, args.b, **{k: getattr(args, k) for k in SETTINGS})
    out = _run_and_report(cfg, args)
    _print_comparison(out, args.lang)
    _print_costs(out)
    return _failed_runs(out, args.debug)


def _print_comparison(out: Path, lang: str) -> None:
    """Each part's verdict with its mean difference, interval, and what more seeds would buy."""
    from .study.report import VERDICT_MARK, localized_verdicts

    verdicts, t, cell = localized_verdicts(out, lang)
    for v in verdicts:
        for data, result in v["data"].items():
            print(f"{v['text']} [{data}]: {cell(result)}")
            for p in result["parts"]:
                word = p["verdict"] if lang == "en" else t(VERDICT_MARK[p["verdict"]])
                print(f"  {p['label']}: mean {_signed(p['mean'])}, 95% CI [{_signed(p['ci_low'])}, "
                      f"{_signed(p['ci_high'])}], n = {p['n']} seeds -> {word}")
                power = p.get("power") or {}
                if power.get("detectable") is not None:
                    needed = power.get("seeds_needed")
                    more = (f"about {needed} seeds would decide it (detect the observed difference or show it "
                            f"negligible)" if needed and power.get("decide_by_negligible")
                            else f"about {needed} seeds would detect the observed difference" if needed
                            else "no number of seeds would decide it")
                    print(f"    {p['n']} seeds detect a difference of {power['detectable']:.4g} with 80% power; "
                          f"{more}")


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.4g}"


def _cmd_export(args) -> int:
    from .export import export_run

    path, report = export_run(args.run_dir, args.out)
    folded = ", ".join(f"{bn}->{d['into']}" for bn, d in report["folded"].items()) or "none"
    print(f"folded BN: {folded}; max |difference| on random inputs {report['max_abs_diff']:.2e}")
    for bn, reason in report["kept"].items():
        print(f"kept {bn} (not folded exactly: {reason})")
    print(path)
    return 0


def _cmd_report(args) -> int:
    from .errors import ConfigError
    from .study.report import build_report

    study_dir = Path(args.study_dir)
    if not (study_dir / "study.json").exists() or not (study_dir / "results.csv").exists():
        raise ConfigError(f"{study_dir} is not a study folder (no study.json and results.csv)")
    out = Path(args.out) if args.out else None
    path = build_report(study_dir, lang=args.lang, against=Path(args.against) if args.against else None, out=out)
    _print_verdicts(study_dir, quiet=False, lang=args.lang, report_dir=out)
    print(path)
    return 0


def _print_verdicts(study_dir: Path, quiet: bool, lang: str = "en", report_dir: Path | None = None) -> None:
    if quiet:
        return
    from .study.report import localized_verdicts

    verdicts, t, cell = localized_verdicts(study_dir, lang, report_dir)
    table = Table(title=t("claims ({where})", where=study_dir))
    table.add_column("#", justify="right")
    table.add_column(t("claim"))
    datasets = list(verdicts[0]["data"]) if verdicts else []
    for data in datasets:
        table.add_column(data)
    for v in verdicts:
        table.add_row(str(v["number"]), v["text"], *[cell(v["data"][d]) for d in datasets])
    Console().print(table)
    for data in datasets:
        decided = sum(1 for v in verdicts if v["data"][data].get("decided"))
        print(t("{data}: {decided} of {total} claims decided", data=data, decided=decided, total=len(verdicts)))


_COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "summary": _cmd_summary, "study": _cmd_study,
             "compare": _cmd_compare, "report": _cmd_report, "export": _cmd_export}


# ----------------------------------------------------------------------------------------------------------------
# Terminal output


_SHOWN = ("status", "epochs_done", "train_acc", "val_acc", "test_acc", "gap", "train_loss", "test_loss", "penalty",
          "weight_l2", "frac_small", "frac_zero", "params", "seconds_per_epoch", "total_seconds")


def _metrics_table(result: dict, title: str) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in _SHOWN:
        if key in result and result[key] is not None:
            value = result[key]
            table.add_row(key, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}" if isinstance(
                value, int) else str(value))
    return table


if __name__ == "__main__":
    sys.exit(main())
