"""A compact vocabulary while training: the embedding keeps only the rows of tokens that occur.

A from-scratch Qwen3 carries the real 151,936-row tied embedding table, but
the relevance world only ever uses about a thousand tokens. Every SFT step
still pays for the whole table: the embedding backward allocates a dense
(V, H) gradient, gradient clipping reads it, and AdamW updates V x H values
and two moment tensors. Training on a table restricted to the tokens that
occur removes that cost (36% of a default-preset step, measured side by
side: 1.56x the steps per minute) and changes nothing else. The SFT loop
does it on its own (`SFTConfig.compact_vocab`, on by default): its trainer,
`training.sft.SFTTrainer`, shrinks to the tokens of what it trains on and
scatters back when it returns, or raises. By hand it reads:

    vocab = CompactVocab.for_training(ctx, model, train, dev, test)  # + pad, eos, label tokens
    with vocab.compacted(model):            # shrink now; scatter back into the full table on exit
        train_sft(model, vocab.encode(train), vocab.labels(ctx.labels), full_table_config,
                  vocab.id(ctx.pad_id), vocab=vocab.ids_to_compact(ctx.vocab(train)))
    model.save_pretrained(folder)           # the real vocabulary: export and serving are unchanged

Why it is the same model. The remap is monotone (compact id i is the i-th
smallest kept id), so sorted id sets stay sorted and every lookup returns the
row it returned before. With the SFT loop's default restricted softmax
(`SFTConfig.restrict_vocab`, over the completion vocabulary) the full-table
loss never reads a row outside the kept set: such a row gets a zero
gradient, zero AdamW moments, hence a zero update, and no weight decay
(embeddings sit in the loop's no-decay group); gradient clipping's norm
gets nothing from zeros. The compact run therefore optimises the same
function of the same parameters: on the default preset the two runs' losses
and weights came out bit-identical (bench/train_compact_vocab.py speed).
An untied head (not the tiny Qwen3's) is the exception: the loop decays
`lm_head.weight`, so its unseen rows shrink in the full table and stay put
in the compact one. With a full-vocabulary softmax it is not the same
objective: the full table's normaliser also sums the unseen rows' logits
(and pushes them down), the compact one runs over the kept tokens only.
A softmax over the tokens that can occur is a reasonable objective, but it
is a different one, and the loss values differ (about ln 151,936 vs ln C at
initialisation).

Which ids to keep, and why no margin. Every token the model reads or
predicts while compacted: prompts and completions of what it trains on, and
of any split it is evaluated on in that state (evaluation after the block,
on the full table, needs nothing), plus the pad, end-of-turn and label
tokens. A random margin of extra rows would buy nothing: a row that no
training text uses learns nothing in either table. What a margin cannot fix
is text that appears later (synthesised examples, an endpoint teacher's
outputs): build the vocabulary from every text known before shrinking, or
leave such a stage on the full table; `ids_to_compact` refuses an unknown id
with a one-line error rather than reading a wrong row.

Rows never seen, at save time. `expand` writes the trained rows back into
the table the model had before `shrink` (the from-scratch init, or a
pretrained model's rows). Serving reads only the label rows of the head, all
of which are kept, so the output side never needs an unseen row; the input
side does when a document contains a token no training row had. What such a
row holds is the `unseen` policy, applied to every row that training left as
it was (padding row excluded):

    "init"  (default) the row as it was before `shrink`: exactly what full-table
            training leaves there, so the checkpoint is the full-table run's
            bit for bit; the only right choice for a pretrained model.
    "zero"  for a from-scratch model: the token embeds as a zero vector and
            gets logit 0. On the default recipe (1,250 compact steps), test
            documents with five unseen words inserted: init 0.522, zero 0.537
            (62 examples won, 33 lost against init, sign test p = 0.004);
            clean test 0.640 and explanation format validity 1.0 for both.
    "mean"  the mean of the rows training changed: 0.528 (68 won, 56 lost,
            p = 0.32: no better than init).

(`python -m bench.train_compact_vocab unseen CHECKPOINT`.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from afrl.labels import LabelSet
from training.sft_data import SFTSequence

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from training.context import TrainingContext

log = logging.getLogger(__name__)

UNSEEN_POLICIES = ("init", "mean", "zero")
S = TypeVar("S", bound=SFTSequence)
_SPECIAL_CONFIG_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclass
class FullTable:
    """What `CompactVocab.shrink` replaced, kept so that `expand` can restore the real vocabulary."""

    input_weight: torch.Tensor  # (V, H) the embedding rows before training
    output_weight: torch.Tensor | None  # (V, H) an untied head's rows; None when the head is tied
    padding_idx: int | None
    vocab_size: int
    special_ids: dict[str, dict[str, object]] = field(default_factory=dict)  # config / generation_config ids


@dataclass(frozen=True)
class CompactVocab:
    """A monotone remap from the ids that occur (`kept`, sorted) to 0..C-1, and back."""

    kept: torch.Tensor  # (C,) sorted distinct full ids; compact id i <-> full id kept[i]
    full_size: int

    def __post_init__(self) -> None:
        kept = self.kept
        if kept.ndim != 1 or kept.numel() == 0:
            raise ValueError("a compact vocabulary needs at least one token id")
        if not bool((kept[1:] > kept[:-1]).all()):
            raise ValueError("kept ids must be sorted and distinct")
        if int(kept[0]) < 0 or int(kept[-1]) >= self.full_size:
            raise ValueError(f"kept ids must lie in [0, {self.full_size}), got {int(kept[0])}..{int(kept[-1])}")

    @classmethod
    def from_ids(cls, ids: Iterable[int], full_size: int) -> CompactVocab:
        return cls(torch.tensor(sorted({int(i) for i in ids}), dtype=torch.long), full_size)

    @classmethod
    def from_sequences(
        cls, *sequence_lists: Sequence[SFTSequence], special_ids: Iterable[int] = (), full_size: int
    ) -> CompactVocab:
        """Every prompt and completion token of the given lists, plus `special_ids` (pad, eos, labels)."""
        ids = set(special_ids)
        for sequences in sequence_lists:
            for s in sequences:
                ids.update(s.prompt_ids)
                ids.update(s.completion_ids)
        vocab = cls.from_ids(ids, full_size)
        log.info("compact vocabulary: %d of %d rows", len(vocab), full_size)
        return vocab

    @classmethod
    def for_training(
        cls, ctx: TrainingContext, model: PreTrainedModel, *sequence_lists: Sequence[SFTSequence]
    ) -> CompactVocab:
        """The tokens of `sequence_lists` plus the context's pad, end-of-turn and label tokens, for `model`'s table."""
        return cls.from_sequences(
            *sequence_lists,
            special_ids=[ctx.pad_id, ctx.eos_id, *ctx.labels.token_ids],
            full_size=embedding_and_head(model)[0].num_embeddings,
        )

    def __len__(self) -> int:
        return self.kept.numel()

    @cached_property
    def _lookup(self) -> torch.Tensor:
        """(V,) full id -> compact id, -1 for ids that are not kept."""
        table = torch.full((self.full_size,), -1, dtype=torch.long)
        table[self.kept] = torch.arange(len(self), dtype=torch.long)
        return table

    def ids_to_compact(self, ids: torch.Tensor) -> torch.Tensor:
        """Full ids (any shape) -> compact ids; an id outside the vocabulary is an error, never a wrong row."""
        flat = ids.reshape(-1).cpu()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.full_size):
            raise ValueError(f"token ids outside [0, {self.full_size}): {flat.min().item()}..{flat.max().item()}")
        out = self._lookup[flat]
        missing = flat[out < 0].unique()
        if missing.numel():
            raise ValueError(
                f"{missing.numel()} token ids are not in the compact vocabulary (first: {missing[:5].tolist()}); "
                "build it from every text the model sees while compacted"
            )
        return out.reshape(ids.shape).to(ids.device)

    def widened(self, ids: Iterable[int]) -> CompactVocab:
        """This vocabulary plus `ids` (itself when they are all kept already)."""
        kept = set(self.kept.tolist())
        extra = {int(i) for i in ids} - kept
        return self if not extra else CompactVocab.from_ids(kept | extra, self.full_size)

    def rows_into(self, wider: CompactVocab, rows: torch.Tensor) -> torch.Tensor:
        """(C, ...) rows of this vocabulary placed at their ids in `wider` (C', ...); the other rows are zero.

        How AdamW moments follow a table that grows: a token new to training starts with zero moments,
        as it has them in a full-table run where it never had a gradient before.
        """
        if rows.shape[0] != len(self):
            raise ValueError(f"rows has {rows.shape[0]} rows, this vocabulary {len(self)}")
        out = rows.new_zeros((len(wider), *rows.shape[1:]))
        out[wider.ids_to_compact(self.kept).to(rows.device)] = rows
        return out

    def ids_to_full(self, ids: torch.Tensor) -> torch.Tensor:
        """Compact ids (any shape) -> full ids."""
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self)):
            raise ValueError(f"compact ids must lie in [0, {len(self)})")
        return self.kept.to(ids.device)[ids]

    def id(self, full_id: int) -> int:
        """One full id -> its compact id (pad, eos)."""
        return int(self.ids_to_compact(torch.tensor([full_id]))[0])

    def encode(self, sequences: Sequence[S]) -> list[S]:
        """The same sequences in compact ids (subclasses keep their other fields: a KDSequence its label_probs)."""
        lookup = self._lookup
        out = []
        for s in sequences:
            prompt, completion = lookup[s.prompt_ids], lookup[s.completion_ids]
            if bool((prompt < 0).any()) or bool((completion < 0).any()):
                self.ids_to_compact(torch.tensor(s.prompt_ids + s.completion_ids))  # raises with the ids
            out.append(replace(s, prompt_ids=prompt.tolist(), completion_ids=completion.tolist()))
        return out

    def labels(self, labels: LabelSet) -> LabelSet:
        """The label set with compact token ids (for code that reads label rows of the compact head)."""
        return labels.model_copy(update={"token_ids": self.ids_to_compact(torch.tensor(labels.token_ids)).tolist()})

    def shrink(self, model: PreTrainedModel, weight: nn.Parameter | None = None) -> FullTable:
        """Replace the model's embedding (and head) by the kept rows, in place; returns what `expand` needs.

        Build the optimizer after this call: it must hold the compact parameters. weight: a (C, H)
        Parameter from an earlier shrink with this vocabulary (tied head only) that receives the kept
        rows and becomes the embedding again, so that an optimizer holding it (its AdamW state is keyed
        on the Parameter object) carries on across shrink / expand cycles (`training.sft.SFTTrainer`).
        """
        emb, head = embedding_and_head(model)
        if emb.num_embeddings != self.full_size:
            raise ValueError(
                f"the model has {emb.num_embeddings} embedding rows; this vocabulary maps {self.full_size}"
            )
        if emb.padding_idx is not None and not bool((self.kept == emb.padding_idx).any()):
            raise ValueError(
                f"the padding id {emb.padding_idx} is not in the compact vocabulary; add it to special_ids"
            )
        tied = head is not None and head.weight is emb.weight
        kept = self.kept.to(emb.weight.device)
        table = FullTable(
            input_weight=emb.weight.detach(),
            output_weight=None if head is None or tied else head.weight.detach(),
            padding_idx=emb.padding_idx,
            vocab_size=int(model.config.vocab_size),
        )
        pad = None if emb.padding_idx is None else self.id(emb.padding_idx)
        compact = nn.Embedding.from_pretrained(emb.weight.detach()[kept], freeze=False, padding_idx=pad)
        if weight is not None:
            if not tied or weight.shape != compact.weight.shape:
                raise ValueError(
                    f"weight must be a {tuple(compact.weight.shape)} Parameter of a tied table, "
                    f"got {tuple(weight.shape)} ({'tied' if tied else 'untied'} head)"
                )
            with torch.no_grad():
                weight.copy_(compact.weight)
            compact.weight = weight
        model.set_input_embeddings(compact)
        if head is not None:
            head.weight = compact.weight if tied else nn.Parameter(head.weight.detach()[kept].clone())
            head.out_features = len(self)
        model.config.vocab_size = len(self)
        table.special_ids = _remap_special_ids(model, self.id)
        return table

    def expand(self, model: PreTrainedModel, table: FullTable, unseen: str = "init") -> None:
        """Scatter the compact rows back into a full-size table, in place (the model saves the real vocabulary).

        unseen: "init" keeps the rows the table had before `shrink`; "mean" sets every row that training
        did not change (padding row excluded) to the mean of the rows it did change; "zero" sets them to 0.
        """
        if unseen not in UNSEEN_POLICIES:
            raise ValueError(f"unseen must be one of {UNSEEN_POLICIES}, got {unseen!r}")
        emb, head = embedding_and_head(model)
        if emb.num_embeddings != len(self):
            raise ValueError(f"the model has {emb.num_embeddings} embedding rows, not this vocabulary's {len(self)}")
        tied = head is not None and head.weight is emb.weight
        rows = self._scatter(emb.weight, table.input_weight, unseen, table.padding_idx)
        full = nn.Embedding.from_pretrained(rows, freeze=False, padding_idx=table.padding_idx)
        model.set_input_embeddings(full)
        if head is not None:
            if tied:
                head.weight = full.weight
            else:
                if table.output_weight is None:
                    raise ValueError("the head was tied when the model was shrunk and is untied now")
                head.weight = nn.Parameter(self._scatter(head.weight, table.output_weight, unseen, None))
            head.out_features = self.full_size
        model.config.vocab_size = table.vocab_size
        for holder_name, ids in table.special_ids.items():
            holder = getattr(model, holder_name)
            for key, value in ids.items():
                setattr(holder, key, value)

    @contextmanager
    def compacted(self, model: PreTrainedModel, unseen: str = "init") -> Iterator[CompactVocab]:
        """Shrink `model` for the duration of the block; the full table is back afterwards, even on error."""
        table = self.shrink(model)
        try:
            yield self
        finally:
            self.expand(model, table, unseen)

    # helpers ---------------------------------------------------------------

    def _scatter(
        self, compact: torch.Tensor, before: torch.Tensor, unseen: str, padding_idx: int | None = None
    ) -> torch.Tensor:
        """(C, H) trained rows into a copy of the (V, H) rows the table had before shrinking.

        "mean" / "zero": every row that training left as it was (not kept, or kept but in no training
        batch, such as a token only the test split has) gets the mean of the rows that training changed / 0.
        """
        kept = self.kept.to(compact.device)
        trained = compact.detach()
        full = before.detach().clone().to(device=compact.device, dtype=compact.dtype)
        changed = torch.zeros(full.shape[0], dtype=torch.bool, device=full.device)
        changed[kept] = (trained != full[kept]).any(dim=-1)
        full[kept] = trained
        if unseen != "init" and bool(changed.any()):
            untouched = ~changed
            if padding_idx is not None:
                untouched[padding_idx] = False  # the padding row stays as the embedding keeps it (zero)
            full[untouched] = full[changed].mean(dim=0) if unseen == "mean" else 0.0
        return full


def _remap_special_ids(model: PreTrainedModel, remap: Callable[[int], int]) -> dict[str, dict[str, object]]:
    """Point the config's (and generation config's) bos/eos/pad ids at compact ids; returns the old values.

    Generation reads them (eos stops a rollout), so they must speak the compact ids while compacted.
    An id outside the vocabulary becomes None (it can never be produced by the compact head).
    """
    saved: dict[str, dict[str, object]] = {}
    for holder_name in ("config", "generation_config"):
        holder = getattr(model, holder_name, None)
        if holder is None:
            continue
        saved[holder_name] = {}
        for key in _SPECIAL_CONFIG_IDS:
            value = getattr(holder, key, None)
            if value is None:
                continue
            saved[holder_name][key] = value
            setattr(holder, key, _remap_value(value, remap))
    return saved


def embedding_and_head(model: PreTrainedModel) -> tuple[nn.Embedding, nn.Linear | None]:
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if not isinstance(emb, nn.Embedding):
        raise ValueError(f"{type(model).__name__}'s input embeddings are a {type(emb).__name__}, not nn.Embedding")
    if head is not None and not (isinstance(head, nn.Linear) and head.bias is None):
        raise ValueError(f"{type(model).__name__}'s LM head is not a bias-free nn.Linear (Qwen3's and Llama's are)")
    return emb, head


def _remap_value(value: object, remap: Callable[[int], int]) -> object:
    if isinstance(value, list):
        return [v for v in (_remap_value(x, remap) for x in value) if v is not None]
    if not isinstance(value, int):
        return value
    try:
        return remap(value)
    except ValueError:
        return None
