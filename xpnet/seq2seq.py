"""Encoder-decoder models of "Deep Learning from Scratch 2" (chapters 7 and 8): ``Seq2seq``,
``PeekySeq2seq`` and ``AttentionSeq2seq``, built from xpnet's sequence layers.

- encoder: ``TimeEmbedding`` then ``TimeLSTM``; its last hidden state ``h`` starts the decoder
  (``AttentionSeq2seq`` hands over every hidden state ``hs``);
- decoder: ``TimeEmbedding``, a stateful ``TimeLSTM`` started at ``h``, ``TimeAffine`` to scores
  over the vocabulary, ``TimeSoftmaxWithLoss``;
- Peeky: ``h`` is also concatenated to every decoder input, ``[h | x_t]`` into the LSTM, and to
  every LSTM output, ``[h | h_t]`` into the affine layer; its gradient sums over the steps;
- attention: ``TimeAttention`` over the encoder's ``hs`` gives a context ``c_t`` for every decoder
  state; ``[c_t | h_t]`` goes into the affine layer.

A model quacks like :class:`~xpnet.Sequential` where training needs it: ``params`` (a live
mapping, keys numbered as a Sequential numbers them: ``W1`` the encoder's embedding, ``Wx1``,
``Wh1``, ``b1`` its LSTM, ``W2`` the decoder's embedding...), ``grads``, ``loss(x, t)``,
``gradient(x, t)``, ``accuracy(x, t)``. ``x`` (N, T) are question ids, ``t`` (N, T') answer ids
whose first column is the start marker: training is the book's teacher forcing, decoder input
``t[:, :-1]`` and target ``t[:, 1:]``. ``generate(x, start_id, length)`` decodes greedily
(each step's most likely id is the next input); ``accuracy`` is the fraction of answers
generated exactly. Reversing the questions (the book's ``x[:, ::-1]``) is a data option.
"""

from __future__ import annotations

import numpy as np

from .attention import TimeAttention
from .backend import Backend, check_same_backend, device, namespace, resolve, to_numpy
from .checks import as_rng, is_array, size_arg
from .errors import ConfigError, DTypeError, ShapeError
from .model import _checked_views, describe_layers
from .recurrent import TimeLSTM
from .sequence import TimeAffine, TimeEmbedding, TimeSoftmaxWithLoss, check_indices


def _ids(a, name: str, rows: int, like, min_len: int = 1):
    """``a`` as (N, T) word ids in ``[0, rows)`` on ``like``'s device, or a clear error."""
    if not is_array(a):
        raise DTypeError(f"{name} must be an integer array of shape (N, T), got {type(a).__name__}; "
                         f"convert with xpnet.get_backend().asarray(np.asarray(ids))")
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < min_len:
        raise ShapeError(f"{name} must have shape (N, T) with N >= 1 and T >= {min_len}, got {tuple(a.shape)}")
    return check_indices(a, rows, name, like)


def _last_step_grad(dh, T: int, xp):
    """(N, T, H) zeros with ``dh`` (N, H) at the last step: the gradient of ``hs`` when only
    ``hs[:, -1]`` was used."""
    last = xp.expand_dims(dh, axis=1)
    if T == 1:
        return last
    return xp.concat([xp.zeros((dh.shape[0], T - 1, dh.shape[1]), dtype=dh.dtype, device=device(dh)), last], axis=1)


def _start_ids(self: Seq2seq, start_id, x, xp, check: bool = True):
    """The decoder's first ids (N, 1): one id for every question, or one each (checked)."""
    ref, N = self.reference_array, x.shape[0]
    if is_array(start_id) and not isinstance(start_id, np.generic):
        check_same_backend(start_id, ref, "generate start_id")
        if start_id.ndim != 1 or start_id.shape[0] != N:
            raise ShapeError(f"generate start_id must be one int or one id per question ({N},), got shape "
                             f"{tuple(start_id.shape)}")
        ids = check_indices(start_id, self.vocab_size, "generate start_id", ref) if check else start_id
        return xp.reshape(xp.astype(ids, x.dtype), (N, 1))
    if isinstance(start_id, bool) or not isinstance(start_id, (int, np.integer)) \
            or not 0 <= start_id < self.vocab_size:
        raise ConfigError(f"generate start_id must be an id in [0, {self.vocab_size - 1}] (the start marker's "
                          f"id, e.g. char_to_id['_']), got {start_id!r}")
    return xp.full((N, 1), int(start_id), dtype=x.dtype, device=device(x))


