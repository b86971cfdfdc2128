"""modbench's own presets: ``smoke`` (minutes on a laptop CPU) and ``paper`` (200 epochs).

``paper`` trains the BN CNNs as the MwT/NeMo authors do (SGD Nesterov lr 0.05, cosine, 200 epochs,
batch 128, no weight decay), the published no-BN CNNs with CNNSplitter's recipe (SGD lr 0.01,
weight decay 1e-4, x0.1 at 30% and 60% of training), and ViTs with their usual recipe (AdamW,
warm-up, weight decay), since SGD at lr 0.05 leaves a small ViT at chance (DESIGN, "Training
recipes"). ``smoke`` still learns ``digits``. The ``reference`` preset reproduces the authors'
scripts instead; README, "Deviations from the authors' code", says where and why the two differ.
Weight decay never applies to mask generators, biases or normalisation weights
(``bench.modular.groups``).
"""

from __future__ import annotations

from bench.grid.presets.base import FamilyPreset
from bench.protocol.recipe import Recipe

# fine-tuning of reused ViT modules (and of the smoke no-BN CNNs): AdamW with the training decay
VIT_FINETUNE = {"finetune_optimizer": "adamw", "finetune_lr": 5e-4, "finetune_weight_decay": 0.05}
SMOKE_SIZES = {"activity_samples": 128}

PAPER = FamilyPreset(
    "200 epochs: the authors' CNN recipes, AdamW with warm-up for ViTs",
    {
        "cnn": Recipe(epochs=200),
        "cnn_nobn": Recipe(epochs=200, lr=0.01, weight_decay=1e-4, nesterov=False, schedule="step",
                           finetune_lr=0.01, finetune_weight_decay=1e-4),
        "vit": Recipe(epochs=200, optimizer="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=10, **VIT_FINETUNE),
    },
)

SMOKE = FamilyPreset(
    "minutes on a laptop CPU; still learns digits",
    {
        "cnn": Recipe(epochs=8, batch_size=64, **SMOKE_SIZES),
        "cnn_nobn": Recipe(epochs=12, batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=1e-4,
                           schedule="onecycle", finetune_optimizer="adamw", finetune_lr=5e-4,
                           finetune_weight_decay=1e-4, **SMOKE_SIZES),
        "vit": Recipe(epochs=15, batch_size=32, optimizer="adamw", lr=1e-3, weight_decay=0.05,
                      schedule="onecycle", **VIT_FINETUNE, **SMOKE_SIZES),
    },
    # CNNSplitter's search scaled down so a width-0.25 SimCNN on digits searches in about a minute on a
    # laptop CPU (the paper: population 100, 200 generations, 50 parents, 20 elites)
    {"cnnsplitter": {"population": 16, "generations": 6, "parents": 8, "elites": 4, "beam_min": 16,
                     "active_min": 0.5, "active_max": 0.8},
     # GradSplitter's and SeaM's searches scaled down the same way (the authors: 5 head epochs + 20 cycles of
     # 5 mask and 2 head epochs; 300 SeaM epochs); the mask learning rates rise to make up for the steps
     # a few epochs of digits lack (see the README's deviations)
     "gradsplitter": {"head_epochs": 1, "cycles": 1, "cycle_masks": 3, "cycle_heads": 1, "lr_mask": 0.1},
     "seam": {"epochs": 20}},
)
