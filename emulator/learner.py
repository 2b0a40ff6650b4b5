"""A real, small, CPU-only learner behind the emulator's supervised tuning jobs.

When a client creates a tuning job, the emulator calls :func:`train` on the uploaded
examples with the requested hyperparameters; the per-step losses it reports are the real
mini-batch cross-entropies, and the tuned endpoint answers with :meth:`TunedModel.predict`.

Model
-----
* **Outputs are classes.**  Every distinct training output text (whitespace-trimmed) is one
  class; the answer is always the *whole* text of one training output, however long.
* **Features.**  The prompt (system instruction + all turns before the answer, flattened
  with ``"\\n"``, see :func:`flatten_prompt`) is lower-cased and hashed into
  ``2**14`` buckets: word unigrams, word bigrams and byte 3-grams (the latter at half
  weight because there are many more of them).  Counts are log-damped, weighted by an
  IDF learned from the training prompts and L2-normalised.
* **IDF instead of raw counts** (an improvement over plain hashed counts): text shared by
  *every* training prompt -- typically the system instruction -- gets weight 0 and does not
  drown the informative part; buckets never seen in training also get weight 0, so unseen
  words cannot push the prediction around through the random adapter rows.
* **LoRA-like low-rank adapter.**  ``logits = x @ A @ B + b`` with ``A`` (features x rank)
  random from the seed, ``B`` (rank x classes) and ``b`` zero, like LoRA (so step 1 always
  reports ``ln(n_classes)``).  ``A`` starts at N(0, 0.1^2): with unit-norm inputs a std-1
  init is a strong random projection the adapter has to unlearn, which measurably hurt
  held-out accuracy on the demo task.  ``rank`` = the adapter size, so a rank-1 adapter
  really separates fewer classes than a rank-8 one.
* **Training.**  Mini-batch Adam (step size :data:`DEFAULT_LEARNING_RATE` for the API
  defaults; lazy/sparse updates for the rows of ``A`` a batch touches,
  dense for ``B`` and ``b``) on the mean softmax cross-entropy, examples reshuffled every
  epoch with ``numpy.random.default_rng(seed)``.  One step = one batch; the recorded loss
  is the batch loss computed in the forward pass *before* that step's update.

Every hyperparameter changes what is learned: ``epochs`` (number of steps), ``learning_rate``
(Adam step size), ``batch_size`` (number and noise of steps), ``adapter_rank`` (shape and
random init of ``A``, model capacity) and ``seed`` (init + shuffling).  Training is
deterministic for a fixed seed and input.

Limits (on purpose -- this is a stand-in, not an LLM)
-----------------------------------------------------
* It is a **classifier / retriever, not a generator**: it can only answer with an output it
  has seen in training.  Tasks whose answers must be *composed* (e.g. the Gemini tutorial's
  "1 -> 2" number increments) are memorised for seen prompts, but a new prompt gets the
  output of the most similar training prompt, never a new text.
* Bag of n-grams: word order beyond bigrams is invisible (it cannot tell which of two
  topics is mentioned first).
* With tens of thousands of *distinct* outputs the dense ``rank x classes`` update makes
  every step proportionally slower; classification-style data is fast
  (~0.1 s for 500 examples x 3 epochs, a few seconds for 20 000 examples x 3 epochs).
* Numeric results are deterministic on one machine/numpy build; across BLAS builds the
  last float bits can differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import chain

import numpy as np

__all__ = [
    "ADAPTER_RANKS",
    "DEFAULT_LEARNING_RATE",
    "GEMINI_API_DEFAULT_LEARNING_RATE",
    "Example",
    "HyperParams",
    "LOSS_PROB_FLOOR",
    "PreferenceExample",
    "Prediction",
    "StepRecord",
    "TunedModel",
    "base_model_answer",
    "example_from_gemini_api",
    "example_from_vertex",
    "flatten_prompt",
    "gemini_api_default_batch_size",
    "gemini_api_learning_rate",
    "planned_steps",
    "preference_example_from_vertex",
    "preference_mean_loss",
    "completion_logprobs",
    "prompt_from_contents",
    "train",
    "train_preference",
    "vertex_learning_rate",
]

ADAPTER_RANKS = {
    "ADAPTER_SIZE_ONE": 1,
    "ADAPTER_SIZE_TWO": 2,
    "ADAPTER_SIZE_FOUR": 4,
    "ADAPTER_SIZE_EIGHT": 8,
    "ADAPTER_SIZE_SIXTEEN": 16,
    "ADAPTER_SIZE_THIRTY_TWO": 32,
}

#: Adam step size used for Vertex ``learningRateMultiplier == 1.0`` and Gemini API ``learningRate == 0.001``.
DEFAULT_LEARNING_RATE = 0.05
#: The Gemini API's documented default ``learningRate``.
GEMINI_API_DEFAULT_LEARNING_RATE = 0.001
#: Below this many examples the Gemini API default batch size is 4, from it on 16.  Google only documents
#: "a default of 4 or 16 will be used based on the number of training examples"; the cut-off is our choice.
GEMINI_API_LARGE_DATASET = 100

HASH_DIM = 1 << 14
_CHAR_WEIGHT = 0.5
_A_INIT_STD = 0.1
_FORMAT_VERSION = 1
#: :meth:`TunedModel.mean_loss` counts a probability below this (or an output the model cannot produce) as this.
LOSS_PROB_FLOOR = 1e-6
_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-8


# --------------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One training example: the flattened prompt and the expected output text."""

    prompt: str
    output: str


