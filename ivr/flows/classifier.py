"""A linear intent classifier, trained when a flow loads, on the flow's examples and training sentences.

Why a classifier: matching a caller's sentence to the single nearest example remembers the
examples; it does not learn which words *decide* an intent. Multinomial logistic regression
over many small features weighs every word, word pair and letter group by how much it tells
one intent from the others across hundreds of training sentences, and "out of scope" is a
class of its own (trained on the questions a hotline does not handle), so a question about
the weather does not latch onto its one familiar word. On the validation sets it took
intent + route from 70.0% to 91.2% (English) and from 78.5% to 93.8% (Korean); on the held-out
test halves from 83.6% to 97.9% and from 78.2% to 98.2% (BENCHMARKS.md, "Intent matching").

Features of one sentence, each block scaled to unit length:

* word stems (analysis.stem) and stem pairs ("never bought");
* letter groups: English 3-5 letters inside each word (survive "warrenty", "re fund"),
  Korean 1-3 syllables over the sentence without spaces (survive particles, endings and
  the recognizer's arbitrary spacing: "환불을", "환불해", "환 불");
* the flow's concepts heard in the sentence ("#money"), so a manager's synonym list
  teaches the classifier words that no training sentence contains.

Training is at most 100 L-BFGS steps (scipy) over a sparse matrix: ~2 s per language for ~900
sentences on an idle core of this machine, at flow load (before gunicorn forks, so the workers
share the weights); the trained model is kept on disk by what it learned from (intents.py), so
a restart reads it. scikit-learn's LogisticRegression is the same model; importing it costs
+113 MB RSS against +66 MB for numpy and the two scipy modules used here (BENCHMARKS.md).

Every prediction can say why: the features that pushed the winning intent up most, and the
training sentence of that intent nearest to what the caller said.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, sparse
from threadpoolctl import threadpool_limits

from .analysis import is_stopword, stem


@dataclass(frozen=True)
class Features:
    """What a sentence is turned into; block weights scale each block after normalization."""
    words: float = 1.0
    pairs: float = 0.7
    chars: float = 1.0
    concepts: float = 0.7
    # Korean concept phrases match inside words (a stem such as 돈 or 다른), so they fire on more
    # sentences that do not mean them: they weigh less (KO validation 92.3% at 0.7, 93.8% at 0.3 with
    # a fifth of the false urgents; English loses at 0.3).
    ko_concepts: float = 0.3
    stop_pairs: bool = True        # pairs of two function words ("can i")
    en_chars: tuple = (3, 4, 5)
    ko_chars: tuple = (1, 2, 3)

    def of(self, norm: str, lang: str, concepts=()) -> dict:
        """{feature: value} of a normalized sentence."""
        tokens = norm.split()
        stems = [stem(t, lang) for t in tokens]
        blocks = []
        if self.words:
            blocks.append((self.words, {"w " + s: (0.5 if is_stopword(t, lang) else 1.0)
                                        for t, s in zip(tokens, stems)}))
        if self.pairs:
            stop = [is_stopword(t, lang) for t in tokens]
            blocks.append((self.pairs, {f"p {a} {b}": 1.0 for a, b, sa, sb in zip(stems, stems[1:], stop, stop[1:])
                                        if self.stop_pairs or not (sa and sb)}))
        if self.chars:
            grams = {}
            if lang == "ko":
                text = "^" + "".join(tokens) + "$"
                for n in self.ko_chars:
                    for i in range(len(text) - n + 1):
                        g = "c " + text[i:i + n]
                        grams[g] = grams.get(g, 0) + 1
            else:
                for t in tokens:
                    word = f" {t} "
                    for n in self.en_chars:
                        for i in range(len(word) - n + 1):
                            g = "c " + word[i:i + n]
                            grams[g] = grams.get(g, 0) + 1
            blocks.append((self.chars, {g: 1.0 + math.log(c) for g, c in grams.items()}))
        weight = self.ko_concepts if lang == "ko" else self.concepts
        if weight and concepts:
            blocks.append((weight, {"# " + c: 1.0 for c in concepts}))
        out = {}
        for weight, block in blocks:
            norm2 = math.sqrt(sum(v * v for v in block.values())) or 1.0
            for f, v in block.items():
                out[f] = weight * v / norm2
        return out


def release_free_heap() -> None:
    """Hand the heap that training freed back to the OS; call it once the training's inputs are
    gone too. glibc keeps it for the process otherwise: measured, the two shipped flows' trained
    matchers held 33.9 or 43.1 MB of RSS after building, depending on how the optimizer's arrays
    fell, and 29.0 MB after this."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):   # not glibc (or not a POSIX loader): nothing to do
        pass


