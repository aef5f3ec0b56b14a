"""The Hybrid LLM router: encoder + head -> score = P[q(small) >= q(large) - t]; small iff score >= threshold."""

from __future__ import annotations

import json
import os
import stat
import threading
import warnings
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .calibration import ALL_LARGE, Calibration
from .cascade import CascadeCalibration
from .conversation import router_text, select_router_text
from .decision import RouteDecision
from .encoder import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_ENCODER,
    DEFAULT_TRUNCATION,
    Encoder,
    EncoderLoadError,
    check_truncation,
    resolve_encoder_path,
)
from .encoder import _check_source as check_source
from .head import RouterHead, load_head
from .options import RoutingOptions, current_routing, resolve_options, validate_fraction
from .verifier import AnswerVerifier

#: 2 adds the optional answer verifier and cascade calibration; 3 certified calibration tables (bounds and their
#: certificate, see :mod:`hybrid_router.core.certify`). Folders of formats 1 and 2 still load, uncertified.
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
#: The verifier's arrays share the weights file with the head's, under this prefix.
VERIFIER_PREFIX = "verifier."
#: Recent single-text embeddings kept, so a cascade's verifier reuses the query embedding its routing computed.
RECENT_EMBEDDINGS = 256
CONFIG_FILE = "router.json"
HEAD_FILE = "head.safetensors"
DEFAULT_THRESHOLD = 0.5

_SHARED_DEFAULT: "HybridRouter | None" = None
_SHARED_DEFAULT_LOCK = threading.Lock()


class RouterFileError(ValueError):
    """A router folder that is missing, incomplete or corrupt."""


class UncertifiedWarning(UserWarning):
    """A routing target the router's calibration data cannot promise: the call is routed safely instead (all large,
    or the most conservative certified choice), or the table is an old uncertified one. Issued once per router and
    target."""


def _check_encoder(config_path: Path, name: Any, layers: Any) -> None:
    """A :class:`RouterFileError` now, not at the first call, for an encoder the router could never load.

    Checks the encoder reference (a missing local folder, a hub name while offline) and that ``encoder_layers``
    is a depth the encoder has (read from a local encoder's ``config.json``; no weights are loaded).
    """
    if not isinstance(name, str) or not name.strip():
        raise RouterFileError(f"{config_path}: 'encoder' must be an encoder name or folder, got {name!r}")
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
        raise RouterFileError(f"{config_path}: 'encoder_layers' must be a positive integer or null, got {layers!r}")
    path = resolve_encoder_path(name)
    try:
        check_source(name, path)
    except EncoderLoadError as exc:
        raise RouterFileError(f"{config_path}: {exc}") from exc
    depth = _local_encoder_depth(Path(path).expanduser())
    if layers is not None and depth is not None and layers > depth:
        raise RouterFileError(
            f"{config_path}: 'encoder_layers' is {layers}, but encoder {name!r} has only {depth} layers"
        )


def _local_encoder_depth(folder: Path) -> int | None:
    """``num_hidden_layers`` from a local encoder folder's ``config.json`` (None when it cannot be read)."""
    try:
        depth = json.loads((folder / "config.json").read_text()).get("num_hidden_layers")
    except (OSError, ValueError, AttributeError):
        return None
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else None


def _load_verifier(
    config: dict | None, tensors: dict[str, np.ndarray]
) -> tuple[AnswerVerifier | None, CascadeCalibration | None]:
    """The verifier and cascade table stored under ``"verifier"`` (None, None when the folder has none)."""
    if config is None:
        return None, None
    if not isinstance(config, dict):
        raise ValueError(f"'verifier' must be an object, got {config!r}")
    cascade = CascadeCalibration.from_dict(config["cascade"]) if config.get("cascade") else None
    return AnswerVerifier.from_saved(config, tensors), cascade


