"""``xpnet export``: a checkpoint as ONNX or safetensors."""

from __future__ import annotations

import os
import sys

from .output import say


def cmd_export(args) -> int:
    from .. import export

    done = export.export(args.checkpoint, args.format, args.out, probabilities=args.probabilities, dtype=args.dtype)
    if done["rounded_from"]:
        print(
            f"xpnet export: note: the {done['rounded_from']} weights were rounded to {done['dtype']}; the "
            f"graph's scores agree with xpnet's to {done['dtype']} precision",
            file=sys.stderr,
        )
    say(f"wrote {os.fspath(done['path'])} ({done['format']}, {done['dtype']})")
    return 0
