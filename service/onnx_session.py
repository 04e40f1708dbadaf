"""One ONNX graph in an onnxruntime session, run the way its device wants.

    GraphSession.run(feeds, outputs, keep_on_device)
        CPU: session.run, numpy in and out.
        GPU: IO binding: numpy inputs are copied in once, OrtValue inputs (a KV cache
        kept on the device by the previous call) are bound as they are, outputs named
        in `keep_on_device` stay there as OrtValues, the rest come back as numpy.

    CudaGraphRunner (AFRL_CUDA_GRAPHS): the score graph replayed from CUDA graphs, one
        per (rows, length) bucket, each with fixed device buffers; rows are padded up to
        a power of two. Buckets are captured during warmup, so no request pays for it.

IO binding is also usable on the CPU (`io_binding=True`), which is how the
binding path is tested on machines without a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from afrl.manifest import ArtifactError
from service.providers import CUDA, ProviderPlan

logger = logging.getLogger(__name__)

GRAPH_ID_KEY = "gpu_graph_id"  # onnxruntime run option selecting which captured CUDA graph to replay


class GraphSession:
    """An onnxruntime session over one graph of the artifact."""

    def __init__(
        self,
        name: str,
        path: str | Path,
        plan: ProviderPlan,
        intra_op_threads: int | None = None,
        io_binding: bool | None = None,
        cuda_graph: bool = False,
    ):
        import onnxruntime as ort  # imported here so fakes and tests need no onnxruntime

        self.name = name
        self.path = Path(path)
        self.plan = plan
        self.io_binding = plan.on_gpu if io_binding is None else io_binding
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        provider_options = [dict(o) for o in plan.options] or [{} for _ in plan.providers]
        if cuda_graph:
            provider_options[plan.providers.index(CUDA)]["enable_cuda_graph"] = "1"
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=plan.providers, provider_options=provider_options
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ArtifactError(f"{self.path}: onnxruntime cannot load the {name} graph: {e}") from e
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = {o.name: o for o in self.session.get_outputs()}
        self._check_providers()
        logger.info("%s graph %s loaded on %s", name, self.path.name, self.session.get_providers())

    def _check_providers(self) -> None:
        """onnxruntime falls back to the CPU when a GPU provider fails to start (missing CUDA libraries,
        no device): an error when the provider was named, a warning under 'auto'."""
        got, wanted = self.session.get_providers(), self.plan.providers[0]
        if wanted in got:
            return
        message = f"{self.path}: {wanted} did not start (session providers: {got}); see onnxruntime's log"
        if self.plan.explicit:
            raise ArtifactError(message + "; fix the GPU setup or set AFRL_PROVIDERS=CPUExecutionProvider")
        logger.warning("%s; serving on the CPU", message)
        self.plan = replace(self.plan, device="cpu", device_id=0)
        self.io_binding = False

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def check_io(self, layers: int | None = None, num_labels: int | None = None) -> int:
        """ArtifactError unless the graph is afrl/graphs.py's contract (names, ranks, label width); returns layers."""
        from afrl.graphs import check_graph

        try:
            return check_graph(self.name, self.session, num_labels=num_labels, layers=layers)
        except ValueError as e:
            raise ArtifactError(f"{self.path}: {e}") from None

    def run(self, feeds: Mapping[str, Any], outputs: list[str], keep_on_device: Collection[str] = ()) -> list[Any]:
        """Outputs in the order asked; those in `keep_on_device` as OrtValues when IO binding, else numpy."""
        if not self.io_binding:
            host_feeds = {k: (v if isinstance(v, np.ndarray) else v.numpy()) for k, v in feeds.items()}
            return list(self.session.run(outputs, host_feeds))
        binding = self.session.io_binding()
        held = []  # bound host arrays must outlive the run
        for name, value in feeds.items():
            if isinstance(value, np.ndarray):
                held.append(np.ascontiguousarray(value))
                binding.bind_cpu_input(name, held[-1])
            else:
                binding.bind_ortvalue_input(name, value)
        for name in outputs:
            device = self.plan.device if name in keep_on_device else "cpu"
            binding.bind_output(name, device, self.plan.device_id if device != "cpu" else 0)
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        del held
        return [v if name in keep_on_device else v.numpy() for name, v in zip(outputs, values, strict=True)]