class HybridRouter:
    """Scores queries and routes them between a small and a large model.

    Use :meth:`default` for the shipped router, :meth:`load` for a trained one, ``hybrid_router.train_router`` to
    train. A router trained on data with the small model's answers also carries an answer ``verifier`` and the
    ``cascade`` calibration of its two thresholds, and then routes with ``strategy="cascade"`` too.
    """

    def __init__(
        self,
        head: RouterHead,
        *,
        encoder: Encoder | str = DEFAULT_ENCODER,
        calibration: Calibration | None = None,
        label_mode: str = "det",
        relaxation: float = 0.0,
        default_threshold: float = DEFAULT_THRESHOLD,
        info: dict[str, Any] | None = None,
        encoder_backend: str = DEFAULT_BACKEND,
        encoder_layers: int | None = None,
        verifier: AnswerVerifier | None = None,
        cascade: CascadeCalibration | None = None,
        encoder_truncation: str = DEFAULT_TRUNCATION,
    ):
        self.head = head
        self.verifier = verifier
        self.cascade = cascade
        self._encoder = encoder if isinstance(encoder, Encoder) else None
        self.encoder_name = encoder.name if isinstance(encoder, Encoder) else encoder
        self.encoder_backend = encoder.backend if isinstance(encoder, Encoder) else encoder_backend
        self.encoder_layers = encoder.layers if isinstance(encoder, Encoder) else encoder_layers
        #: how a router text longer than the encoder reads is cut (``"head_tail"``: its start and its end are read)
        self.encoder_truncation = check_truncation(
            getattr(encoder, "truncation", DEFAULT_TRUNCATION) if isinstance(encoder, Encoder) else encoder_truncation
        )
        if self.encoder_backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {self.encoder_backend!r}; choose one of {', '.join(BACKENDS)}")
        self.calibration = calibration
        self.label_mode = label_mode
        self.relaxation = float(relaxation)
        self.default_threshold = validate_fraction("default_threshold", default_threshold)
        self.info = dict(info or {})
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._warned: set[tuple[str, str, float]] = set()

    # ---------------------------------------------------------------- scoring
    @property
    def encoder(self) -> Encoder:
        """The sentence encoder (loaded on first use)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = Encoder(
                        self.encoder_name,
                        backend=self.encoder_backend,
                        layers=self.encoder_layers,
                        truncation=self.encoder_truncation,
                    )
        return self._encoder

    @encoder.setter
    def encoder(self, encoder: Encoder) -> None:
        """Swap in an encoder of the same settings (e.g. one whose batches run on a Ray cluster)."""
        mine = (self.encoder_name, self.encoder_backend, self.encoder_layers, self.encoder_truncation)
        theirs = (encoder.name, encoder.backend, encoder.layers, encoder.truncation)
        if theirs != mine:
            raise ValueError(f"the router's encoder is {mine}, the encoder given is {theirs}")
        self._encoder = encoder

    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings of router texts; one text is looked up among the recent ones first (the routing hot path)."""
        if len(texts) != 1:
            return self.encoder.encode(texts, batch_size=batch_size, progress=progress)
        with self._lock:
            cached = self._recent.get(texts[0])
            if cached is not None:
                self._recent.move_to_end(texts[0])
                return cached
        embedding = self.encoder.encode(texts)
        with self._lock:
            self._recent[texts[0]] = embedding
            while len(self._recent) > RECENT_EMBEDDINGS:
                self._recent.popitem(last=False)
        return embedding

    def score_texts(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Scores of already-prepared router texts."""
        return self.score_embeddings(self.embed_texts(texts, batch_size=batch_size, progress=progress), texts)

    def score_embeddings(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Scores of router texts already embedded by this router's encoder."""
        return np.clip(self.head.predict(embeddings, list(texts)), 0.0, 1.0)

    def score(self, query: str | Sequence[Any], *, router_input: Any = "conversation") -> float:
        """P[small is good enough] for a query string or a chat message list.

        ``router_input`` chooses the text scored: ``"conversation"`` (default), ``"last_user"`` or a callable
        (messages -> text); see :func:`hybrid_router.core.conversation.select_router_text`.
        """
        return float(self.score_texts([select_router_text(query, router_input)[0]])[0])

    def score_batch(
        self, queries: Sequence[str | Sequence[Any]], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Scores for many queries at once (faster than calling :meth:`score` in a loop)."""
        return self.score_texts([router_text(q) for q in queries], batch_size=batch_size, progress=progress)

    def _require_verifier(self) -> AnswerVerifier:
        if self.verifier is None:
            raise ValueError(
                "this router has no answer verifier: train it on data with a small_answer column "
                "(hybrid-llm train), or use strategy='route'"
            )
        return self.verifier

    def score_answer_batch(
        self, queries: Sequence[str | Sequence[Any]], answers: Sequence[str], *, batch_size: int = 64
    ) -> np.ndarray:
        """P[the small model's answer is good enough] for each (query, answer) pair (the answer verifier)."""
        verifier = self._require_verifier()
        if len(queries) != len(answers):
            raise ValueError(f"score_answer_batch got {len(queries)} queries and {len(answers)} answers")
        for answer in answers:
            if not isinstance(answer, str):
                raise ValueError(f"an answer must be a string, got {type(answer).__name__}")
        texts = [router_text(q) for q in queries]
        reads_query = "query" in verifier.weights or verifier.needs_route_score
        query_emb = self.embed_texts(texts, batch_size=batch_size) if reads_query else None
        answer_emb = (
            self.encoder.encode(list(answers), batch_size=batch_size) if verifier.needs_answer_embedding else None
        )
        route_scores = self.score_embeddings(query_emb, texts) if verifier.needs_route_score else None
        return np.clip(verifier.predict(texts, list(answers), query_emb, answer_emb, route_scores), 0.0, 1.0)

    def score_answer(self, query: str | Sequence[Any], answer: str) -> float:
        """P[``answer``, the small model's answer to ``query``, is good enough] (a query string or message list)."""
        return float(self.score_answer_batch([query], [answer])[0])

    # ---------------------------------------------------------------- routing
    def threshold_for(self, options: RoutingOptions) -> float:
        """The quality threshold an options layer asks for (calibration resolves share / drop targets).

        ``max_quality_drop=d`` takes the cheapest threshold whose drop is certified <= d on new queries (probability
        >= 1 - delta, see :mod:`hybrid_router.core.certify`); when the data cannot certify ``d`` with any saving,
        every call goes large and an :class:`UncertifiedWarning` names the smallest drop it can certify.
        """
        if options.quality_threshold is not None:
            return options.quality_threshold
        if options.max_quality_drop is None and options.large_share is None:
            return self.default_threshold
        if self.calibration is None:
            raise ValueError("this router has no calibration table: use quality_threshold, or train/calibrate it")
        if options.max_quality_drop is not None:
            found = self.calibration.resolve_max_quality_drop(options.max_quality_drop)
            self._warn_uncertified("route", "max_quality_drop", options.max_quality_drop, found, self.calibration)
        else:
            found = self.calibration.resolve_large_share(options.large_share)
            self._warn_uncertified("route", "large_share", options.large_share, found, self.calibration)
        return found.threshold

    def _warn_uncertified(self, strategy: str, key: str, value: float, found, table) -> None:
        """One :class:`UncertifiedWarning` per router, strategy and target that the table cannot promise."""
        if table.certified and (found.certified or key != "max_quality_drop" or value <= 0.0):
            return
        with self._lock:
            if (strategy, key, value) in self._warned:
                return
            self._warned.add((strategy, key, value))
        if not table.certified:
            message = (
                f"{key}={value:g} ({strategy}): this router's calibration table is not certified (saved before "
                "hybrid-llm 0.3): the threshold meets the target on its calibration rows, with no promise for new "
                "queries; retrain it to certify"
            )
        else:
            cert = table.certificate
            smallest = "no drop" if found.smallest_certified is None else f"{found.smallest_certified:.3f}"
            message = (
                f"max_quality_drop={value:g} ({strategy}) cannot be certified with this router's calibration data "
                f"(n={cert.n} {cert.unit}, delta={cert.delta:g}): every call goes to the large model; the smallest "
                f"drop it can certify with some calls answered small is {smallest}"
            )
        warnings.warn(message, UncertifiedWarning, stacklevel=4)

    def decide(
        self,
        query: str | Sequence[Any],
        options: RoutingOptions,
        source: str,
        *,
        router_input: Any = "conversation",
        router_input_label: str | None = None,
    ) -> RouteDecision:
        """Route with options already resolved by a caller (the framework wrappers do their own layering).

        ``source`` names the layer the options came from; empty options mean the router's default threshold.
        ``router_input`` chooses the text scored (``"conversation"``, ``"last_user"`` or a callable); the decision
        records it as ``router_input`` (``router_input_label``, when given, names it instead).
        """
        text, label = select_router_text(query, router_input)  # validates even when the route is forced
        label = router_input_label or label
        if not options.is_set:
            options, source = (
                RoutingOptions(quality_threshold=self.default_threshold, strategy=options.strategy),
                "default",
            )
        key = options.key
        if options.route is not None:
            return RouteDecision(options.route, None, None, f"{source}:route", options.route, router_input=label)
        if options.strategy == "cascade":
            threshold, verify_threshold = self.cascade_thresholds_for(options)
        else:
            threshold, verify_threshold = self.threshold_for(options), None
        score = float(self.score_texts([text])[0])
        target = "small" if score >= threshold and threshold < ALL_LARGE else "large"
        requested = getattr(options, key)
        return RouteDecision(
            target,
            score,
            threshold,
            f"{source}:{key}",
            requested,
            options.strategy or "route",
            verify_threshold,
            router_input=label,
        )

    def cascade_thresholds_for(self, options: RoutingOptions) -> tuple[float, float]:
        """The cascade's (route, verify) thresholds for an options layer (see :mod:`hybrid_router.core.cascade`);
        targets are certified as under routing (:meth:`threshold_for`)."""
        self._require_verifier()
        if self.cascade is None:
            raise ValueError("this router has no cascade calibration: retrain it on data with a small_answer column")
        if options.max_quality_drop is not None:
            pair, found = self.cascade.resolve_max_quality_drop(options.max_quality_drop)
            self._warn_uncertified("cascade", "max_quality_drop", options.max_quality_drop, found, self.cascade)
            return pair
        if options.large_share is not None:
            pair, found = self.cascade.resolve_large_share(options.large_share)
            self._warn_uncertified("cascade", "large_share", options.large_share, found, self.cascade)
            return pair
        if self.calibration is None:
            raise ValueError("a cascade at a quality_threshold needs the router's calibration table")
        threshold = self.default_threshold if options.quality_threshold is None else options.quality_threshold
        return self.cascade.thresholds_for_route_threshold(threshold, self.calibration)

    def route(
        self,
        query: str | Sequence[Any],
        quality_threshold: float | None = None,
        *,
        max_quality_drop: float | None = None,
        large_share: float | None = None,
        force: str | None = None,
        strategy: str | None = None,
        router_input: Any = "conversation",
    ) -> RouteDecision:
        """Decide small or large for ``query``.

        Give at most one of ``quality_threshold``, ``max_quality_drop``, ``large_share`` or ``force``; otherwise the
        active :func:`hybrid_router.routing` block decides, else the router's ``default_threshold``. ``strategy``
        (``"route"`` or ``"cascade"``) is resolved the same way, on its own. ``router_input`` chooses the text
        scored: ``"conversation"`` (default), ``"last_user"`` or a callable (messages -> text).
        """
        given = RoutingOptions(quality_threshold, max_quality_drop, large_share, force, strategy)
        options, source = resolve_options([("argument", given), ("context", current_routing())])
        return self.decide(query, options, source, router_input=router_input)

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``router.json`` and ``head.safetensors`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": FORMAT_VERSION,
            "encoder": self.encoder_name,
            "encoder_backend": self.encoder_backend,
            "encoder_layers": self.encoder_layers,
            "encoder_truncation": self.encoder_truncation,
            "label_mode": self.label_mode,
            "relaxation": self.relaxation,
            "default_threshold": round(self.default_threshold, 7),  # as the calibration table's thresholds
            "head": {"type": self.head.kind, **self.head.config()},
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "info": self.info,
        }
        tensors = dict(self.head.tensors())
        if self.verifier is not None:
            config["verifier"] = {**self.verifier.config(), "cascade": self.cascade.to_dict() if self.cascade else None}
            tensors.update(self.verifier.tensors())
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        save_file(tensors, str(directory / HEAD_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        # safetensors creates its file private (0600); give it router.json's mode (0644 under the usual umask)
        os.chmod(directory / HEAD_FILE, stat.S_IMODE((directory / CONFIG_FILE).stat().st_mode))
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, *, encoder: Encoder | None = None, backend: str | None = None
    ) -> "HybridRouter":
        """Load a router saved by :meth:`save`; a clear :class:`RouterFileError` if it is missing or corrupt.

        ``backend`` ("torch", "onnx", "int8") overrides the encoder backend stored in the folder.
        """
        directory = Path(directory)
        config_path, head_path = directory / CONFIG_FILE, directory / HEAD_FILE
        for path in (config_path, head_path):
            if not path.is_file():
                raise RouterFileError(
                    f"not a router folder: {path} is missing (expected {CONFIG_FILE} and {HEAD_FILE})"
                )
        try:
            config = json.loads(config_path.read_text())
            if not isinstance(config, dict):
                raise ValueError("top level is not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise RouterFileError(f"corrupt router config {config_path}: {exc}") from exc
        version = config.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise RouterFileError(
                f"{config_path}: this router folder has format_version {version}, made by a newer hybrid-llm; this "
                f"one reads {', '.join(map(str, READABLE_FORMATS))}: upgrade hybrid-llm (pip install -U hybrid-llm)"
            )
        if version not in READABLE_FORMATS:
            raise RouterFileError(f"{config_path}: unsupported format_version {version!r}")
        try:
            tensors = load_file(str(head_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise RouterFileError(f"corrupt router weights {head_path}: {exc}") from exc
        layers = config.get("encoder_layers")
        if encoder is not None and encoder.layers != layers:
            raise ValueError(
                f"{config_path}: the router reads the first {layers or 'all'} layers of its encoder, but "
                f"the encoder given reads {encoder.layers or 'all'}: pass one with layers={layers}"
            )
        if encoder is None:
            _check_encoder(config_path, config.get("encoder"), layers)
        if not isinstance(config.get("head"), dict):
            raise RouterFileError(f"{config_path}: 'head' must be an object with a 'type', got {config.get('head')!r}")
        try:
            head = load_head(config["head"], {k: v for k, v in tensors.items() if not k.startswith(VERIFIER_PREFIX)})
            calibration = Calibration.from_dict(config["calibration"]) if config.get("calibration") else None
            verifier, cascade = _load_verifier(config.get("verifier"), tensors)
            return cls(
                head,
                encoder=encoder or config["encoder"],
                calibration=calibration,
                label_mode=config.get("label_mode", "det"),
                relaxation=config.get("relaxation", 0.0),
                default_threshold=config.get("default_threshold", DEFAULT_THRESHOLD),
                info=config.get("info"),
                encoder_backend=backend or config.get("encoder_backend", DEFAULT_BACKEND),
                encoder_layers=layers,
                encoder_truncation=config.get("encoder_truncation", DEFAULT_TRUNCATION),
                verifier=verifier,
                cascade=cascade,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RouterFileError(f"corrupt router folder {directory}: {exc!r}") from exc

    @classmethod
    def default(cls, *, backend: str | None = None) -> "HybridRouter":
        """A new copy of the router shipped with the package (trained on the shipped RouteLLM data; loads offline).

        Use :meth:`shared_default` to share one copy (and one loaded encoder) across the process.
        """
        return cls.load(Path(str(resources.files(__package__).joinpath("default_router"))), backend=backend)

    @classmethod
    def shared_default(cls) -> "HybridRouter":
        """The process-wide shipped router: both framework wrappers and the server use this one copy."""
        global _SHARED_DEFAULT
        if _SHARED_DEFAULT is None:
            with _SHARED_DEFAULT_LOCK:
                if _SHARED_DEFAULT is None:
                    _SHARED_DEFAULT = cls.default()
        return _SHARED_DEFAULT

    def __repr__(self) -> str:
        layers = "" if self.encoder_layers is None else f", encoder_layers={self.encoder_layers}"
        return (
            f"HybridRouter(encoder={self.encoder_name!r}{layers}, head={self.head.kind!r}, labels={self.label_mode!r})"
        )