class LinearClassifier:
    """Softmax regression over sparse features; `labels` may include None (out of scope)."""

    def __init__(self, rows: list, labels: list, l2: float = 1e-3, iterations: int = 200):
        """rows: [{feature: value}] of the training sentences; labels: their classes."""
        self.classes = sorted(set(labels), key=lambda c: (c is None, c or ""))
        index = {c: k for k, c in enumerate(self.classes)}
        # Columns in sorted order and each row's features by column: the sums (and so the trained
        # weights, and every borderline decision) do not depend on the order a sentence's features
        # were found in, which may follow a set's, so PYTHONHASHSEED, from one process to the next.
        self.vocab = {f: i for i, f in enumerate(sorted({f for row in rows for f in row}))}
        keep = [i for i, row in enumerate(rows) if row]
        rows = [dict(sorted(rows[i].items(), key=lambda kv: self.vocab[kv[0]])) for i in keep]
        y = np.array([index[labels[i]] for i in keep])
        self.labels = [labels[i] for i in keep]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        indices = np.fromiter((self.vocab[f] for r in rows for f in r), dtype=np.int64, count=int(indptr[-1]))
        data = np.fromiter((v for r in rows for v in r.values()), dtype=np.float64, count=int(indptr[-1]))
        self._train(indptr, indices, data, y, l2, iterations)
        # The training matrix stays, compact, for "nearest training sentence" explanations.
        self.indptr, self.indices, self.data = indptr, indices.astype(np.int32), data.astype(np.float32)
        self.y = y

    # -- saved to disk ------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the trained model (atomically: a half-written file is never read)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        meta = json.dumps({"classes": self.classes, "labels": self.labels, "vocab": list(self.vocab)})
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.frombuffer(meta.encode(), dtype=np.uint8), W=self.W, b=self.b,
                     indptr=self.indptr, indices=self.indices, data=self.data, y=self.y)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> LinearClassifier:
        with np.load(path) as z:
            self = cls.__new__(cls)
            meta = json.loads(z["meta"].tobytes().decode())
            self.classes, self.labels = meta["classes"], meta["labels"]
            self.vocab = {f: i for i, f in enumerate(meta["vocab"])}
            for name in ("W", "b", "indptr", "indices", "data", "y"):
                setattr(self, name, z[name])
        return self

    # -- training ----------------------------------------------------------------------------
    def _train(self, indptr, indices, data, y, l2, iterations):
        n, F, K = len(y), len(self.vocab), len(self.classes)
        X = sparse.csr_matrix((data, indices, indptr), shape=(n, F))
        XT = X.T.tocsr()
        onehot = np.zeros((n, K))
        onehot[np.arange(n), y] = 1.0

        def loss_grad(theta):
            W, b = theta[:F * K].reshape(F, K), theta[F * K:]
            Z = X @ W + b
            Z -= Z.max(axis=1, keepdims=True)
            P = np.exp(Z)
            P /= P.sum(axis=1, keepdims=True)
            loss = -np.log(P[np.arange(n), y] + 1e-12).mean() + 0.5 * l2 * float((W * W).sum())
            G = (P - onehot) / n
            return loss, np.concatenate([(XT @ G + l2 * W).ravel(), G.sum(axis=0)])

        # One BLAS thread: OpenBLAS's own threads spin against each other and the server's
        # threads on a busy 2-core host (measured: 10 s instead of 2 s for the English flow).
        with threadpool_limits(limits=1, user_api="blas"):
            res = optimize.minimize(loss_grad, np.zeros(F * K + K), jac=True, method="L-BFGS-B",
                                    options={"maxiter": iterations})
        self.W = res.x[:F * K].reshape(F, K).astype(np.float32)
        self.b = res.x[F * K:].astype(np.float32)

    # -- prediction --------------------------------------------------------------------------
    def _sparse(self, feats: dict):
        """(indices, values) of the known features; the last sentence's are kept (predict, reasons
        and nearest all ask for the same one in a turn)."""
        last = self.__dict__.get("_last_sparse")
        if last is not None and last[0] is feats:
            return last[1], last[2]
        pairs = sorted((self.vocab[f], v) for f, v in feats.items() if f in self.vocab)
        idx = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
        val = np.fromiter((v for _, v in pairs), dtype=np.float32, count=len(pairs))
        self._last_sparse = (feats, idx, val)
        return idx, val

    def predict(self, feats: dict) -> dict:
        """{class: probability}, over every class (None = out of scope)."""
        idx, val = self._sparse(feats)
        z = val @ self.W[idx] + self.b if len(idx) else self.b.copy()
        z = np.exp(z - z.max())
        p = z / z.sum()
        return {c: float(p[k]) for k, c in enumerate(self.classes)}

    def reasons(self, feats: dict, cls, top: int = 3) -> list:
        """The features of this sentence that raised `cls` the most: [(feature, weight)]."""
        k = self.classes.index(cls)
        idx, val = self._sparse(feats)
        if not len(idx):
            return []
        contrib = val * (self.W[idx, k] - self.W[idx].mean(axis=1))
        names = self._names()
        order = np.argsort(-contrib)[:top]
        return [(names[idx[i]], float(contrib[i])) for i in order if contrib[i] > 0]

    def _names(self) -> list:
        names = getattr(self, "_names_list", None)
        if names is None:
            names = self._names_list = list(self.vocab)
        return names

    def nearest(self, feats: dict, cls) -> tuple:
        """(row, cosine) of the training sentence of class `cls` nearest to these features."""
        rows, indptr, indices, data, norms = self._rows_of(self.classes.index(cls))
        if not len(rows):
            return 0, 0.0
        idx, val = self._sparse(feats)
        q = np.zeros(len(self.vocab), dtype=np.float32)
        q[idx] = val
        sims = np.add.reduceat(q[indices] * data, indptr[:-1]) / norms
        best = int(np.argmax(sims))
        qn = float(np.sqrt((val * val).sum())) or 1.0
        return int(rows[best]), float(sims[best]) / qn

    def _rows_of(self, k):
        """The training rows of class k as their own small matrix (built on first use, kept)."""
        cache = self.__dict__.setdefault("_by_class", {})
        if k not in cache:
            rows = np.flatnonzero(self.y == k)
            starts, ends = self.indptr[rows], self.indptr[rows + 1]
            take = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(rows) else np.zeros(0, int)
            indptr = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
            data = self.data[take]
            norms = np.sqrt(np.add.reduceat(data * data, indptr[:-1])) if len(rows) else np.zeros(0)
            norms[norms == 0] = 1.0
            cache[k] = (rows, indptr, self.indices[take], data, norms)
        return cache[k]