class Seq2seq:
    """The book's ``Seq2seq``: the encoder's last hidden state starts the decoder's LSTM.

    Built from its five layers (``create`` draws them as the book does). The encoder's LSTM is
    not stateful; the decoder's is (``set_state(h)`` before every pass). The embeddings and the
    loss skip their own index checks: the model checks ``x`` and ``t`` once per call when
    ``check=True``.
    """

    kind = "seq2seq"
    takes_ids = True  # word ids in, word ids as targets: the trainer places and checks them as such
    eager_metrics = True  # a compiled step evaluates it eagerly (loops over batches and time steps)
    in_features = out_features = input_shape = None
    helper_layers: tuple = ()  # layers without parameters outside ``layers`` (attention)

    def __init__(self, enc_embed: TimeEmbedding, enc_lstm: TimeLSTM, dec_embed: TimeEmbedding,
                 dec_lstm: TimeLSTM, dec_affine: TimeAffine):
        layers = [enc_embed, enc_lstm, dec_embed, dec_lstm, dec_affine]
        self.check_layout([type(layer).__name__ for layer in layers],
                          [{k: tuple(v.shape) for k, v in getattr(layer, "params", {}).items()} for layer in layers])
        self.enc_embed, self.enc_lstm = enc_embed, enc_lstm
        self.dec_embed, self.dec_lstm, self.dec_affine = dec_embed, dec_lstm, dec_affine
        self.layers = [enc_embed, enc_lstm, dec_embed, dec_lstm, dec_affine]
        self.loss_layer = TimeSoftmaxWithLoss(check_labels=False)
        self._views = _checked_views(self.layers)  # one library, device and dtype, each layer once
        enc_lstm.stateful, dec_lstm.stateful = False, True
        for e in (enc_embed, dec_embed):
            e.check_indices = False
        self.hs = None

    # ------------------------------------------------------------------ building
    @classmethod
    def create(cls, vocab_size: int, wordvec_size: int, hidden_size: int, rng=None,
               backend: Backend | str | None = None):
        """The book's initial weights, drawn on the host from ``rng`` (a seed or a numpy
        Generator) in layer order: embeddings ``0.01 randn``, LSTM and affine ``randn / sqrt(fan_in)``,
        zero biases. One seed gives the same model on every backend."""
        V = size_arg(f"{cls.__name__} vocab_size", vocab_size)
        D = size_arg(f"{cls.__name__} wordvec_size", wordvec_size)
        H = size_arg(f"{cls.__name__} hidden_size", hidden_size)
        be = backend if isinstance(backend, Backend) else resolve(backend)
        rng = as_rng(rng)
        dec_in, affine_in = cls._decoder_sizes(D, H)
        return cls(TimeEmbedding.create(V, D, rng=rng, backend=be), TimeLSTM.create(D, H, rng=rng, backend=be),
                   TimeEmbedding.create(V, D, rng=rng, backend=be), TimeLSTM.create(dec_in, H, rng=rng, backend=be),
                   TimeAffine.create(affine_in, V, rng=rng, backend=be))

    @staticmethod
    def _decoder_sizes(D: int, H: int) -> tuple[int, int]:
        """(decoder LSTM input size, affine input size) for word vectors D and hidden size H."""
        return D, H

    LAYERS = ("enc_embed", TimeEmbedding), ("enc_lstm", TimeLSTM), ("dec_embed", TimeEmbedding), \
        ("dec_lstm", TimeLSTM), ("dec_affine", TimeAffine)

    @classmethod
    def check_layout(cls, types: list, shapes: list) -> None:
        """Refuse layers that do not make this model: ``types`` (class names) and ``shapes``
        (each layer's parameter shapes) must be the five layers in order, with sizes that fit
        together (what a checkpoint is checked against before any array is loaded)."""
        names = [f"{name} ({c.__name__})" for name, c in cls.LAYERS]
        if len(types) != len(cls.LAYERS):
            raise ConfigError(f"{cls.__name__} takes five layers, {', '.join(names)}; got {len(types)}")
        for (name, c), got in zip(cls.LAYERS, types):
            if got != c.__name__:
                raise ConfigError(f"{cls.__name__} {name} must be an xpnet {c.__name__}, got {got} (the five "
                                  f"layers: {', '.join(names)})")
        emb, enc, demb, dec, aff = (dict(s) for s in shapes)
        D, H = demb["W"][1], enc["Wh"][0]
        want = {"encoder LSTM input": (enc["Wx"][0], emb["W"][1]),
                "decoder hidden size": (dec["Wh"][0], H),
                "decoder LSTM input": (dec["Wx"][0], cls._decoder_sizes(D, H)[0]),
                "affine input": (aff["W"][0], cls._decoder_sizes(D, H)[1]),
                "affine output (vocabulary)": (aff["W"][1], demb["W"][0])}
        bad = [f"{what} is {got}, expected {exp}" for what, (got, exp) in want.items() if got != exp]
        if bad:
            raise ShapeError(f"{cls.__name__}'s layers do not fit together: {'; '.join(bad)}. Build it with "
                             f"{cls.__name__}.create(vocab_size, wordvec_size, hidden_size)")

    # ------------------------------------------------------------------ what Sequential has
    @property
    def params(self):
        """The parameters, a live mapping onto the layers' arrays (``W1``, ``Wx1``, ...)."""
        return self._views[0]

    @property
    def state(self):
        return self._views[1]

    @property
    def grads(self) -> dict:
        """The gradients of the last ``backward``, keyed like ``params``."""
        return dict(self._views[2].items())

    @property
    def reference_array(self):
        return self.enc_embed.params["W"]

    @property
    def dtype(self):
        return self.reference_array.dtype

    @property
    def vocab_size(self) -> int:
        """Rows of the decoder's embedding: the ids an answer may hold."""
        return int(self.dec_embed.params["W"].shape[0])

    @property
    def hidden_size(self) -> int:
        return self.enc_lstm.H

    def describe(self) -> list[dict]:
        return describe_layers(self.layers)

    def __repr__(self) -> str:
        V, D = self.enc_embed.params["W"].shape
        return f"{type(self).__name__}(vocab_size={V}, wordvec_size={D}, hidden_size={self.hidden_size})"

    # ------------------------------------------------------------------ checks
    def check_pair(self, x, t):
        """``(x, t)`` as word ids, or a clear error: integer arrays of shape (N, T) and (N, T')
        with T' >= 2 (the start marker and at least one answer id), the same N, on the
        model's library and device, ids inside the vocabularies. One host sync each."""
        x = self.check_questions(x)
        t = _ids(t, f"{type(self).__name__} answers t", self.vocab_size, self.reference_array, min_len=2)
        if t.shape[0] != x.shape[0]:
            raise ShapeError(f"{type(self).__name__}: {x.shape[0]} questions x but {t.shape[0]} answers t; "
                             f"give one answer row per question")
        return x, t

    def check_input(self, x, where: str = "questions x"):
        return _ids(x, f"{type(self).__name__} {where}", int(self.enc_embed.params["W"].shape[0]),
                    self.reference_array)

    def check_questions(self, x):
        return self.check_input(x)

    # ------------------------------------------------------------------ encoder and decoder
    def encode(self, x, train: bool = True):
        """The encoder's hidden states (N, T, H)."""
        self.hs = self.enc_lstm.forward(self.enc_embed.forward(x, train), train)
        return self.hs

    def encode_backward(self, dhs) -> None:
        self.enc_embed.backward(self.enc_lstm.backward(dhs))

    def decode(self, hs, xs, train: bool = True):
        """Scores (N, T', V) of decoder input ``xs`` (N, T') from the encoder's states ``hs``."""
        self.dec_lstm.set_state(hs[:, -1, :])
        out = self.dec_lstm.forward(self.dec_embed.forward(xs, train), train)
        return self.dec_affine.forward(out, train)

    def decode_backward(self, dscore):
        """The gradient of the encoder's states ``hs`` from the gradient of the scores."""
        dout = self.dec_affine.backward(dscore)
        self.dec_embed.backward(self.dec_lstm.backward(dout))
        return _last_step_grad(self.dec_lstm.dh, self.hs.shape[1], namespace(dscore))

    # ------------------------------------------------------------------ passes
    def loss(self, x, t, train: bool = True, check: bool = True):
        """Mean cross-entropy of the next answer id, teacher forced (a 0-d array)."""
        if check:
            x, t = self.check_pair(x, t)
        score = self.decode(self.encode(x, train), t[:, :-1], train)
        return self.loss_layer.forward(score, t[:, 1:], check=False)

    def backward(self, dout=1.0, input_grad: bool = False) -> None:
        """Fill every layer's ``grads`` from the last ``loss`` (word ids have no gradient:
        ``input_grad`` is accepted for the trainer's steps and ignored)."""
        self.encode_backward(self.decode_backward(self.loss_layer.backward(dout)))

    def gradient(self, x, t, check: bool = True) -> dict:
        """Backprop gradients of ``loss(x, t)``, keyed like ``params``."""
        self.loss(x, t, train=True, check=check)
        self.backward()
        return self.grads

    def generate(self, x, start_id, length: int, check: bool = True):
        """Greedy answers (N, length) for questions ``x`` (N, T): the decoder starts at
        ``start_id`` (an int, or one id per question) and feeds back its most likely id."""
        length = size_arg("generate length", length)
        if check:
            x = self.check_questions(x)
        xp = namespace(x)
        hs = self.encode(x, train=False)
        return self._greedy(hs, _start_ids(self, start_id, x, xp, check), length, xp)

    def _greedy(self, hs, ids, length: int, xp):
        """Greedy decoding from the encoder's states ``hs`` and start ids (N, 1)."""
        self.dec_lstm.set_state(hs[:, -1, :])
        out, dtype = [], ids.dtype
        for _ in range(length):
            score = self.decode_step(hs, ids)
            ids = xp.reshape(xp.astype(xp.argmax(score[:, -1, :], axis=1), dtype), (-1, 1))
            out.append(ids)
        return xp.concat(out, axis=1)

    predict = generate

    def metrics(self, x, t, batch_size: int = 2048):
        """Mean teacher-forced loss and the fraction of exactly generated answers on ``(x, t)``, as
        two 0-d arrays (no host sync: what the trainer records each epoch, compiled on jax). The
        ids are trusted: check them once beforehand (``check_pair``). Each row's answer starts at
        its own ``t[:, 0]``."""
        xp = namespace(x)
        n = x.shape[0]
        loss_sum = hits = None
        for i in range(0, n, batch_size):
            xb, tb = x[i:min(i + batch_size, n), ...], t[i:min(i + batch_size, n), ...]
            hs = self.encode(xb, train=False)
            loss = self.loss_layer.forward(self.decode(hs, tb[:, :-1], train=False), tb[:, 1:], check=False)
            guess = self._greedy(hs, tb[:, :1], tb.shape[1] - 1, xp)
            right = xp.sum(xp.astype(xp.all(guess == xp.astype(tb[:, 1:], guess.dtype), axis=1), loss.dtype))
            loss = loss * xb.shape[0]
            loss_sum, hits = (loss, right) if loss_sum is None else (loss_sum + loss, hits + right)
        return loss_sum / n, hits / n

    def decode_step(self, hs, ids):
        """Scores (N, 1, V) of one decoder step; the LSTM's state carries on from the last step."""
        return self.dec_affine.forward(self.dec_lstm.forward(self.dec_embed.forward(ids, False), False), False)

    def accuracy(self, x, t, batch_size: int | None = None, check: bool = True) -> float:
        """Fraction of questions whose whole generated answer equals ``t[:, 1:]`` (a Python float).
        Each row starts at its own ``t[:, 0]``. ``batch_size`` bounds one pass's memory."""
        if check:
            x, t = self.check_pair(x, t)
        step = x.shape[0] if batch_size is None else size_arg("accuracy batch_size", batch_size)
        xp = namespace(x)
        hits = 0
        for i in range(0, x.shape[0], step):
            stop = min(i + step, x.shape[0])
            tb = t[i:stop, ...]
            guess = self.generate(x[i:stop, ...], tb[:, 0], tb.shape[1] - 1, check=False)
            right = xp.all(guess == xp.astype(tb[:, 1:], guess.dtype), axis=1)
            hits += int(to_numpy(xp.sum(xp.astype(right, xp.int32))))
        return hits / x.shape[0]


