"""What every method computes from: the network, the prepared inputs and shared, cached work."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Protocol

import torch
from torch import nn

from viewer.explain.recorded_pass import RecordedPass, record
from viewer.explain.relu_rules import Rule
from viewer.inference.feature_grid import NCHW, FeatureGrid
from viewer.inference.model import LoadedModel
from viewer.inference.output_head import OutputHead, task_head


class Cancelled(Exception):
    """Raised inside a computation when its cancel flag was set."""


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def largest_batch(inputs: torch.Tensor) -> int:
    """The most images per batched forward: a memory bound, not the best size (see ``batches``).
    On a GPU the free memory decides; activations of common CNNs take up to ~100x the input per
    sample in inference mode."""
    numel = max(1, inputs[0].numel())
    if inputs.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(inputs.device)
        return int(min(512, max(8, free // (numel * 4 * 100))))
    return int(min(64, max(4, 16_000_000 // numel)))


# Batch sizes found fastest, per (network, sample shape, device, kind of pass): tuning happens once.
_TUNED: dict[tuple, int] = {}


class ExplainContext:
    """The prepared inputs ``(B, C, H, W)`` of a batch of frames, and the work methods share.

    The recorded forward pass is made on first use and serves every method that needs it; per-label
    gradients are cached, so e.g. Grad-CAM, Grad-CAM++ and Guided Grad-CAM share one backward to the
    target layer. Call ``release`` (or use as a context manager) to free the graph.

    ``grid`` says how the layer's output reads as ``(B, K, u, v)`` (a transformer's patch tokens);
    ``head`` turns logits into probabilities (default: the ``task``'s sigmoid or softmax). A
    network without module hooks has no ``layer``: then only input gradients can be recorded.
    """

    def __init__(
        self,
        network: nn.Module,
        layer: str | None,
        inputs: torch.Tensor,
        *,
        task: str = "multilabel",
        head: OutputHead | None = None,
        grid: FeatureGrid = NCHW,
        seed: int = 0,
        batch_size: int | None = None,
        input_grads: bool = True,
        cancel: CancelFlag | None = None,
        progress: Callable[[float], None] | None = None,
    ):
        self.network = network
        self.layer = layer
        self.inputs = inputs
        self.task = task
        self.head = head or task_head(task)
        self.grid = grid
        self.seed = seed
        self.batch_size = batch_size  # None: tuned on the machine (see ``batches``)
        self.cancel = cancel
        self.progress = progress
        # An anytime method's estimate so far (``Method.anytime``): ``preview(raw, notes, short)``
        # with raw maps ``(T, k, *grid)`` of the first ``k`` inputs (the last one unfinished), what
        # the map should say of itself and a few words for a caption ("300/1000 samples").
        self.preview: Callable[[torch.Tensor, list[str], str], None] | None = None
        self._want_input_grads = input_grads
        self._span = (0.0, 1.0)
        self._untimed = 0.0  # seconds spent in ``untimed`` blocks: no part of any batch's time
        self.tuning = False  # the batch size is being found: other work now would skew the timing
        self._stack = ExitStack()
        self._pass: RecordedPass | None = None
        self._activation_grads: dict[int, torch.Tensor] = {}
        self._input_grads: dict[tuple[int, Rule], torch.Tensor] = {}

    @classmethod
    def for_model(cls, model: LoadedModel, inputs: torch.Tensor, **kwargs) -> ExplainContext:
        """A context on a loaded model's network, target layer, layer grid and output head."""
        return cls(
            model.network,
            model.target_layer,
            inputs,
            task=model.manifest.task,
            head=model.head,
            grid=model.grid or NCHW,
            **kwargs,
        )

    # --- shared recorded pass ------------------------------------------------------------------

    def recorded(self) -> RecordedPass:
        if self._pass is None:
            self.check()
            self._pass = self._stack.enter_context(
                record(
                    self.network, self.inputs, self.layer, input_grads=self._want_input_grads, grid=self.grid
                )
            )
        return self._pass

    @property
    def activations(self) -> torch.Tensor:
        """Target-layer activations ``(B, K, u, v)`` (a copy no later in-place op touched)."""
        return self.recorded().activations

    @property
    def logits(self) -> torch.Tensor:
        return self.recorded().logits.detach()

    def activation_grads(self, target: int) -> torch.Tensor:
        if target not in self._activation_grads:
            self.check()
            self._activation_grads[target] = self.recorded().activation_grads(target)
        return self._activation_grads[target]

    def input_grads(self, target: int, rule: Rule = "gradient") -> torch.Tensor:
        key = (target, rule)
        if key not in self._input_grads:
            self.check()
            self._input_grads[key] = self.recorded().input_grads(target, rule)
        return self._input_grads[key]

    # --- batched evaluation --------------------------------------------------------------------

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.head(logits)

    def batches(self, n: int, kind: str = "inference") -> Iterator[tuple[int, int]]:
        """``(start, stop)`` of each batch of ``n`` items; checks the cancel flag before each batch
        and reports progress after it.

        Without a fixed ``batch_size``, the size is tuned while the work runs: it starts small and
        doubles while the time per item keeps falling by 5 %, then stays at the fastest size, which
        is remembered for this network and input shape. Throughput peaks at different sizes for
        different networks and CPUs (DenseNet-121 at 224 px is slower per image at 26 than at 16 on
        two cores), so no fixed rule fits."""
        if self.batch_size:
            for start in range(0, n, self.batch_size):
                self.check()
                stop = min(n, start + self.batch_size)
                yield start, stop
                self.report(stop / n)
            return
        key = (id(self.network), tuple(self.inputs.shape[1:]), self.inputs.device.type, kind)
        size = _TUNED.get(key)
        tuning = self.tuning = size is None
        cap = largest_batch(self.inputs)
        size = size or min(4, cap)
        best_time, best_size = float("inf"), size
        start = 0
        while start < n:
            self.check()
            stop = min(n, start + size)
            began, aside = time.perf_counter(), self._untimed
            yield start, stop
            per_item = (time.perf_counter() - began - (self._untimed - aside)) / (stop - start)
            self.report(stop / n)
            if tuning and stop - start == size:
                if per_item < 0.95 * best_time and size < cap:
                    best_time, best_size = per_item, size
                    size = min(cap, size * 2)
                else:
                    if per_item < best_time:
                        best_size = size
                    size, tuning = best_size, False
                    _TUNED[key] = size
                    self.tuning = False
            start = stop

    def evaluate(self, batch: torch.Tensor, *, logits: bool = False) -> torch.Tensor:
        """Outputs ``(N, labels)`` of a batch under ``inference_mode``: probabilities (sigmoid or
        softmax, as the model's task) unless ``logits``."""
        with torch.inference_mode():
            y = self.network(batch)
            return (y if logits else self.probabilities(y)).float()

    def scores(
        self, make_batch: Callable[[int, int], torch.Tensor], n: int, *, logits: bool = False
    ) -> torch.Tensor:
        """``evaluate`` over ``n`` inputs that ``make_batch(start, stop)`` builds a batch at a time,
        so the inputs never all sit in memory."""
        return torch.cat([self.evaluate(make_batch(a, b), logits=logits) for a, b in self.batches(n)])

    # --- progress, cancellation, clean-up ------------------------------------------------------

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled

    def report(self, fraction: float) -> None:
        if self.progress is not None:
            low, high = self._span
            self.progress(low + (high - low) * min(1.0, max(0.0, fraction)))

    @contextmanager
    def untimed(self) -> Iterator[None]:
        """Work between batches that is not the batches' (a preview of the estimate so far): left
        out of the timing that tunes the batch size, so it never changes the batches."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self._untimed += time.perf_counter() - began

    @contextmanager
    def part(self, index: int, count: int) -> Iterator[None]:
        """Within the block, progress 0..1 reports as the ``index``-th of ``count`` equal parts."""
        saved = self._span
        low, high = saved
        step = (high - low) / count
        self._span = (low + index * step, low + (index + 1) * step)
        try:
            yield
        finally:
            self._span = saved

    def generator(self, salt: int = 0) -> torch.Generator:
        """A fresh generator for a method's random draws: same seed, same map."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)

    def release(self) -> None:
        self._activation_grads.clear()
        self._input_grads.clear()
        self._pass = None
        self._stack.close()

    def __enter__(self) -> ExplainContext:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