@dataclass(frozen=True)
class HyperParams:
    epochs: int = 3
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = 8
    adapter_rank: int = 4
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError for values :func:`train` cannot use."""
        for name in ("epochs", "batch_size", "adapter_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not _positive_real(self.learning_rate):
            raise ValueError(f"learning_rate must be a positive finite number, got {self.learning_rate!r}")


def _positive_real(value: object) -> bool:
    return (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


@dataclass(frozen=True)
class StepRecord:
    step: int  # 1-based, global over epochs
    epoch: int  # 1-based
    loss: float  # mean cross-entropy of the batch (before the update)


@dataclass(frozen=True)
class Prediction:
    text: str
    logprob: float  # natural-log probability of ``text`` under the model (temperature 1)


# --------------------------------------------------------------------------------------------
# hyperparameter mapping
# --------------------------------------------------------------------------------------------


def planned_steps(n_examples: int, hp: HyperParams) -> int:
    """Number of optimizer steps :func:`train` takes (== number of :class:`StepRecord`)."""
    if n_examples <= 0:
        return 0
    return int(hp.epochs) * math.ceil(n_examples / int(hp.batch_size))


def vertex_learning_rate(multiplier: float) -> float:
    """Vertex ``learningRateMultiplier`` -> learner step size (multiplier x the default)."""
    if not _positive_real(multiplier):
        raise ValueError(f"learningRateMultiplier must be a positive number, got {multiplier!r}")
    return DEFAULT_LEARNING_RATE * float(multiplier)


def gemini_api_learning_rate(learning_rate: float) -> float:
    """Gemini API ``learningRate`` -> learner step size; 0.001 maps to the same as multiplier 1.0."""
    if not _positive_real(learning_rate):
        raise ValueError(f"learningRate must be a positive number, got {learning_rate!r}")
    return DEFAULT_LEARNING_RATE * float(learning_rate) / GEMINI_API_DEFAULT_LEARNING_RATE


def gemini_api_default_batch_size(n_examples: int) -> int:
    """Gemini API default ``batchSize``: 4 for small datasets, 16 from 100 examples on."""
    return 16 if n_examples >= GEMINI_API_LARGE_DATASET else 4


# --------------------------------------------------------------------------------------------
# request / dataset parsing
# --------------------------------------------------------------------------------------------


def _parts_text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, Mapping):
        raise ValueError(f"{where} must be an object with 'parts', got {type(content).__name__}")
    parts = content.get("parts", [])
    if isinstance(parts, Mapping):
        parts = [parts]
    if not isinstance(parts, list):
        raise ValueError(f"{where}.parts must be a list")
    texts = []
    for part in parts:
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "\n".join(t for t in texts if t)


def flatten_prompt(system_instruction: str | None, turns: Iterable[str]) -> str:
    """The learner's prompt text: system instruction then every turn's text, joined with newlines.

    Use the same function at training and at serving time, e.g.
    ``flatten_prompt(system_text, [ticket])`` for a single user turn.
    """
    pieces = [system_instruction] if system_instruction else []
    pieces.extend(t for t in turns if t)
    return "\n".join(pieces)


def _system_text(obj: Mapping) -> str | None:
    system = obj.get("systemInstruction", obj.get("system_instruction"))
    if system is None:
        return None
    return _parts_text(system, "systemInstruction") or None


def prompt_from_contents(contents: Sequence[Mapping], system_instruction: object = None) -> str:
    """Flatten a ``generateContent``-style request (``contents`` + optional ``systemInstruction``
    object or string) into the learner's prompt text, like the training prompts are built."""
    system = None
    if system_instruction is not None:
        system = _parts_text(system_instruction, "systemInstruction") or None
    if not isinstance(contents, (list, tuple)):
        raise ValueError("'contents' must be a list of turns")
    return flatten_prompt(system, [_parts_text(c, f"contents[{i}]") for i, c in enumerate(contents)])


