"""``xpnet train``: build a trainer from the flags, fit it, report and draw the curves."""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

from ..errors import XPNetError
from .output import EXIT_ERROR, EXIT_INTERRUPTED, interrupted_status, say, signal_status


def cmd_train(args) -> int:
    from .. import parallel

    comm = parallel.world()  # None unless mpiexec started several ranks
    if comm is None:
        return _train(args, None)
    try:
        return _train(args, comm)
    except BaseException as e:  # one rank failing ends them all, with its message, never a hang
        if os.environ.get("XPNET_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        comm.abort(_mpi_error_line(e), EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else EXIT_ERROR)
        raise  # not reached: abort ends the process


def _mpi_error_line(e: BaseException) -> str:
    """What ``main`` would print for ``e``, for a rank that must print it before ending the job."""
    if isinstance(e, KeyboardInterrupt):
        return "xpnet train: interrupted (every rank stopped; the last checkpoint written is kept)"
    if isinstance(e, MemoryError):
        return f"xpnet train: error: out of memory ({e}); use a smaller model, batch or dataset"
    if isinstance(e, (XPNetError, OSError)):
        return f"xpnet train: error: {e}"
    return (f"xpnet train: internal error: {type(e).__name__}: {e} (please report; XPNET_DEBUG=1 shows the "
            "traceback)")


def usage_problem(args) -> str | None:
    """What makes this ``xpnet train`` command line nonsense (reported as a usage error), or None."""
    from ..errors import ConfigError
    from ..train import seqbuild

    if args.resume is not None:
        return None  # the checkpoint fixes the model; build() refuses a setting that differs from it
    try:
        hidden = args.hidden if args.hidden is None or isinstance(args.hidden, list) else [args.hidden]
        seqbuild.check_given(args.model or "mlp", {"dataset": args.dataset, "hidden": hidden, "scale": args.scale,
                                                   "activation": args.activation, "reverse": args.reverse})
    except ConfigError as e:
        return str(e)
    if args.model in (None, "mlp") or args.model in seqbuild.SEQUENCE_MODELS:
        return None
    flags = (("--hidden", args.hidden), ("--activation", args.activation))
    extra = [flag for flag, value in flags if value is not None]
    if extra:
        verb = "apply" if len(extra) > 1 else "applies"
        return (f"{' and '.join(extra)} {verb} to --model mlp only; {args.model} has the book's layers "
                f"(docs/cli.md lists them): leave {' and '.join(extra)} out")
    if args.dataset in ("iris", "spiral"):
        return (f"--model {args.model} takes images, and {args.dataset} has flat features; use --dataset digits, "
                f"mnist or fashion-mnist, or --model mlp")
    return None


def _train(args, comm) -> int:
    from .. import train as T

    # stop signals are recorded from here on, not only inside fit: one during the set-up (jax's
    # import and first compile) is then acted on at fit's first step, never raised inside jax
    with T._StopSignals(stop_at_exit=False) as stop:
        code = _train_in(args, comm)
    if stop.requested and not stop.handled and code == 0:
        by = f" by {stop.name}" if stop.name else ""
        print(f"xpnet train: interrupted{by} after the run had completed; everything was saved", file=sys.stderr)
        return signal_status(stop.name)
    return code


def _output_folder(args, comm, T):
    """Where this rank writes: None on ranks other than 0, else --out, the folder of --resume,
    or a fresh runs/DATASET."""
    if comm is not None and comm.rank != 0:
        return None  # rank 0 alone claims the folder and writes
    if args.out is not None:
        return args.out  # claimed by the trainer: refused if it holds another run or is in use
    if args.resume is not None:
        return Path(args.resume).parent  # continue in place
    return T.claim_fresh_output(Path("runs") / (args.dataset or T.DEFAULTS["dataset"]))


def _compile_cache(args) -> tuple:
    """``(folder, why)`` of the compiled executables kept between runs (jax only; no import here)."""
    if args.compile == "off":
        return (None, "off")
    from ..compile import use_cache

    cache = use_cache()
    # a damaged entry read outside the compiled step (jax recompiles it): no raw warning for it
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache")
    return cache


def _train_in(args, comm) -> int:
    from .. import train as T

    out = _output_folder(args, comm, T)
    t0 = time.perf_counter()
    cache = _compile_cache(args)
    trainer = T.build(
        args.dataset, hidden=args.hidden, activation=args.activation, optimizer=args.optimizer, lr=args.lr,
        batch_size=args.batch_size, seed=args.seed, backend=args.backend, device=args.device, dtype=args.dtype,
        out=out, scale=args.scale, weight_decay=args.weight_decay, patience=args.patience,
        data_dir=args.data_dir, resume=args.resume, save_every=args.save_every, quiet=args.quiet, log=say,
        overwrite=args.overwrite, compile=args.compile, comm=comm, model=args.model, reverse=args.reverse,
    )
    if args.epochs is None:
        args.epochs = T.default_epochs(trainer.meta)
    if trainer.step.compiled and cache[0] is None and "folder" in cache[1] and (comm is None or comm.rank == 0):
        print(f"xpnet train: note: compiled executables are not kept between runs: {cache[1]}", file=sys.stderr)
    try:
        if comm is not None and comm.rank != 0:
            history = trainer.fit(args.epochs)  # silent: rank 0 prints and writes
            return interrupted_status(history) if history.stopped == "interrupted" else 0
        return _run_training(args, trainer, t0)
    finally:
        trainer.close()


def _announce(trainer) -> None:
    """The line that says what is trained, on what, and how."""
    from ..backend import backend_name, device, device_label, dtype_name

    model = trainer.model
    ref = model.reference_array
    if getattr(model, "takes_ids", False):
        reverse = ", reversed questions" if trainer.meta.get("reverse") else ""
        what = f"{model!r}{reverse}"
    elif model.input_shape is None:
        sizes = [model.in_features] + [int(W.shape[1]) for W in model.weight_matrices()]
        what = f"{'-'.join(map(str, sizes))} MLP"
    else:
        shape = "x".join(map(str, model.input_shape))
        what = f"{trainer.meta.get('model', 'convolutional network')} ({shape} images)"
    say(
        f"training {what} on {trainer.meta.get('dataset')} "
        f"({trainer.x_train.shape[0]} train / "
        f"{0 if trainer.x_test is None else trainer.x_test.shape[0]} test)"
        f" with {type(trainer.optimizer).__name__} lr={trainer.optimizer.lr}, "
        f"batch {trainer.loader.batch_size}"
        f", on {backend_name(ref)} {device_label(device(ref))} {dtype_name(ref.dtype)}"
        + ("" if trainer.comm is None else f", {trainer.comm.size} MPI ranks")
    )


def _run_training(args, trainer, t0: float) -> int:
    out = trainer.out
    if not args.quiet:
        _announce(trainer)
    history = trainer.fit(args.epochs)
    elapsed = time.perf_counter() - t0
    last = history.last
    if history.stopped == "interrupted":
        saved = f"checkpoint of epoch {trainer.epoch}: {history.checkpoint}" if history.checkpoint else (
            f"nothing written to {os.fspath(out)}")
        by = f" by {history.signal}" if history.signal else ""
        print(f"xpnet train: interrupted{by} after epoch {trainer.epoch}; {saved}", file=sys.stderr)
        return interrupted_status(history)
    written = [history.checkpoint, str(out / "history.json"), str(out / "history.csv")]
    if not args.no_plot and history.records:
        written += _plots(trainer, history)
    acc = last.get("test_acc", last.get("train_acc"))
    which = "test" if "test_acc" in last else "train"
    ppl = last.get(f"{which}_ppl")
    result = f"perplexity {ppl:.2f} (next word right {acc:.4f})" if ppl is not None else f"accuracy {acc:.4f}"
    say(
        f"final {which} {result} after {trainer.epoch} epochs in {elapsed:.1f} s"
        + (" (stopped early)" if history.stopped == "early" else "")
    )
    say("wrote " + ", ".join(written))
    return 0


def _plots(trainer, history) -> list[str]:
    """Draw curves.png (and regions.png for 2-D data); the paths drawn. A plot that cannot be
    drawn is a note: the checkpoint and history are written already."""
    from ..plots import PlotUnavailableError, plot_decision_regions, plot_history

    out, written = trainer.out, []
    try:
        written.append(str(plot_history(history, out / "curves.png", title=f"{trainer.meta.get('dataset')}")))
        if trainer.x_train.shape[1] == 2 and not getattr(trainer.model, "takes_ids", False):
            from ..backend import to_numpy

            x, t = to_numpy(trainer.x_train), to_numpy(trainer.t_train)
            written.append(str(plot_decision_regions(trainer.model, x, t, out / "regions.png")))
    except (PlotUnavailableError, OSError) as e:
        print(f"xpnet train: note: no plot drawn: {e}", file=sys.stderr)
    return written