class PeekySeq2seq(Seq2seq):
    """The book's ``PeekySeq2seq``: the encoder's ``h`` goes into every decoder step, as
    ``[h | x_t]`` into the LSTM (input D + H) and ``[h | h_t]`` into the affine layer (input 2H)."""

    kind = "peeky-seq2seq"

    @staticmethod
    def _decoder_sizes(D: int, H: int) -> tuple[int, int]:
        return D + H, 2 * H

    def _peek(self, h, T: int, xp):
        return xp.broadcast_to(xp.expand_dims(h, axis=1), (h.shape[0], T, h.shape[1]))

    def decode(self, hs, xs, train: bool = True):
        xp = namespace(hs)
        h = hs[:, -1, :]
        self.dec_lstm.set_state(h)
        peek = self._peek(h, xs.shape[1], xp)
        out = self.dec_lstm.forward(xp.concat([peek, self.dec_embed.forward(xs, train)], axis=2), train)
        return self.dec_affine.forward(xp.concat([peek, out], axis=2), train)

    def decode_backward(self, dscore):
        xp = namespace(dscore)
        H = self.hidden_size
        dout = self.dec_affine.backward(dscore)
        dlstm = self.dec_lstm.backward(dout[:, :, H:])
        self.dec_embed.backward(dlstm[:, :, H:])
        dh = self.dec_lstm.dh + xp.sum(dout[:, :, :H] + dlstm[:, :, :H], axis=1)
        return _last_step_grad(dh, self.hs.shape[1], xp)

    def decode_step(self, hs, ids):
        xp = namespace(hs)
        peek = self._peek(hs[:, -1, :], 1, xp)
        out = self.dec_lstm.forward(xp.concat([peek, self.dec_embed.forward(ids, False)], axis=2), False)
        return self.dec_affine.forward(xp.concat([peek, out], axis=2), False)