def example_from_vertex(obj: dict) -> Example:
    """One line of a Vertex AI supervised-tuning JSONL file -> :class:`Example`.

    ``output`` is the text of the *last* ``model`` turn; ``prompt`` is the system instruction
    plus every turn before it (later turns, if any, are ignored).
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"a Vertex tuning example must be a JSON object, got {type(obj).__name__}")
    contents = obj.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("Vertex tuning example has no 'contents' list")
    last_model = None
    for i, turn in enumerate(contents):
        if not isinstance(turn, Mapping):
            raise ValueError(f"contents[{i}] must be an object with 'role' and 'parts'")
        if turn.get("role") == "model":
            last_model = i
    if last_model is None:
        raise ValueError("Vertex tuning example has no 'model' turn: the last model turn is the expected output")
    output = _parts_text(contents[last_model], f"contents[{last_model}]").strip()
    if not output:
        raise ValueError(f"Vertex tuning example: the model turn contents[{last_model}] has no text")
    turns = [_parts_text(c, f"contents[{i}]") for i, c in enumerate(contents[:last_model])]
    return Example(prompt=flatten_prompt(_system_text(obj), turns), output=output)


def example_from_gemini_api(obj: dict) -> Example:
    """A Gemini API inline tuning example ``{"textInput": ..., "output": ...}`` (or ``text_input``)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a Gemini API tuning example must be a JSON object, got {type(obj).__name__}")
    text_input = obj.get("textInput", obj.get("text_input"))
    output = obj.get("output")
    if not isinstance(text_input, str):
        raise ValueError("Gemini API tuning example has no string 'textInput' (or 'text_input')")
    if not isinstance(output, str) or not output.strip():
        raise ValueError("Gemini API tuning example has no non-empty string 'output'")
    return Example(prompt=text_input, output=output.strip())


# --------------------------------------------------------------------------------------------
# featurisation (hashed word 1/2-grams + byte 3-grams)
# --------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\w+(?:['’]\w+)*")
_HALF = HASH_DIM // 2
_HALF_BITS = _HALF.bit_length() - 1
_CHUNK = 4096  # texts featurised per vectorised pass (bounds memory; int32 keys)
_word_cache: dict[str, int] = {}


def _mix(keys: np.ndarray) -> np.ndarray:
    """Multiplicative (Knuth) hashing of uint32 keys into [0, HASH_DIM / 2)."""
    with np.errstate(over="ignore"):
        return ((keys * np.uint32(2654435761)) >> np.uint32(32 - _HALF_BITS)).astype(np.int32)


def _word_hashes(words: list[str]) -> np.ndarray:
    """crc32 of each word (memoised; thread-safe because lookups go through a local table)."""
    if len(_word_cache) > 1_000_000:
        _word_cache.clear()
    table: dict[str, int] = {}
    for w in set(words):
        h = _word_cache.get(w)
        if h is None:
            h = _word_cache[w] = zlib.crc32(w.encode("utf-8"))
        table[w] = h
    return np.fromiter(map(table.__getitem__, words), dtype=np.uint32, count=len(words))


