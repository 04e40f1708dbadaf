"""Any Hugging Face causal LM as the starting point of training, optionally with LoRA adapters.

    base = load_base_model(BaseModelConfig(checkpoint="HuggingFaceTB/SmolLM2-135M-Instruct", lora_rank=8))
    base.model, base.tokenizer, base.encoder, base.labels, base.guideline   # what the stages need
    ... train base.model ...
    save_checkpoint_merged(base.model, base.tokenizer, out)                 # a plain HF folder

`checkpoint` is a folder or a hub id (with or without the `afrl.json` that
training writes: its guideline and label values are used when present), or a
GGUF source: a `.gguf` file path, or `gguf_file=` naming the file inside the
folder / hub repo (de-quantised on every load; `python -m training.gguf_import`
converts it once instead). The prompt is rendered through the checkpoint's own
chat template (`PromptTemplate.from_chat_template`), and every grade must be
one token of its own tokenizer: a label that is not fails at load with the
label and how it tokenizes.

Memory: transformers (4.56 and later) always builds the model on the meta
device and loads the weights straight into place; the `low_cpu_mem_usage`
flag is accepted and dropped, so it is not passed here. `dtype` is passed
through (bfloat16 halves the host copy). Under
`accelerate launch` with FSDP and `fsdp_cpu_ram_efficient_loading: true`,
transformers loads the real weights on local rank 0 only and leaves meta
tensors elsewhere (FSDP's `sync_module_states` broadcasts them when it
shards), so no rank but one ever holds a full copy: create the Accelerator
(or PartialState) before calling `load_base_model`, which is what makes
torch.distributed initialised when transformers checks.

LoRA (`lora_rank` > 0) goes through peft on the attention and MLP
projections of Llama / Qwen3 (`DEFAULT_LORA_TARGETS`); only the adapters
train. `save_checkpoint_merged` folds them into the weights
(`merge_and_unload`), so what export and serving read is an ordinary
checkpoint, never an adapter folder.

Measured on SmolLM2-135M (2 shared CPU cores, 8 x 256 tokens, one thread,
CPU seconds, which contention inflates least): a LoRA rank-8 step 12.1 s, a
full fine-tuning step 15.7 s. The backward pass still runs through every
layer, so LoRA saves about a quarter of the step here; what it saves most is
memory (AdamW state for 2.4M parameters instead of 134.5M).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from afrl.labels import DEFAULT_GRADES, LabelSet
from afrl.progress import Progress
from afrl.prompt import PromptEncoder, PromptTemplate
from afrl.sidecar import SIDECAR_NAME, Sidecar

logger = logging.getLogger(__name__)

# The linear layers of a Llama / Qwen3 / Mistral decoder block: attention, then the gated MLP.
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DTYPES = ("float32", "bfloat16", "float16")


class BaseModelError(ValueError):
    """The base checkpoint cannot be trained as asked; the message says why and what to change."""


@dataclass
class BaseModelConfig:
    checkpoint: str = field(metadata={"help": "folder, hub id, or path of a .gguf file"})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside `checkpoint` (folder or hub)"})
    dtype: str = field(default="float32", metadata={"help": "weights dtype: float32, bfloat16 or float16"})
    lora_rank: int = field(default=0, metadata={"help": "LoRA rank; 0 trains every weight"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA scale numerator (default 2 x rank)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: tuple[str, ...] = field(
        default=DEFAULT_LORA_TARGETS, metadata={"help": "names of the linear layers that get adapters"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in backward: less memory, one more forward pass"}
    )

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0 = full fine-tuning), got {self.lora_rank}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout {self.lora_dropout} is outside [0, 1)")
        if self.lora_rank and not self.lora_target_modules:
            raise ValueError("lora_target_modules is empty: name the linear layers that get adapters")
        self.lora_target_modules = tuple(self.lora_target_modules)  # a list from JSON reads the same


@dataclass
class BaseModel:
    """A loaded base checkpoint and the prompt pieces that go with its tokenizer."""

    source: str  # checkpoint as given
    model: Any  # transformers PreTrainedModel, or a peft PeftModel around it with lora_rank > 0
    tokenizer: Any  # HF tokenizer, with the checkpoint's chat template
    template: PromptTemplate
    encoder: PromptEncoder  # over a copy of the fast tokenizer, i.e. the tokenizer.json serving loads
    labels: LabelSet
    guideline: str
    sidecar: Sidecar | None  # the checkpoint's afrl.json, None for a plain HF checkpoint

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.template.completion_end))


def load_base_model(
    config: BaseModelConfig, guideline: str | None = None, label_values: Sequence[int] | None = None
) -> BaseModel:
    """Model, tokenizer, prompt encoder and label set of `config.checkpoint`, wrapped for training.

    guideline: the system-prompt text; default the checkpoint's afrl.json, else the world's
    guideline (training.world.guideline_text). label_values: default afrl.json's, else 0..4.
    """
    source, gguf_file = _source(config.checkpoint, config.gguf_file)
    if gguf_file is None:
        _check_checkpoint(source)
    sidecar = None if gguf_file else read_checkpoint_sidecar(source)
    if guideline is None and sidecar is not None:
        guideline = sidecar.guideline
    if not guideline:
        from training.world import guideline_text

        guideline = guideline_text()
    tokenizer = load_tokenizer(source, gguf_file)
    values = label_values or (sidecar.label_values if sidecar else DEFAULT_GRADES)
    labels = label_set(tokenizer, values, config.checkpoint)
    template = prompt_template(tokenizer, guideline, config.checkpoint)
    model = load_model(source, gguf_file, getattr(torch, config.dtype))
    if config.lora_rank:
        model = wrap_lora(model, config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_target_modules)
    if config.gradient_checkpointing:
        set_gradient_checkpointing(model, True)
    return BaseModel(
        source=config.checkpoint,
        model=model,
        tokenizer=tokenizer,
        template=template,
        encoder=PromptEncoder(template, _serving_tokenizer(tokenizer)),
        labels=labels,
        guideline=guideline,
        sidecar=sidecar,
    )


def _source(checkpoint: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name in it or None); a path to a .gguf file splits into both."""
    path = Path(checkpoint)
    if gguf_file is None and path.suffix == ".gguf":
        if not path.is_file():
            raise BaseModelError(f"{checkpoint}: no such GGUF file")
        return str(path.parent), path.name
    return checkpoint, gguf_file