def row_bucket(rows: int) -> int:
    """Smallest power of two holding `rows`: the batch sizes CUDA graphs are captured for."""
    return 1 << max(0, rows - 1).bit_length()


def cuda_graph_shapes(lengths: list[int], max_batch_tokens: int) -> list[tuple[int, int]]:
    """Every (rows, length) bucket a batch can be padded to: rows up to the budget (at least 1)."""
    shapes = []
    for length in lengths:
        top = row_bucket(max(1, max_batch_tokens // length))
        rows = 1
        while rows <= top:
            shapes.append((rows, length))
            rows *= 2
    return shapes


@dataclass
class _Slot:
    binding: Any
    run_options: Any
    input_ids: Any  # OrtValue (R, T) int64
    attention_mask: Any  # OrtValue (R, T) int64
    output: Any  # OrtValue (R, K) float


class CudaGraphRunner:
    """Replays the score graph from one captured CUDA graph per (rows, length) bucket.

    A graph reads and writes fixed device addresses, so each bucket owns its
    input and output buffers; a batch is copied into its bucket's buffers
    (extra rows padded, mask 0: the score graph lets every position attend to
    itself, so a padding row is harmless) and the first `rows` outputs read back.
    """

    def __init__(self, graph: GraphSession, input_names: tuple[str, str], output_name: str, pad_id: int):
        self.graph = graph
        self.input_names = input_names
        self.output_name = output_name
        self.pad_id = pad_id
        self._slots: dict[tuple[int, int], _Slot] = {}

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return sorted(self._slots)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        rows, length = input_ids.shape
        shape = (row_bucket(rows), length)
        slot = self._slots.get(shape) or self._slot(shape)
        ids = np.full(shape, self.pad_id, dtype=np.int64)  # (R, T)
        mask = np.zeros(shape, dtype=np.int64)  # (R, T)
        ids[:rows], mask[:rows] = input_ids, attention_mask
        slot.input_ids.update_inplace(ids)
        slot.attention_mask.update_inplace(mask)
        self.graph.session.run_with_iobinding(slot.binding, slot.run_options)
        return np.asarray(slot.output.numpy()[:rows], dtype=np.float32)

    def _slot(self, shape: tuple[int, int]) -> _Slot:
        import onnxruntime as ort

        plan = self.graph.plan
        out_dtype = np.float16 if "float16" in self.graph.outputs[self.output_name].type else np.float32
        k = self.graph.outputs[self.output_name].shape[-1]
        if not isinstance(k, int):
            raise ArtifactError(f"{self.graph.path}: CUDA graphs need a fixed label count in {self.output_name}")

        def buffer(dims: tuple[int, ...], dtype: type) -> Any:
            return ort.OrtValue.ortvalue_from_shape_and_type(list(dims), dtype, plan.device, plan.device_id)

        ids, mask, out = buffer(shape, np.int64), buffer(shape, np.int64), buffer((shape[0], k), out_dtype)
        binding = self.graph.session.io_binding()
        binding.bind_ortvalue_input(self.input_names[0], ids)
        binding.bind_ortvalue_input(self.input_names[1], mask)
        binding.bind_ortvalue_output(self.output_name, out)
        run_options = ort.RunOptions()
        # Ids start at 1: onnxruntime reserves 0 and treats -1 as "do not capture".
        run_options.add_run_config_entry(GRAPH_ID_KEY, str(len(self._slots) + 1))
        slot = _Slot(binding, run_options, ids, mask, out)
        self._slots[shape] = slot
        return slot