def _raw_features(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashed, log-damped term weights of each text as sorted COO arrays (doc, bucket, weight).

    Buckets ``[0, HASH_DIM/2)`` hold word unigrams + bigrams (weight 1 per occurrence), buckets
    ``[HASH_DIM/2, HASH_DIM)`` byte 3-grams of the whitespace-collapsed text (weight
    ``_CHAR_WEIGHT``), so the per-bucket weight is known without carrying weights through the sort.
    """
    if len(texts) <= _CHUNK:
        return _raw_features_chunk(texts)
    parts = [_raw_features_chunk(texts[i : i + _CHUNK]) for i in range(0, len(texts), _CHUNK)]
    docs = [p[0] + np.int32(i * _CHUNK) for i, p in enumerate(parts)]
    return np.concatenate(docs), np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def _raw_features_chunk(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(texts)
    lowered = [t.lower() for t in texts]
    doc_parts: list[np.ndarray] = []
    col_parts: list[np.ndarray] = []

    # word unigrams + bigrams
    token_lists = [_WORD_RE.findall(t) for t in lowered]
    n_tokens = np.fromiter(map(len, token_lists), dtype=np.int32, count=n)
    hashes = _word_hashes(list(chain.from_iterable(token_lists)))
    owner = np.repeat(np.arange(n, dtype=np.int32), n_tokens)
    doc_parts.append(owner)
    col_parts.append(_mix(hashes))
    if hashes.size > 1:
        same = owner[:-1] == owner[1:]
        with np.errstate(over="ignore"):
            pair = (hashes[:-1][same] * np.uint32(0x01000193)) ^ hashes[1:][same] ^ np.uint32(0x5BD1E995)
        doc_parts.append(owner[:-1][same])
        col_parts.append(_mix(pair))

    # byte 3-grams of " text " with whitespace runs collapsed to one space
    encoded = [(" " + t + " ").encode("utf-8") for t in lowered]
    lengths = np.fromiter(map(len, encoded), dtype=np.int32, count=n)
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
    owner = np.repeat(np.arange(n, dtype=np.int32), lengths)
    buf[(buf >= 9) & (buf <= 13)] = 32
    keep = np.ones(buf.size, dtype=bool)
    keep[1:] = ~((buf[1:] == 32) & (buf[:-1] == 32) & (owner[1:] == owner[:-1]))
    buf, owner = buf[keep].astype(np.uint32), owner[keep]
    if buf.size >= 3:
        valid = owner[:-2] == owner[2:]
        key = (buf[:-2] << np.uint32(16)) | (buf[1:-1] << np.uint32(8)) | buf[2:]
        doc_parts.append(owner[:-2][valid])
        col_parts.append(_mix(key[valid]) + np.int32(_HALF))

    keys = np.concatenate(doc_parts) * np.int32(HASH_DIM) + np.concatenate(col_parts)
    keys.sort(kind="stable")
    if keys.size == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    first = np.empty(keys.size, dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.diff(starts, append=keys.size).astype(np.float64)
    uniq = keys[starts]
    col = uniq % np.int32(HASH_DIM)
    weights = np.where(col < _HALF, 1.0, _CHAR_WEIGHT) * counts
    return uniq // np.int32(HASH_DIM), col, np.log1p(weights).astype(np.float32)


def _finish(doc: np.ndarray, col: np.ndarray, val: np.ndarray, n: int, lookup: np.ndarray, idf: np.ndarray):
    """Map buckets to vocabulary rows (dropping unknown ones), apply IDF, L2-normalise -> CSR."""
    rows = lookup[col]
    keep = rows >= 0
    doc, rows = doc[keep], rows[keep]
    val = (val[keep] * idf[rows]).astype(np.float32)
    norms = np.sqrt(np.bincount(doc, weights=val * val, minlength=n)).astype(np.float32)
    val /= norms[doc]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(doc, minlength=n), out=indptr[1:])
    return indptr, rows, val


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class TunedModel:
    """The trained adapter: vocabulary (hashed buckets seen in training), IDF, A, B, b, outputs."""

    def __init__(
        self,
        *,
        buckets: np.ndarray,
        idf: np.ndarray,
        A: np.ndarray,
        B: np.ndarray,
        b: np.ndarray,
        outputs: Sequence[str],
        hyperparams: HyperParams,
        n_examples: int,
    ) -> None:
        self.buckets = np.asarray(buckets, dtype=np.int64)
        self.idf = np.asarray(idf, dtype=np.float32)
        self.A = np.asarray(A, dtype=np.float32)
        self.B = np.asarray(B, dtype=np.float32)
        self.b = np.asarray(b, dtype=np.float32)
        self.outputs: tuple[str, ...] = tuple(outputs)
        self.hyperparams = hyperparams
        self.n_examples = int(n_examples)
        if not (self.buckets.shape[0] == self.idf.shape[0] == self.A.shape[0]):
            raise ValueError("inconsistent vocabulary arrays")
        if self.B.shape != (self.A.shape[1], len(self.outputs)) or self.b.shape != (len(self.outputs),):
            raise ValueError("inconsistent adapter / output arrays")
        self._lookup = np.full(HASH_DIM, -1, dtype=np.int32)
        self._lookup[self.buckets] = np.arange(self.buckets.shape[0], dtype=np.int32)

    @property
    def rank(self) -> int:
        return int(self.A.shape[1])

    # -- inference ---------------------------------------------------------------------------

    def logits(self, prompts: Sequence[str]) -> np.ndarray:
        """Raw class logits, shape (len(prompts), len(outputs))."""
        n = len(prompts)
        if n == 0:
            return np.zeros((0, len(self.outputs)), dtype=np.float32)
        indptr, rows, val = _finish(*_raw_features(prompts), n, self._lookup, self.idf)
        hidden = np.zeros((n, self.rank), dtype=np.float32)
        doc = np.repeat(np.arange(n), np.diff(indptr))
        np.add.at(hidden, doc, self.A[rows] * val[:, None])
        return hidden @ self.B + self.b

    def predict(self, prompt: str, *, temperature: float = 0.0, seed: int | None = None) -> Prediction:
        """Temperature 0 -> the most likely output; > 0 -> a sample from softmax(logits / T)."""
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        logits = self.logits([prompt])[0].astype(np.float64)
        logp = _log_softmax(logits)
        if temperature == 0:
            k = int(np.argmax(logits))
        else:
            probs = _softmax(logits / temperature)
            k = int(np.random.default_rng(seed).choice(len(probs), p=probs))
        return Prediction(text=self.outputs[k], logprob=float(logp[k]))

    def top_k(self, prompt: str, k: int = 5) -> list[Prediction]:
        """The k most likely outputs with their log-probabilities, best first."""
        logp = _log_softmax(self.logits([prompt])[0].astype(np.float64))
        order = np.argsort(-logp, kind="stable")[: max(0, k)]
        return [Prediction(text=self.outputs[i], logprob=float(logp[i])) for i in order]

    def predict_many(self, prompts: Sequence[str]) -> list[Prediction]:
        """Greedy predictions for many prompts in one vectorised pass."""
        logits = self.logits(list(prompts)).astype(np.float64)
        if logits.shape[0] == 0:
            return []
        logp = _log_softmax(logits)
        best = np.argmax(logits, axis=1)
        return [Prediction(text=self.outputs[k], logprob=float(logp[i, k])) for i, k in enumerate(best)]

    def mean_loss(self, examples: Iterable[Example]) -> float | None:
        """Mean softmax cross-entropy of the expected outputs over ``examples`` (e.g. a validation set).

        Each example contributes ``-log max(p, LOSS_PROB_FLOOR)``, ``p`` being the model's probability of the
        example's (whitespace-trimmed) output. An output that is not one of the model's classes cannot be
        produced at all (p = 0) and counts with the floor's loss, ``-log(1e-6)`` ~ 13.8; the floor bounds
        every example the same way, so an unseen output never counts as better than a very unlikely seen one.
        None for no examples.
        """
        examples = list(examples)
        if not examples:
            return None
        cap = -math.log(LOSS_PROB_FLOOR)
        class_of = {o: k for k, o in enumerate(self.outputs)}
        labels = np.array([class_of.get(ex.output.strip(), -1) for ex in examples], dtype=np.int64)
        losses = np.full(len(examples), cap, dtype=np.float64)
        known = np.flatnonzero(labels >= 0)
        if known.size:
            logp = _log_softmax(self.logits([examples[i].prompt for i in known]).astype(np.float64))
            losses[known] = np.minimum(-logp[np.arange(known.size), labels[known]], cap)
        return float(losses.mean())

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write one ``.npz`` file (exactly at ``path``; arrays + JSON metadata, no pickle)."""
        meta = {
            "format": "emulator-learner",
            "version": _FORMAT_VERSION,
            "hash_dim": HASH_DIM,
            "char_weight": _CHAR_WEIGHT,
            "hyperparams": {
                k: float(v) if k == "learning_rate" else int(v) for k, v in asdict(self.hyperparams).items()
            },
            "n_examples": self.n_examples,
            "outputs": list(self.outputs),
        }
        meta_bytes = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=meta_bytes, buckets=self.buckets, idf=self.idf, A=self.A, B=self.B, b=self.b)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TunedModel:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            if meta.get("format") != "emulator-learner" or meta.get("version") != _FORMAT_VERSION:
                raise ValueError(f"{path}: not a learner model file (format {meta.get('format')!r})")
            if meta.get("hash_dim") != HASH_DIM or meta.get("char_weight") != _CHAR_WEIGHT:
                raise ValueError(f"{path}: saved with incompatible featurisation settings")
            return cls(
                buckets=data["buckets"],
                idf=data["idf"],
                A=data["A"],
                B=data["B"],
                b=data["b"],
                outputs=meta["outputs"],
                hyperparams=HyperParams(**meta["hyperparams"]),
                n_examples=meta["n_examples"],
            )

    def __repr__(self) -> str:
        return (
            f"TunedModel(outputs={len(self.outputs)}, rank={self.rank}, vocab={self.buckets.shape[0]}, "
            f"examples={self.n_examples})"
        )


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