def _check_checkpoint(checkpoint: str) -> None:
    """A clear one-line error for a missing folder, a folder that is no checkpoint, or an unreachable hub id."""
    from transformers.utils import cached_file

    path = Path(checkpoint)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelError(f"{checkpoint}: the folder has no config.json, so it is no Hugging Face checkpoint")
        return
    if path.is_absolute() or checkpoint.startswith(".") or path.exists():
        raise BaseModelError(f"{checkpoint}: no such checkpoint folder")
    try:
        cached_file(checkpoint, "config.json")
    except (OSError, ValueError) as e:  # HFValidationError is a ValueError
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BaseModelError(f"{checkpoint}: neither a checkpoint folder nor a reachable hub id ({first})") from None


def read_checkpoint_sidecar(checkpoint: str) -> Sidecar | None:
    """The afrl.json of a checkpoint folder or hub id; None when it has none."""
    from transformers.utils import cached_file

    path = cached_file(
        checkpoint,
        SIDECAR_NAME,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return Sidecar.read_file(Path(path)) if path else None


def load_tokenizer(checkpoint: str, gguf_file: str | None = None, progress: Progress | None = None) -> Any:
    """The checkpoint's HF tokenizer, with a pad token (its eos when it has none: padding is masked)."""
    from transformers import AutoTokenizer

    try:
        if gguf_file is None:
            # fix_mistral_regex=False: serving tokenizes with tokenizer.json as is (and the warning is false).
            tokenizer = AutoTokenizer.from_pretrained(checkpoint, fix_mistral_regex=False)
        else:
            from transformers.utils import cached_file

            from training.gguf_import import repair_special_tokens

            tokenizer = AutoTokenizer.from_pretrained(checkpoint, gguf_file=gguf_file)
            local = cached_file(checkpoint, gguf_file)  # the file the tokenizer was just read from
            assert local is not None
            repair_special_tokens(tokenizer, Path(local), progress)
    except OSError as e:  # wrong path, unknown hub id, offline
        raise BaseModelError(f"{checkpoint}: cannot load its tokenizer ({e})") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def label_set(tokenizer: Any, values: Sequence[int], checkpoint: str = "the checkpoint") -> LabelSet:
    """`LabelSet.from_tokenizer`, after checking that each grade is one token, naming the one that is not."""
    for value in values:
        ids = tokenizer.encode(str(value), add_special_tokens=False)
        if len(ids) != 1:
            pieces = tokenizer.convert_ids_to_tokens(ids)
            raise BaseModelError(
                f"label {str(value)!r} is not a single token in {checkpoint}'s tokenizer: it tokenizes to "
                f"{len(ids)} tokens {pieces} (ids {ids}); every label must be one token, choose other label values"
            )
    return LabelSet.from_tokenizer(tokenizer, values)


def prompt_template(tokenizer: Any, guideline: str, checkpoint: str = "the checkpoint") -> PromptTemplate:
    """The prompt through the tokenizer's chat template; its end-of-turn token must be one token."""
    if not getattr(tokenizer, "chat_template", None):
        raise BaseModelError(
            f"{checkpoint}: its tokenizer has no chat template, which the prompt is rendered through; "
            "add one (chat_template.jinja in the folder) or start from an instruct checkpoint"
        )
    template = PromptTemplate.from_chat_template(tokenizer, guideline)
    end = tokenizer.encode(template.completion_end, add_special_tokens=False)
    if len(end) != 1:
        raise BaseModelError(
            f"{checkpoint}: the end-of-turn token {template.completion_end!r} tokenizes to {len(end)} tokens {end}"
        )
    return template


def _serving_tokenizer(tokenizer: Any) -> Any:
    """An independent `tokenizers.Tokenizer` equal to the tokenizer.json the artifact will carry."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    return Tokenizer.from_str(backend.to_str()) if backend is not None else tokenizer


def load_model(checkpoint: str, gguf_file: str | None = None, dtype: torch.dtype = torch.float32) -> Any:
    """`AutoModelForCausalLM` from a folder, hub id or GGUF, in `dtype` (see the module docstring on memory)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, **kwargs)
    except OSError as e:
        raise BaseModelError(f"{checkpoint}: cannot load it as a causal LM ({e})") from e
    logger.info(
        "loaded %s from %s: %.1fM parameters (%s)",
        type(model).__name__,
        checkpoint,
        sum(p.numel() for p in model.parameters()) / 1e6,
        dtype,
    )
    return model