class AttentionSeq2seq(Seq2seq):
    """The book's ``AttentionSeq2seq``: the decoder's LSTM starts at the encoder's last state;
    ``TimeAttention`` over all the encoder's states ``hs`` gives a context ``c_t`` for every
    decoder state ``h_t``, and ``[c_t | h_t]`` goes into the affine layer (input 2H). The
    gradient of ``hs`` is the attention's plus the decoder's ``dh`` at the last step."""

    kind = "attention-seq2seq"

    def __init__(self, *layers):
        super().__init__(*layers)
        self.attention = TimeAttention()
        self.helper_layers = (self.attention,)

    @staticmethod
    def _decoder_sizes(D: int, H: int) -> tuple[int, int]:
        return D, 2 * H

    def decode(self, hs, xs, train: bool = True):
        xp = namespace(hs)
        self.dec_lstm.set_state(hs[:, -1, :])
        dec_hs = self.dec_lstm.forward(self.dec_embed.forward(xs, train), train)
        c = self.attention.forward(hs, dec_hs)
        return self.dec_affine.forward(xp.concat([c, dec_hs], axis=2), train)

    def decode_backward(self, dscore):
        xp = namespace(dscore)
        H = self.hidden_size
        dout = self.dec_affine.backward(dscore)
        dhs_enc, ddec = self.attention.backward(dout[:, :, :H])
        self.dec_embed.backward(self.dec_lstm.backward(ddec + dout[:, :, H:]))
        return dhs_enc + _last_step_grad(self.dec_lstm.dh, self.hs.shape[1], xp)

    def decode_step(self, hs, ids):
        xp = namespace(hs)
        dec_h = self.dec_lstm.forward(self.dec_embed.forward(ids, False), False)
        return self.dec_affine.forward(xp.concat([self.attention.forward(hs, dec_h), dec_h], axis=2), False)


MODELS = {cls.kind: cls for cls in (Seq2seq, PeekySeq2seq, AttentionSeq2seq)}

__all__ = ["MODELS", "AttentionSeq2seq", "PeekySeq2seq", "Seq2seq"]