class _Adam:
    """Dense Adam state for one parameter array (updated in place)."""

    def __init__(self, param: np.ndarray, lr: float) -> None:
        self.p = param
        self.m = np.zeros_like(param)
        self.v = np.zeros_like(param)
        self.lr = lr

    def step(self, grad: np.ndarray, t: int) -> None:
        self.m *= _ADAM_B1
        self.m += (1 - _ADAM_B1) * grad
        self.v *= _ADAM_B2
        self.v += (1 - _ADAM_B2) * grad * grad
        self.p -= _adam_scale(self.lr, t) * self.m / (np.sqrt(self.v) + _ADAM_EPS)


def _adam_scale(lr: float, t: int) -> float:
    return lr * math.sqrt(1.0 - _ADAM_B2**t) / (1.0 - _ADAM_B1**t)


def train(
    examples: Sequence[Example],
    hp: HyperParams,
    *,
    on_step: Callable[[StepRecord], None] | None = None,
    init: TunedModel | None = None,
    on_epoch: Callable[[int, TunedModel], None] | None = None,
) -> tuple[TunedModel, list[StepRecord]]:
    """Train an adapter on ``examples``; returns the model and one :class:`StepRecord` per step.

    ``on_step`` is called after every step (e.g. to publish progress); an exception it raises
    aborts training (use that to cancel a job).

    ``init`` warm-starts from an earlier model (continuous tuning): its classes, vocabulary, IDF
    weights and adapter are kept as they are (so it starts out answering like ``init``); outputs
    and buckets new in ``examples`` are added, new ``A`` rows drawn like a fresh init, new ``B``
    columns zero. The adapter rank must be ``init``'s.

    ``on_epoch(epoch, model)`` receives a snapshot of the model after every epoch (checkpoints).
    """
    hp.validate()
    examples = list(examples)
    n = len(examples)
    if n == 0:
        raise ValueError("cannot tune on an empty dataset")
    if init is not None and init.rank != int(hp.adapter_rank):
        raise ValueError(f"warm start: adapter rank {hp.adapter_rank} differs from the initial model's {init.rank}")

    # classes: distinct outputs in order of first appearance (after the initial model's, when warm-starting)
    outputs: list[str] = list(init.outputs) if init is not None else []
    class_of: dict[str, int] = {o: k for k, o in enumerate(outputs)}
    labels = np.empty(n, dtype=np.int64)
    for i, ex in enumerate(examples):
        out = ex.output.strip()
        if not out:
            raise ValueError(f"example {i} has an empty output")
        k = class_of.get(out)
        if k is None:
            k = class_of[out] = len(outputs)
            outputs.append(out)
        labels[i] = k

    def sft_loss(batch: np.ndarray, logits: np.ndarray, ref: np.ndarray | None) -> tuple[float, np.ndarray]:
        m = batch.size
        logp = _log_softmax(logits.astype(np.float64))
        y = labels[batch]
        loss = float(-logp[np.arange(m), y].mean())
        d_logits = np.exp(logp)
        d_logits[np.arange(m), y] -= 1.0
        return loss, d_logits / m

    return _fit([ex.prompt for ex in examples], outputs, hp, init=init, on_step=on_step, on_epoch=on_epoch,
                loss_grad=sft_loss)


