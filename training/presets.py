"""Named configs: the `--preset` of every `afrl train` command.

    ci        the full method at the smallest size that exercises every stage (under 3 minutes)
    tiny      the full method in miniature, with the SFT / GRPO / mode-balanced comparison (under 15 minutes)
    default   the embedded default model: SFT only (a few minutes on 2 cores)

A preset is a `PipelineConfig`: the generated world's size, the model, and
each stage's config. `afrl train pipeline` runs it whole; the stage commands
(`afrl train sft|rl|distill`) take their stage's config from it
(`sft_stage_config`, `rl_stage_config`, `distill_stage_config`) and
override it with `--config FILE` and flags (`training.configs`).

`recipe(name)` fingerprints a preset with `RECIPE_VERSION` (afrl.recipe):
the embedded default model's cache is keyed by `recipe("default")`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from afrl.recipe import Recipe, make_recipe
from training.curriculum import CurriculumConfig, StageConfig, default_stages
from training.distill import DistillConfig
from training.evolution import EvolutionConfig
from training.model_factory import TinyQwen3Spec
from training.rl import RLConfig
from training.sft import SFTConfig


@dataclass
class MethodConfig:
    teacher: TinyQwen3Spec = field(default_factory=TinyQwen3Spec, metadata={"help": "teacher architecture"})
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig, metadata={"help": "SFT stages"})
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig, metadata={"help": "instruction evolution"})
    rl: RLConfig = field(default_factory=RLConfig, metadata={"help": "the mode-balanced RL stage"})
    compare: bool = field(default=True, metadata={"help": "also run SFT alone and GRPO alone at the same budget"})
    distill: DistillConfig = field(default_factory=DistillConfig, metadata={"help": "teacher -> student"})
    probe_train_examples: int = field(default=2000, metadata={"help": "train examples added to dev for the probe"})
    explain_examples: int = field(default=200, metadata={"help": "test examples whose explanation is generated"})
    latency_queries: int = field(default=20, metadata={"help": "queries of 10 documents timed per model"})

    def __post_init__(self) -> None:
        if not any("evolved" in s.mix for s in self.curriculum.stages) and self.evolution.rounds:
            raise ValueError(
                "evolution rounds need a curriculum stage whose mix draws from 'evolved'; "
                "add one or set evolution.rounds=0"
            )
        if self.rl.lam == 0 and (self.rl.lam_final or 0) == 0:
            raise ValueError(
                "the method's RL stage is the mode-balanced one: set rl.lam > 0 "
                "(the lambda = 0 arm runs when compare is on)"
            )


@dataclass
class PipelineConfig:
    name: str = field(
        default="afrl-tiny-qwen3", metadata={"help": "model name (the checkpoint folder, shown by the server)"}
    )
    world_seed: int = field(default=0, metadata={"help": "seed of the generated world"})
    n_queries: int = field(default=2000, metadata={"help": "queries in the world (all splits)"})
    docs_per_query: int = field(default=10, metadata={"help": "candidate documents per query"})
    model: TinyQwen3Spec = field(default_factory=TinyQwen3Spec, metadata={"help": "the model (SFT only)"})
    sft: SFTConfig = field(default_factory=SFTConfig, metadata={"help": "SFT (SFT only)"})
    export_dtype: str = field(default="fp32", metadata={"help": "score graph dtype: fp32 or int8"})
    export_validation_pairs: int = field(
        default=30, metadata={"help": "dev pairs the export checks against torch (grouped by query)"}
    )
    eval_examples: int | None = field(default=None, metadata={"help": "cap on test examples evaluated (None = all)"})
    threads: int = field(default=2, metadata={"help": "torch intra-op threads"})
    method: MethodConfig | None = field(default=None, metadata={"help": "the full method (None: SFT only)"})
    long_tail_repeats: int = field(
        default=1,
        metadata={"help": "SFT only: each long-tail training row appears this many times in the rows SFT draws from"},
    )
    fresh_examples: int = field(
        default=0,
        metadata={
            "help": "SFT only, generated world: this many more examples from a fresh stream of the world "
            "(queries no split holds), each once, so long runs see new rows instead of repeated epochs"
        },
    )

    def __post_init__(self) -> None:
        if self.export_dtype not in ("fp32", "int8"):
            raise ValueError(f"export_dtype must be fp32 or int8, got {self.export_dtype!r}")
        if self.export_validation_pairs < 1:
            raise ValueError(f"export_validation_pairs must be >= 1, got {self.export_validation_pairs}; try 30")
        if self.long_tail_repeats < 1:
            raise ValueError(f"long_tail_repeats must be >= 1 (1 = each row once), got {self.long_tail_repeats}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.fresh_examples < 0:
            raise ValueError(f"fresh_examples must be >= 0, got {self.fresh_examples}")

    @property
    def explain_examples(self) -> int:
        return self.method.explain_examples if self.method else 0

    def start_spec(self) -> TinyQwen3Spec:
        """The architecture a run starts from without `--base`: the method's teacher, or the SFT-only model."""
        return self.method.teacher if self.method else self.model

    def sft_stage_config(self) -> CurriculumConfig:
        """`afrl train sft`: the curriculum stages that need no evolution, or one stage over all the data."""
        if self.method is None:
            return CurriculumConfig(stages=[StageConfig("all", {"all": 1.0}, self.sft.steps)], sft=self.sft)
        curriculum = self.method.curriculum
        return replace(curriculum, stages=[s for s in curriculum.stages if "evolved" not in s.mix])

    def rl_stage_config(self) -> RLConfig:
        return self.method.rl if self.method else RLConfig()

    def distill_stage_config(self) -> DistillConfig:
        return self.method.distill if self.method else DistillConfig()


