"""The one request every compared path scores: 1 query x N documents in the artifact's own prompt template.

The query and documents come from the generated world (bench.world_requests).
The guideline is the artifact's, cut at a word boundary to at most
`guideline_tokens` tokens (timing depends on token counts, not on the words;
a shorter guideline is kept whole). Every path tokenizes through the same
`PromptEncoder` over the artifact's tokenizer.json, so all of them see the
same token ids; the torch and optimum paths get the full prompts left-padded
into one batch, the engine paths the texts (they tokenize and batch as the
service does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from afrl.manifest import load_manifest
from afrl.padding import left_pad
from afrl.prompt import PromptEncoder, PromptTemplate, sha256_text


@dataclass(frozen=True)
class CompareInputs:
    query: str
    documents: list[str]
    template: PromptTemplate  # the artifact's, guideline cut
    encoder: PromptEncoder
    label_token_ids: list[int]
    label_values: list[int]
    pad_id: int

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize the full prompts and left-pad them: (B, T) input ids and attention mask."""
        return left_pad([p.input_ids for p in self.encoder.encode(self.query, self.documents)], self.pad_id)

    def token_counts(self) -> dict[str, float]:
        pairs = self.encoder.encode(self.query, self.documents)
        ids, _ = self.batch()
        return {
            "guideline_tokens": len(
                self.encoder.tokenizer.encode(self.template.guideline, add_special_tokens=False).ids
            ),
            "prefix_tokens": len(pairs[0].prefix_ids),  # guideline + query in the chat template
            "document_tokens_mean": round(float(np.mean([len(p.document_ids) for p in pairs])), 1),
            "prompt_tokens": sum(len(p.input_ids) for p in pairs),
            "padded_batch_tokens": int(ids.size),
        }


def cut_guideline(template: PromptTemplate, tokenizer, max_tokens: int) -> PromptTemplate:
    """`template` with its guideline cut at a word boundary to at most `max_tokens` tokens."""
    words = template.guideline.split(" ")
    while len(words) > 1 and len(tokenizer.encode(" ".join(words), add_special_tokens=False).ids) > max_tokens:
        words.pop()
    guideline = " ".join(words)
    return template.model_copy(
        update={
            "guideline": guideline,
            "guideline_sha256": sha256_text(guideline),
            "prefix": template.prefix.replace(template.guideline, guideline),
        }
    )


def build_inputs(artifact: Path, query: str, documents: list[str], guideline_tokens: int) -> CompareInputs:
    from tokenizers import Tokenizer

    from service.artifact_loader import PAD_TOKEN, TOKENIZER_FILE

    manifest = load_manifest(artifact, verify_hashes=False)
    tokenizer = Tokenizer.from_file(str(artifact / TOKENIZER_FILE))
    template = cut_guideline(manifest.prompt, tokenizer, guideline_tokens)
    return CompareInputs(
        query=query,
        documents=list(documents),
        template=template,
        encoder=PromptEncoder(template, tokenizer),
        label_token_ids=list(manifest.labels.token_ids),
        label_values=list(manifest.labels.values),
        pad_id=tokenizer.token_to_id(PAD_TOKEN) or 0,
    )