def _fit(
    prompts: Sequence[str],
    outputs: list[str],
    hp: HyperParams,
    *,
    init: TunedModel | None,
    on_step: Callable[[StepRecord], None] | None,
    on_epoch: Callable[[int, TunedModel], None] | None,
    loss_grad: Callable[[np.ndarray, np.ndarray, np.ndarray | None], tuple[float, np.ndarray]],
    reference: bool = False,
) -> tuple[TunedModel, list[StepRecord]]:
    """The optimisation shared by :func:`train` and :func:`train_preference`: featurise ``prompts``, initialise
    (or warm-start) the adapter over ``outputs`` and run mini-batch Adam on ``loss_grad(batch_indices, logits,
    ref_logits) -> (batch loss, d loss / d logits)``. ``reference``: also pass the batch's logits under the
    *initial* parameters (the frozen reference model of DPO), else None."""
    n = len(prompts)
    n_classes = len(outputs)

    # features: vocabulary = buckets seen in some but not all training prompts; IDF from training
    doc, col, val = _raw_features(list(prompts))
    df = np.bincount(col, minlength=HASH_DIM)
    buckets = np.flatnonzero((df > 0) & (df < n))
    idf = np.log((1.0 + n) / (1.0 + df[buckets])).astype(np.float32)
    n_old = 0
    if init is not None:  # the initial model's buckets keep their rows and IDF; the new ones follow
        fresh = np.setdiff1d(buckets, init.buckets, assume_unique=True)
        idf = np.concatenate([init.idf, idf[np.searchsorted(buckets, fresh)]]).astype(np.float32)
        buckets, n_old = np.concatenate([init.buckets, fresh]), init.buckets.size
    lookup = np.full(HASH_DIM, -1, dtype=np.int32)
    lookup[buckets] = np.arange(buckets.size, dtype=np.int32)
    indptr, rows, vals = _finish(doc, col, val, n, lookup, idf)
    del doc, col, val

    rng = np.random.default_rng(hp.seed)
    r = int(hp.adapter_rank)
    vocab = buckets.size
    # A and its Adam moments side by side, so one gather/scatter per step serves all three.
    # Lazy (sparse) Adam: only the rows a batch touches are updated.
    a_state = np.zeros((vocab, 3, r), dtype=np.float32)
    a_state[:, 0, :] = _A_INIT_STD * rng.standard_normal((vocab, r))
    B = np.zeros((r, n_classes), dtype=np.float32)
    b = np.zeros(n_classes, dtype=np.float32)
    if init is not None:
        a_state[:n_old, 0, :] = init.A
        B[:, : len(init.outputs)] = init.B
        b[: len(init.outputs)] = init.b

    def snapshot() -> TunedModel:
        return TunedModel(buckets=buckets, idf=idf, A=a_state[:, 0, :].copy(), B=B.copy(), b=b.copy(),
                          outputs=outputs, hyperparams=hp, n_examples=n)

    opt_B, opt_b = _Adam(B, hp.learning_rate), _Adam(b, hp.learning_rate)

    starts, lengths = indptr[:-1], np.diff(indptr)
    ref_logits = None
    if reference:   # the initial model's logits for every example (the reference policy stays frozen)
        hidden0 = np.zeros((n, r), dtype=np.float32)
        np.add.at(hidden0, np.repeat(np.arange(n), lengths), a_state[rows, 0, :] * vals[:, None])
        ref_logits = (hidden0 @ B + b).astype(np.float64)
    touched = np.zeros(vocab, dtype=bool)
    slot = np.zeros(vocab, dtype=np.int64)
    records: list[StepRecord] = []
    step = 0
    for epoch in range(1, int(hp.epochs) + 1):
        order = rng.permutation(n)
        for lo in range(0, n, int(hp.batch_size)):
            batch = order[lo : lo + int(hp.batch_size)]
            m = batch.size
            # gather the batch's sparse rows into a small dense (batch x touched-features) matrix
            lens = lengths[batch]
            total = int(lens.sum())
            pos = np.arange(total) + np.repeat(starts[batch] - (np.cumsum(lens) - lens), lens)
            feat = rows[pos]
            touched[feat] = True
            uniq = np.flatnonzero(touched)
            touched[uniq] = False
            slot[uniq] = np.arange(uniq.size)
            X = np.zeros((m, uniq.size), dtype=np.float32)
            X[np.repeat(np.arange(m), lens), slot[feat]] = vals[pos]
            S = a_state[uniq]  # (U, 3, r): A rows, first and second moments
            # forward
            H = X @ S[:, 0, :]
            logits = H @ B + b
            loss, d_logits = loss_grad(batch, logits, None if ref_logits is None else ref_logits[batch])
            # backward
            d_logits = d_logits.astype(np.float32)
            g_A = X.T @ (d_logits @ B.T)
            step += 1
            opt_B.step(H.T @ d_logits, step)
            opt_b.step(d_logits.sum(axis=0), step)
            if uniq.size:
                mom1 = S[:, 1, :]
                mom2 = S[:, 2, :]
                mom1 *= _ADAM_B1
                mom1 += (1 - _ADAM_B1) * g_A
                mom2 *= _ADAM_B2
                mom2 += (1 - _ADAM_B2) * g_A * g_A
                S[:, 0, :] -= _adam_scale(hp.learning_rate, step) * mom1 / (np.sqrt(mom2) + _ADAM_EPS)
                a_state[uniq] = S
            record = StepRecord(step=step, epoch=epoch, loss=loss)
            records.append(record)
            if on_step is not None:
                on_step(record)
        if on_epoch is not None:
            on_epoch(epoch, snapshot())

    return snapshot(), records


