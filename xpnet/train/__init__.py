"""The trainer: epochs of shuffled minibatches, evaluation, history, checkpoints, resume.

Quick use::

    from xpnet.train import fit
    history = fit("digits", epochs=40)          # the defaults of ``xpnet train``
    print(history.last["test_acc"])

or, with a model and optimizer of your own::

    trainer = Trainer(model, optimizer, dataset, batch_size=64, seed=0, out="runs/x")
    history = trainer.fit(epochs=40)

``epochs`` is the total number of epochs: a trainer resumed from a checkpoint written after
epoch N and asked for ``epochs=2N`` trains N more and ends in exactly the state (bit for bit,
in float64 on NumPy) of one uninterrupted run of 2N epochs, because the weights, the
optimizer state, the epoch counter and the shuffle generator's state are all restored.

Inside an epoch nothing is read back from the device: the minibatch losses are summed on
the device and read, together with the evaluation metrics, once per epoch. A NaN or inf
loss stops training with :class:`~xpnet.errors.NonFiniteError`; the checkpoint on disk is
then the last good epoch's. Ctrl-C, SIGTERM and SIGHUP during :meth:`Trainer.fit`
write the last completed epoch's checkpoint and return the history with
``stopped == "interrupted"``.

The parts, one job each: :mod:`~xpnet.train.trainer` (the loop), :mod:`~xpnet.train.placement`
(the data on the device, checked once), :mod:`~xpnet.train.checkpoints` (what is written, and
when), :mod:`~xpnet.train.rollback` (the last completed epoch), :mod:`~xpnet.train.signals`
(Ctrl-C, SIGTERM, SIGHUP), :mod:`~xpnet.train.early` (early stopping), :mod:`~xpnet.train.history`
(records, metrics, progress), :mod:`~xpnet.train.sharding` (MPI) and :mod:`~xpnet.train.build`
(``xpnet train``'s one call). The step itself comes from :mod:`xpnet.compile`.

Started by ``mpiexec -n N`` (see :mod:`xpnet.parallel`), :func:`build` makes the trainer one of
N data-parallel ranks: the same shuffle on every rank, each rank's contiguous slice of every
global batch, one allreduce of the gradients per step, evaluation sharded and summed. Rank 0
alone claims the output folder, prints and writes; at every checkpoint the ranks check that
they hold the same model. There Ctrl-C or SIGTERM stops every rank after the same step, and rank 0
writes the last completed epoch.
On jax the step is compiled there too (``compile="auto"`` or ``"on"``): a compiled gradient of
the rank's slice, the allreduce, then a compiled update.
"""

from __future__ import annotations

from ..compile import COMPILE_CHOICES, make_step  # noqa: F401
from ..outputs import CHECKPOINT_NAME, LOCK_NAME, RUN_FILES, Output, claim_fresh_output, claim_output  # noqa: F401
from .build import CNN_DEFAULTS, DEFAULTS, FIXED_ON_RESUME, MODELS, build, default_epochs, fit
from .checkpoints import HISTORY_BYTES_PER_EPOCH, PLOT_FILES, checkpoint_bytes  # noqa: F401
from .early import EarlyStopping
from .history import COLUMNS, History, evaluate
from .signals import STOP_SIGNALS, _AgreedStop, _StopSignals  # noqa: F401
from .trainer import Trainer

__all__ = ["CNN_DEFAULTS", "COLUMNS", "DEFAULTS", "MODELS", "FIXED_ON_RESUME",
           "EarlyStopping", "History", "Trainer", "build", "default_epochs", "evaluate", "fit"]
