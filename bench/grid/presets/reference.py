"""The ``reference`` preset: the authors' published scripts, value for value.

Sources, read as facts: MwT = github.com/qibinhang/MwT at 3d29e7e, NeMo =
github.com/XiaohanBi-Hub/NeMo at 519257d (paths under ``src/``), MODA =
github.com/dnn-modularization/MODA at b725313 (paths from its root), GradSplitter and SeaM at the
commits named below; every value below names the file it comes from. Where the authors' code has a
plain bug (the DeiT-S module built with 12 heads instead of the 6 it was trained with) modbench
keeps the correct behaviour; README, "Deviations from the authors' code", lists that and every
other difference from modbench's own presets.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.grid.presets.modbench import PAPER
from bench.models.spec import ModelSpec
from bench.protocol.recipe import Recipe

STANDARD = "standard"

# Every trainer of both repositories: SGD(lr=0.05, momentum=0.9, nesterov=True), no weight decay,
# CosineAnnealingLR(T_max=epochs) stepped per epoch, batch 128, mask generators at lr_mask = lr_model
# (MwT standard_trainer.py, modular_trainer.py; NeMo standard_trainer.py, standard_trainer_vit.py,
# modular_trainer_contra.py, modular_trainer_Neur.py, modular_trainer_Neur_contra.py and the
# script_train*.py that run them with --lr_model 0.05 --lr_mask 0.05 --batch_size 128).
AUTHORS_TRAINING: dict[str, Any] = {"batch_size": 128, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                    "nesterov": True, "weight_decay": 0.0, "schedule": "cosine", "warmup_epochs": 0}

# Module statistics come from the training loader as it is, augmented, over every training image:
# generate_masks_for_samples(model, train_loader) in MwT modularizer.py and NeMo modularizer.py,
# modularizer_contra.py, modularizer_vit.py, modularizer_deit.py.
AUTHORS_ACTIVITY: dict[str, Any] = {"activity_split": "train_full", "activity_augment": True}

# Epochs per (model kind, role); a role is 'standard' (the baseline) or 'modular' (mwt, nemo).
EPOCHS = {
    ("cnn", "standard"): 200,  # MwT and NeMo standard_trainer.py: --num_epochs default 200
    ("cnn", "modular"): 200,  # MwT modular_trainer.py --n_epochs 200; NeMo script_trainContra.py, script_trainMwT.py
    ("vit_s", "standard"): 50,  # NeMo standard_trainer_vit.py: --num_epochs default 50
    ("vit_s", "modular"): 200,  # NeMo script_trainNeurContra.py, script_trainNeur.py: --n_epochs 200
    # the DeiT-S baseline's training is not published (modularizer_deit.py loads deit_small_distilled.pth):
    # it trains like the ViT-S baseline
    ("deit_s", "standard"): 50,
    ("deit_s", "modular"): 200,  # NeMo script_trainNeurContra.py, script_trainNeur.py (model = "deit_s")
}

# Fine-tuning of a reused module, per model kind. CNNs: fine_tune_module in MwT modularizer.py and
# NeMo modularizer.py, modularizer_contra.py:
CNN_FINETUNING: dict[str, Any] = {
    "finetune_epochs": 10,  # num_epoch=10
    "finetune_optimizer": "sgd",  # SGD(lr=lr_model, momentum=0.9, nesterov=True)
    "finetune_lr": 0.05,  # lr_model = 0.05 (script_modularizer*.py)
    "finetune_weight_decay": 0.0,
    "finetune_horizon": 2.0,  # CosineAnnealingLR(T_max=num_epoch * 2)
}
FINETUNING = {
    "cnn": CNN_FINETUNING,
    "vit_s": CNN_FINETUNING,  # NeMo modularizer_vit.py fine_tune_module: the same optimizer and schedule
    "deit_s": {  # NeMo modularizer_deit.py fine_tune_module:
        "finetune_epochs": 10,  # num_epoch=10
        "finetune_optimizer": "adamw",  # AdamW(lr=5e-4, weight_decay=0.05)
        "finetune_lr": 5e-4,
        "finetune_weight_decay": 0.05,
        "finetune_horizon": 1.0,  # CosineAnnealingLR(T_max=num_epoch)
    },
}

# Training augmentation, when it differs from the data set's own: both repositories' dataset_loader.py
# load_svhn crop (padding 4) and flip SVHN, as CIFAR.
AUGMENT = {"svhn": "crop_flip"}

# Method hyperparameters, keyed (model, data set); None matches any.
NEMO_ALPHA = {
    ("vit_s", None): 0.06,  # NeMo script_modularizer_vit.py: alpha_list [0.06, 0.15] (CIFAR-10), the first
    ("deit_s", None): 0.08,  # NeMo script_trainNeurContra.py: alpha_list [0.08] (SVHN)
    ("resnet18", None): 1.1,  # NeMo script_trainContra.py: alpha_list [1.1] (SVHN)
    ("simcnn", None): 1.3,  # NeMo script_modularizer_contra.py: alpha 1.3 (CIFAR-10)
}  # other models: NeMo's documented default (methods/nemo.py)
NEMO_TAU = 0.2  # every NeMo script: temperature 0.2
MWT_ALPHA = 0.5  # MwT README.md, modular_trainer.py --alpha 0.5; NeMo script_trainMwT.py, script_trainNeur.py
MWT_BETA = {
    ("simcnn", "svhn"): 1.9,  # NeMo script_trainMwT.py: beta_list [1.9] (SimCNN, SVHN)
    ("vit_s", None): 0.85,  # NeMo modules_arch/vit_module_HF.py: the ViT-S MwT checkpoint it loads, "..._b0.85_..."
    ("deit_s", None): 0.5,  # NeMo script_trainNeur.py: beta_list [0.5] (DeiT-S, SVHN)
    (None, None): 1.5,  # MwT README.md, modular_trainer.py --beta 1.5
}
EMPTY_LAYER = {  # a layer no unit of which reaches any threshold down to 0.05:
    ("mwt", "cnn"): "error",  # MwT modularizer.py: raise ValueError
    ("nemo", "cnn"): "random5",  # NeMo modularizer_contra.py: int(5% of the layer) units drawn at random
    # NeMo modularizer_vit.py, modularizer_deit.py (which also run the MwT ViT baseline): after the random
    # 10% the loop goes on with a negative threshold, which keeps every unit of the layer
    ("mwt", "vit"): "whole",
    ("nemo", "vit"): "whole",
}
# MODA: README.md runs model_trainer.py with --batch_size 128 --learning_rate 0.05 --n_epochs 200, which trains
# with SGD(momentum=0.9, nesterov=True), no weight decay, CosineAnnealingLR(T_max=n_epochs): AUTHORS_TRAINING and
# the 'modular' epochs above. Its hyperparameters:
MODA = {
    # README.md, model_modularizer.py: --wf_affinity 1.0 (model_trainer.py's default, 0.0, trains a standard model)
    "alpha": 1.0,
    "beta": 1.0,  # README.md, model_modularizer.py: --wf_dispersion 1.0
    "gamma": 0.3,  # README.md, model_modularizer.py: --wf_compactness 0.3
    "floor": 0.005,  # model_modularizer.py calculate_modular_layer_masks: min_active_neuron_fraction = 0.005
}  # the threshold, 0.9 (README.md --activation_rate_threshold 0.9), is --thresholds' default
MODA_RECIPE = {
    "finetune_epochs": 0,  # model_modularizer.py evaluates the composed modules as they are
    "activity_split": "train_full",  # model_modularizer.py: the whole training set (no validation split exists)
    "activity_augment": False,  # model_modularizer.py: load_dataset(..., train_augmentation=False)
}
# GradSplitter (github.com/qibinhang/GradSplitter at 014f405): src/grad_splitter.py's argparse defaults, which
# src/script/run_splitter.py runs unchanged, and the selection of src/script/select_modules.py.
GRADSPLITTER: dict[str, Any] = {
    "alpha": 0.1,  # --alpha 0.1
    "lr_head": 0.01,  # --lr_head 0.01 (x0.1 in later head phases: Adam(head_param, lr=lr_head * 0.1))
    "lr_mask": 0.001,  # --lr_modularity 0.001 (masks and heads together)
    "head_epochs": 5,  # --epoch_strategy '5,140': 5 epochs for the heads,
    "cycles": 20,  # then [1, 1, 1, 1, 1, 0, 0] * int(140 / 7): 20 cycles
    "cycle_masks": 5,  # of 5 mask epochs
    "cycle_heads": 2,  # and 2 head epochs
    "batch_size": 64,  # --batch_size 64
    "tolerance": 0.01,  # select_modules.py: "the loss of accuracy should less than 1%"
}
# SeaM (github.com/qibinhang/SeaM at 529aae1): src/binary_class/model_reengineering.py's argparse defaults
# (--n_epochs 300, --lr_head 0.1, --lr_mask 0.1, --alpha 1, DataLoader batch_size=64) and, per model, the
# (lr_mask, alpha) of README.md's "The values of major parameters" (VGG16 on CIFAR-10 and CIFAR-100).
SEAM: dict[str, Any] = {"epochs": 300, "lr_head": 0.1, "lr_mask": 0.1, "alpha": 1.0, "batch_size": 64}
SEAM_MASK = {("vgg16", "cifar10"): {"lr_mask": 0.01, "alpha": 1.0},
             ("vgg16", "cifar100"): {"lr_mask": 0.05, "alpha": 1.5}}
SEARCH_METHODS = {"gradsplitter": GRADSPLITTER, "seam": SEAM}

# NeMo modules_arch/vit_module_HF.py, deit_module_HF.py: narrowed residual stream, fresh LayerNorms,
# head ReLU + Linear ('paper' extraction; the 6 heads of DeiT-S kept, where their code builds 12)
VIT_EXTRACTION = "paper"


def model_kind(model: ModelSpec, model_args: dict[str, Any]) -> str:
    """'cnn', 'cnn_nobn', 'vit_s' or 'deit_s' (a ViT with a teacher trains like DeiT-S)."""
    family = model.recipe_name(model_args)
    if family != "vit":
        return family
    return "deit_s" if model.teacher else "vit_s"


def _lookup(table: dict[tuple[str | None, str | None], float], model: str, dataset: str) -> float | None:
    """The value for (model, dataset), else for the model on any data set, else the default; None without."""
    for key in ((model, dataset), (model, None), (None, None)):
        if key in table:
            return table[key]
    return None


class ReferencePreset:
    """The authors' scripts for every method and model they published (see the module docstring)."""

    description = "the MwT, NeMo and MODA authors' scripts, value for value"

    def recipe(self, method: str, model: ModelSpec, model_args: dict[str, Any], dataset: str) -> Recipe:
        """The authors' recipe for the cell; the no-BN CNNs keep CNNSplitter's (the paper preset's)."""
        kind = model_kind(model, model_args)
        augment = AUGMENT.get(dataset, "dataset")
        if kind == "cnn_nobn":
            recipe = replace(PAPER.recipes["cnn_nobn"], augment=augment, **AUTHORS_ACTIVITY)
        else:
            role = STANDARD if method == STANDARD else "modular"
            recipe = Recipe(epochs=EPOCHS[kind, role], augment=augment, **AUTHORS_TRAINING, **FINETUNING[kind],
                            **AUTHORS_ACTIVITY)
        return replace(recipe, **MODA_RECIPE) if method == "moda" else recipe

    def overrides(self, method: str, model: ModelSpec, model_args: dict[str, Any], dataset: str) -> dict[str, Any]:
        """alpha, beta, tau, the empty-layer rule and the ViT extraction of mwt and nemo; MODA's weights and floor;
        the searches of gradsplitter and seam."""
        if method == "moda":
            return dict(MODA)
        if method in SEARCH_METHODS:
            return {**SEARCH_METHODS[method], **(SEAM_MASK.get((model.name, dataset), {}) if method == "seam" else {})}
        if (method, model.family) not in EMPTY_LAYER:
            return {}
        values: dict[str, Any] = {"empty_layer": EMPTY_LAYER[method, model.family]}
        if model.family == "vit":
            values["extraction"] = VIT_EXTRACTION
        if method == "nemo":
            values["tau"] = NEMO_TAU
            alpha = _lookup(NEMO_ALPHA, model.name, dataset)
            if alpha is not None:
                values["alpha"] = alpha
        else:
            values.update(alpha=MWT_ALPHA, beta=_lookup(MWT_BETA, model.name, dataset))
        return values


REFERENCE = ReferencePreset()