# --------------------------------------------------------------------------------------------
# preference tuning (DPO)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferenceExample:
    """One preference pair: the flattened prompt, the preferred (score 1) and the dispreferred (score 0) text."""

    prompt: str
    chosen: str
    rejected: str


#: The documented default is not found; 0.1 is the value of Google's DPO tutorial ("beta range 0.01 - 0.5").
DEFAULT_BETA = 0.1


def _text_only(content: Mapping, where: str) -> None:
    for j, part in enumerate(content.get("parts") or []):
        if not isinstance(part, Mapping) or set(part) - {"text", "thought"} or not isinstance(part.get("text"), str):
            raise ValueError(f"{where}.parts[{j}] is not a text part: preference tuning supports text data only")


def preference_example_from_vertex(obj: object) -> PreferenceExample:
    """One line of a Vertex preference-tuning JSONL file (reference §1b) -> :class:`PreferenceExample`.

    ``contents``: the conversation (text only), ending with a user turn; optional ``system_instruction``;
    ``completions``: exactly two ``{"score": 0|1, "completion": <one model turn>}``, one of each score.
    Raises ValueError saying what is wrong (the caller names the line).
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"a preference example must be a JSON object, got {type(obj).__name__}")
    contents = obj.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("'contents' must be a non-empty list of turns")
    for i, turn in enumerate(contents):
        if not isinstance(turn, Mapping) or turn.get("role") not in ("user", "model"):
            raise ValueError(f"contents[{i}] must be an object with role 'user' or 'model' and 'parts'")
        _text_only(turn, f"contents[{i}]")
    if contents[-1].get("role") != "user":
        raise ValueError("'contents' must end with a user turn")
    completions = obj.get("completions")
    if not isinstance(completions, list) or len(completions) != 2:
        raise ValueError("'completions' must be a list of exactly two {score, completion} objects "
                         "(one preferred, one dispreferred)")
    by_score: dict[int, str] = {}
    for i, item in enumerate(completions):
        if not isinstance(item, Mapping) or "completion" not in item or "score" not in item:
            raise ValueError(f"completions[{i}] must have 'score' and 'completion'")
        score = item["score"]
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or score not in (0, 1):
            raise ValueError(f"completions[{i}].score must be 0 or 1, got {score!r}")
        comp = item["completion"]
        if not isinstance(comp, Mapping) or comp.get("role") != "model":
            raise ValueError(f"completions[{i}].completion must be a single turn with role 'model'")
        _text_only(comp, f"completions[{i}].completion")
        text = _parts_text(comp, f"completions[{i}].completion").strip()
        if not text:
            raise ValueError(f"completions[{i}].completion has no text")
        if int(score) in by_score:
            raise ValueError("the pair must have one preferred (score 1) and one dispreferred (score 0) completion")
        by_score[int(score)] = text
    if by_score[1] == by_score[0]:
        raise ValueError("the preferred and the dispreferred completion are the same text")
    turns = [_parts_text(c, f"contents[{i}]") for i, c in enumerate(contents)]
    return PreferenceExample(prompt=flatten_prompt(_system_text(obj), turns), chosen=by_score[1],
                             rejected=by_score[0])


def train_preference(
    pairs: Sequence[PreferenceExample],
    hp: HyperParams,
    *,
    beta: float = DEFAULT_BETA,
    on_step: Callable[[StepRecord], None] | None = None,
    init: TunedModel | None = None,
    on_epoch: Callable[[int, TunedModel], None] | None = None,
) -> tuple[TunedModel, list[StepRecord]]:
    """Preference tuning with the DPO objective, like :func:`train` otherwise (steps, checkpoints, warm start).

    The reference policy is the model training starts from (``init``, e.g. a supervised-tuned model; or a fresh
    adapter), frozen. Per pair, with ``z`` the class logits: ``margin = (z_chosen - z_rejected) - (ref_chosen -
    ref_rejected)`` (the log-probability ratio difference: the softmax normaliser cancels) and the loss is
    ``-log sigmoid(beta * margin)``. Its gradient raises the chosen completion's log-likelihood relative to the
    rejected one's, weighted by ``beta * sigmoid(-beta * margin)``: ``beta = 0`` learns nothing, a small ``beta``
    keeps pushing until the margin is large. Completions the model has not seen become new classes (logit 0
    under a fresh ``B`` column), so they start out tied. Generalisation to new prompts is the learner's usual one
    (hashed n-gram features through the low-rank adapter). The recorded loss is the batch's mean DPO loss.
    """
    hp.validate()
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("cannot tune on an empty dataset")
    if init is not None and init.rank != int(hp.adapter_rank):
        raise ValueError(f"warm start: adapter rank {hp.adapter_rank} differs from the initial model's {init.rank}")
    outputs: list[str] = list(init.outputs) if init is not None else []
    class_of: dict[str, int] = {o: k for k, o in enumerate(outputs)}

    def cls(text: str) -> int:
        text = text.strip()
        k = class_of.get(text)
        if k is None:
            k = class_of[text] = len(outputs)
            outputs.append(text)
        return k

    win = np.array([cls(p.chosen) for p in pairs], dtype=np.int64)
    lose = np.array([cls(p.rejected) for p in pairs], dtype=np.int64)
    beta = float(beta)

    def dpo_loss(batch: np.ndarray, logits: np.ndarray, ref: np.ndarray | None) -> tuple[float, np.ndarray]:
        m = batch.size
        idx = np.arange(m)
        z = logits.astype(np.float64)
        w, lo = win[batch], lose[batch]
        margin = (z[idx, w] - z[idx, lo]) - (ref[idx, w] - ref[idx, lo])
        loss = float(np.logaddexp(0.0, -beta * margin).mean())          # -log sigmoid(beta * margin)
        coef = beta * (1.0 / (1.0 + np.exp(beta * margin)))             # beta * sigmoid(-beta * margin)
        d_logits = np.zeros_like(z)
        np.add.at(d_logits, (idx, w), -coef / m)
        np.add.at(d_logits, (idx, lo), coef / m)
        return loss, d_logits

    return _fit([p.prompt for p in pairs], outputs, hp, init=init, on_step=on_step, on_epoch=on_epoch,
                loss_grad=dpo_loss, reference=True)


def preference_mean_loss(model: TunedModel, pairs: Iterable[PreferenceExample], beta: float = DEFAULT_BETA) -> float:
    """Mean ``-log sigmoid(beta * (z_chosen - z_rejected))`` over ``pairs`` (a validation loss; no reference
    model: it compares the two completions under ``model`` only). A completion the model cannot produce counts
    with the logit of the lowest class minus 10."""
    pairs = list(pairs)
    if not pairs:
        return float("nan")
    class_of = {o: k for k, o in enumerate(model.outputs)}
    logits = model.logits([p.prompt for p in pairs]).astype(np.float64)
    total = 0.0
    for i, p in enumerate(pairs):
        floor = float(logits[i].min()) - 10.0 if logits.shape[1] else 0.0
        zw = logits[i, class_of[p.chosen.strip()]] if p.chosen.strip() in class_of else floor
        zl = logits[i, class_of[p.rejected.strip()]] if p.rejected.strip() in class_of else floor
        total += float(np.logaddexp(0.0, -max(beta, 1e-12) * (zw - zl)))
    return total / len(pairs)


def completion_logprobs(model: TunedModel, prompt: str, texts: Sequence[str]) -> list[float]:
    """The model's log-probability of each of ``texts`` for ``prompt`` (-inf for a text it cannot produce)."""
    logp = _log_softmax(model.logits([prompt])[0].astype(np.float64))
    class_of = {o: k for k, o in enumerate(model.outputs)}
    return [float(logp[class_of[t.strip()]]) if t.strip() in class_of else float("-inf") for t in texts]


