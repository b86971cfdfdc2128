"""``bench import``: an authors' released checkpoint stored as the train stage of a cell.

The cell is named as ``bench run`` names it (method, model, data set, seed, preset, ``--set``
values); a later ``bench run`` of the same cell modularizes and evaluates the imported model under
modbench's protocol without training it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bench.errors import UsageError
from bench.grid.options import OPTIONS, click_option

SOURCES = ("mwt", "nemo")


@click.command(name="import")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--source", type=click.Choice(SOURCES), required=True,
              help="Whose code saved the checkpoint: mwt (qibinhang/MwT) or nemo (XiaohanBi-Hub/NeMo).")
@click.option("--method", help="The method the checkpoint was trained with (default: standard, or the "
              "source for a checkpoint holding mask generators).")
@click.option("--model", required=True, help="The zoo model it fits, with arguments, e.g. vgg16 or vit_s:depth=12.")
@click.option("--dataset", required=True, help="The data set it was trained on, e.g. cifar10.")
@click.option("--seed", type=int, default=0, show_default=True, help="The seed of the cell it becomes.")
@click_option(OPTIONS["preset"])
@click_option(OPTIONS["set"])
@click_option(OPTIONS["out"])
@click_option(OPTIONS["data_root"])
def import_checkpoint(checkpoint: Path, source: str, method: str | None, model: str, dataset: str, seed: int,
                      **options: Any) -> int:
    """Store an authors' released checkpoint as the trained model of a cell.

    Keys are mapped from the authors' layout onto the zoo's model (every key checked, by name);
    the file is read with weights_only=True.

    \b
    Example:
      bench import vgg16_cifar10_modular.pth --source mwt --model vgg16 --dataset cifar10
      bench run --methods mwt --models vgg16 --datasets cifar10      # modularizes it, no training
    """
    import torch

    from bench.grid.config import grid_from_options
    from bench.grid.options import merge_options
    from bench.importers.authors import load_authors_checkpoint
    from bench.pipeline.cell import CellRunner
    from bench.pipeline.progress import Bars
    from bench.pipeline.runner import plan
    from bench.pipeline.workspace import Workspace
    from bench.plugins.manager import get_plugins

    given = {"methods": (method or "standard",), "models": (model,), "datasets": (dataset,), "seeds": (str(seed),),
             **options}
    grid, _ = plan(grid_from_options(merge_options(given, {})))
    if grid.overrides.axes():
        raise UsageError("bench import stores one cell: give single --set values, not sweeps")
    runner = CellRunner(Workspace(grid, get_plugins(), torch.device("cpu"), Bars(quiet=True)))
    r = runner.ws.resolver.cell(grid.methods[0], grid.models[0], grid.datasets[0], seed, grid.overrides)
    state, info = load_authors_checkpoint(checkpoint, source, r.model.name, r.model.kwargs,
                                          runner.ws.data_of(r).num_classes)
    if info["modular"] and method is None:
        r = runner.ws.resolver.cell(source, r.model, r.dataset, seed, grid.overrides)
    if info["modular"] != (r.method.name != "standard"):
        kind = "holds mask generators" if info["modular"] else "holds no mask generators"
        raise UsageError(f"{checkpoint} {kind}, so it is not what method {r.method.name} trains")
    directory = runner.train.store(r, state, info)
    click.echo(f"stored as the trained {r.method.name} model of {r.model} on {r.dataset}, seed {seed}: {directory}")
    sets = "".join(f" --set {key}={value}" for key, value in grid.overrides.labels().items())
    click.echo(f"next: bench run --methods {r.method.name} --models {r.model} --datasets {r.dataset} "
               f"--seeds {seed} --preset {grid.preset}{sets}", err=True)
    return 0