# Part of every preset's recipe fingerprint. Bump it when training or export code changes what a
# preset builds while its config stays the same (a new loss term, another data generator, a fixed
# bug): the cached default model is keyed by the fingerprint, so a bump rebuilds it on the next start.
RECIPE_VERSION = 1

PRESETS: dict[str, PipelineConfig] = {
    # The full method at the smallest size that exercises every stage (the end-to-end tests run it).
    # One torch thread for the method presets: on the shared 2-core box, two threads made small
    # steps 2-10x slower whenever other jobs ran (measured; see training/rollout.py).
    "ci": PipelineConfig(
        name="afrl-ci-tiny-qwen3",
        n_queries=300,
        docs_per_query=6,
        eval_examples=200,
        threads=1,
        export_validation_pairs=64,
        method=MethodConfig(
            teacher=TinyQwen3Spec(hidden_size=64, intermediate_size=128, num_hidden_layers=2),
            curriculum=CurriculumConfig(
                stages=default_stages(20, 10, 10), sft=SFTConfig(steps=40, batch_size=8, warmup_steps=5, log_every=10)
            ),
            evolution=EvolutionConfig(
                rounds=1, target_rules=2, variants_per_rule=20, min_support=3, guideline_rounds=1, guideline_steps=10
            ),
            rl=RLConfig(
                steps=3, prompts_per_step=4, group_size=4, lam=0.5, expert_batch_size=4, max_new_tokens=60, log_every=1
            ),
            distill=DistillConfig(
                student=TinyQwen3Spec(
                    hidden_size=32,
                    intermediate_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    num_key_value_heads=1,
                ),
                sft=SFTConfig(steps=20, batch_size=8, warmup_steps=3, log_every=10),
                train_prompts=48,
                max_new_tokens=60,
                keep_unfinished=True,
            ),
            probe_train_examples=200,
            explain_examples=8,
            latency_queries=3,
        ),
    ),
    # The full method in miniature: curriculum, two evolution rounds, the SFT / GRPO / mode-balanced
    # comparison at 40 steps each, and the distilled student, on 2 CPU cores in under 15 minutes.
    # RL learning rate 2e-4: at 5e-4 both RL arms collapsed onto grades 1 and 3 within 40 steps.
    "tiny": PipelineConfig(
        name="afrl-tiny-student-qwen3",
        n_queries=1500,
        docs_per_query=8,
        threads=1,
        export_validation_pairs=64,
        method=MethodConfig(
            teacher=TinyQwen3Spec(),
            curriculum=CurriculumConfig(
                stages=default_stages(300, 100, 100),
                sft=SFTConfig(
                    steps=400, batch_size=16, learning_rate=4e-3, grade_weight=8.0, warmup_steps=20, log_every=50
                ),
            ),
            evolution=EvolutionConfig(
                rounds=2, target_rules=4, variants_per_rule=100, min_support=8, guideline_rounds=2, guideline_steps=20
            ),
            rl=RLConfig(
                steps=40,
                prompts_per_step=6,
                group_size=4,
                learning_rate=2e-4,
                lam=0.5,
                expert_batch_size=8,
                max_new_tokens=100,
            ),
            distill=DistillConfig(
                sft=SFTConfig(
                    steps=300, batch_size=16, learning_rate=4e-3, grade_weight=8.0, warmup_steps=20, log_every=50
                ),
                train_prompts=1200,
                extra_prompts=300,
                max_new_tokens=110,
            ),
            probe_train_examples=800,
            explain_examples=100,
            latency_queries=10,
        ),
    ),
    # The embedded default model: SFT on the compact vocabulary, bfloat16 autocast where the CPU has native
    # bf16 dot products (`precision="auto"`), the long-tail rows three times (at 1,400 steps the long-tail
    # slice fell to 0.34-0.38 over two seeds with each row once; 0.50 with three copies). Wide and shallow:
    # at 1,500 steps 256 x 2 layers scored 0.678 against 0.633 for 256 x 3, 0.641 for 384 x 2 and 0.633 for
    # 128 x 4 (one seed each). It must build within a first start's 5 minutes on 2 cores: 1,800 steps, the
    # SFT time 1,400 steps took before SFT trained with eager attention (training/attention.py; 1,400 steps
    # scored 0.6395, long tail 0.508; 1,800: 0.6635, 0.639, one seed); with steps=16_000 and
    # fresh_examples=200_000 (53 minutes) the same recipe scored 0.736 (long tail 0.760).
    "default": PipelineConfig(
        name="afrl-default-tiny-qwen3",
        model=TinyQwen3Spec(hidden_size=256, intermediate_size=768, num_hidden_layers=2),
        long_tail_repeats=3,
        sft=SFTConfig(
            steps=1800,
            batch_size=16,
            learning_rate=6e-3,
            grade_weight=8.0,
            warmup_steps=60,
            log_every=50,
            precision="auto",
        ),
    ),
}


def preset(name: str, **overrides) -> PipelineConfig:
    """A copy of the named preset with some top-level fields replaced (validated)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def recipe(name: str) -> Recipe:
    """What building preset `name` depends on, fingerprinted: its config (as it is now) and RECIPE_VERSION."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return make_recipe(name, asdict(PRESETS[name]), RECIPE_VERSION)