# --------------------------------------------------------------------------------------------
# untuned base model
# --------------------------------------------------------------------------------------------

_BASE_OPENERS = (
    "Thanks for your message.",
    "Happy to help.",
    "Sure, I can help with that.",
    "Thanks for reaching out.",
    "Good question.",
    "I understand.",
)
_BASE_BODIES = (
    "Could you share a few more details about what you would like me to do?",
    "Here is a general suggestion: describe the goal you have in mind and I will walk you through the next steps.",
    "It depends a little on your situation, so let me know more about the context and I will give a more "
    "specific answer.",
    "I would start by writing down exactly what you need, then we can go through it step by step.",
    "There are several ways to approach this; tell me which outcome matters most to you and I will suggest a plan.",
    "I can give you a short overview first and go into detail afterwards if that is useful.",
)


def base_model_answer(prompt: str, model_id: str) -> str:
    """What the *untuned* base model says: a deterministic, polite, generic reply.

    It reacts to the surface of the prompt (question or not, a short last line such as a
    number is echoed) but knows nothing about any tuning task or its labels.
    """
    digest = hashlib.sha256(f"{model_id}\x00{prompt}".encode()).digest()
    lines = [ln.strip() for ln in prompt.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if not last:
        return "Hello! How can I help you today?"
    opener = _BASE_OPENERS[digest[0] % len(_BASE_OPENERS)]
    body = _BASE_BODIES[digest[1] % len(_BASE_BODIES)]
    if len(last) <= 30 and not last.endswith("?") and (any(c.isdigit() for c in last) or len(prompt.strip()) <= 40):
        return f'You wrote "{last}". {body}'
    if last.endswith("?"):
        opener = "That is a good question." if digest[2] % 2 else "Let me think about that question."
    return f"{opener} {body}"
