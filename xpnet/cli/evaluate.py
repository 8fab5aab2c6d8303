"""``xpnet eval``: a checkpoint's loss and accuracy on its dataset's test set."""

from __future__ import annotations

import json
import math

from ..errors import NonFiniteError
from .loading import dataset_for, load_for_use
from .output import say


def cmd_eval(args) -> int:
    import numpy as np

    from ..backend import from_host_like, host_dtype, to_numpy
    from ..train import evaluate

    model, meta = load_for_use(args)
    if getattr(model, "takes_ids", False):
        from .sequence import evaluate as evaluate_sequence

        return evaluate_sequence(args, model, meta)
    data = dataset_for(args, meta, args.dataset)
    ref = model.reference_array
    x = from_host_like(model.reshape_input(data.x_test).astype(host_dtype(ref.dtype)), ref)
    t = from_host_like(data.t_test.astype("int64"), ref)
    with np.errstate(all="ignore"):  # overflow is reported below, as a sentence
        loss, acc = (float(to_numpy(v)) for v in evaluate(model, x, t))
    if not math.isfinite(loss):
        raise NonFiniteError(
            f"the test loss of checkpoint {args.checkpoint!r} on {data.name} is {loss}: its weights hold "
            f"NaN or inf, or overflow in {host_dtype(ref.dtype)} (try --dtype float64)"
        )
    result = {
        "checkpoint": args.checkpoint,
        "dataset": data.name,
        "samples": int(x.shape[0]),
        "test_loss": loss,
        "test_acc": acc,
    }
    if args.json:
        say(json.dumps(result))
    else:
        say(f"{data.name}: test loss {loss:.4f}, test accuracy {acc:.4f} on {x.shape[0]} samples")
    return 0