def wrap_lora(
    model: Any,
    rank: int,
    alpha: int | None = None,
    dropout: float = 0.0,
    target_modules: Sequence[str] = DEFAULT_LORA_TARGETS,
) -> Any:
    """A peft `PeftModel` around `model` with rank-`rank` adapters on `target_modules`; the base is frozen.

    alpha defaults to 2 x rank (the adapters' update is scaled by alpha / rank). The wrapper
    forwards `get_decoder()`, `get_output_embeddings()` and `config` to the base model, so
    training code that calls them works unchanged.
    """
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise BaseModelError(
            f"LoRA targets {list(target_modules)} do not fit {type(model).__name__} ({e}); "
            f"its linear layers are {linear}"
        ) from e
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    logger.info(
        "LoRA rank %d on %s: %.2fM of %.1fM parameters train", rank, target_modules, trainable / 1e6, total / 1e6
    )
    return wrapped


def set_gradient_checkpointing(model: Any, enabled: bool) -> None:
    """Recompute each decoder layer's activations in backward instead of keeping them.

    Non-reentrant checkpointing, so gradients reach LoRA adapters even though the frozen
    embeddings' outputs do not require grad. In training mode transformers then drops every
    KV cache inside the layers (`GradientCheckpointingLayer`): code that runs a shared prompt
    prefix once and reuses its cache (training.sft's share_prefix) must turn that off.
    """
    if enabled:
        # config.use_cache stays as it is: it is saved with the checkpoint, and export needs caches.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def is_lora(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def merge_lora(model: Any) -> Any:
    """The plain transformers model with the adapters folded into its weights (`model` itself without LoRA).

    peft's `merge_and_unload` rewrites the base layers in place: the PeftModel is spent afterwards.
    """
    if not is_lora(model):
        return model
    return model.merge_and_unload()


def save_checkpoint_merged(model: Any, tokenizer: Any, out: Path) -> Any:
    """Save `model` (adapters merged) and `tokenizer` as a plain HF folder; returns the merged model.

    The folder holds no adapter files: export, serving and `from_pretrained` read it like any
    checkpoint. Add afrl.json with `training.context.save_checkpoint(None, out, ...)`.
    """
    merged = merge_lora(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return merged
