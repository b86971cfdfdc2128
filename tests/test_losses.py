"""The mask losses of MwT and NeMo against small hand-computed cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from bench.models.cnn import simcnn
from bench.models.vit import vit_s
from bench.modular.masking import attach_generators, current_masks
from bench.modular.similarity import cohesion_coupling_loss, mask_similarities, unit_rate
from methods.nemo import contrastive_mask_loss


def test_mwt_cohesion_and_coupling_hand_computed():
    masks = [torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])]
    labels = torch.tensor([0, 0, 1])
    # cosines: s01 = 1/sqrt2 (same class), s02 = 0, s12 = 1/sqrt2 (different classes)
    cohesion, coupling = cohesion_coupling_loss(masks, labels)
    assert cohesion.item() == pytest.approx(1 - 1 / math.sqrt(2))
    assert coupling.item() == pytest.approx((0 + 1 / math.sqrt(2)) / 2)


def test_mwt_losses_are_means_over_layers_and_scale_free():
    labels = torch.tensor([0, 1])
    one = [torch.tensor([[1.0, 0.0], [1.0, 0.0]])]
    other = [torch.tensor([[3.0, 0.0], [0.0, 0.5]])]  # scaling a mask row changes nothing
    c1, p1 = cohesion_coupling_loss(one, labels)
    c2, p2 = cohesion_coupling_loss(other, labels)
    both_c, both_p = cohesion_coupling_loss(one + other, labels)
    assert p1.item() == pytest.approx(1.0) and p2.item() == pytest.approx(0.0)
    assert both_p.item() == pytest.approx(0.5)
    assert c1.item() == c2.item() == both_c.item() == pytest.approx(1.0)  # no same-class pair: mean of nothing is 0


def test_nemo_contrastive_loss_hand_computed():
    masks = [torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])]
    labels = torch.tensor([0, 0, 1])
    tau = 0.5
    e = math.exp(1 / tau)  # exp(cos = 1 / tau)
    # sample 0: positives j=0,1 (cos 1, 1), j=2 masked out -> exp(0); negatives: j=2 (cos 0) -> exp(0),
    # masked-out j=0,1 -> exp(0) each
    pos0, neg0 = 2 * e + 1, 3.0
    # sample 2: positive j=2 (cos 1), masked-out j=0,1 -> 2 * exp(0); negatives j=0,1 cos 0 -> 2, masked-out j=2 -> 1
    pos2, neg2 = e + 2, 3.0
    per_sample = [-math.log(pos0 / (pos0 + neg0))] * 2 + [-math.log(pos2 / (pos2 + neg2))]
    got = contrastive_mask_loss(masks, labels, tau).item()
    assert got == pytest.approx(sum(per_sample) / 3, rel=1e-6)


def test_nemo_loss_falls_when_classes_use_different_units():
    labels = torch.tensor([0, 0, 1, 1])
    shared = [torch.ones(4, 6)]
    separate = [torch.tensor([[1.0, 1, 1, 0, 0, 0]] * 2 + [[0.0, 0, 0, 1, 1, 1]] * 2)]
    assert contrastive_mask_loss(separate, labels, 0.2) < contrastive_mask_loss(shared, labels, 0.2)


def test_nemo_loss_gradient_reaches_the_masks():
    masks = torch.rand(6, 8, requires_grad=True)
    contrastive_mask_loss([masks], torch.tensor([0, 0, 1, 1, 2, 2]), 0.2).backward()
    assert masks.grad is not None and masks.grad.abs().sum() > 0


def test_nemo_on_cnns_counts_the_first_masked_layer_as_ones():
    from methods.nemo import NeMo, NeMoHparams

    labels = torch.tensor([0, 1, 1])
    first, second = torch.rand(3, 4), torch.rand(3, 5)
    hparams = NeMoHparams(alpha=2.0, tau=0.2)
    loss, _ = NeMo().mask_loss([first, second], labels, hparams, "cnn")
    expected = 2.0 * (contrastive_mask_loss([torch.ones(3, 4)], labels, 0.2)
                      + contrastive_mask_loss([second], labels, 0.2)) / 2
    assert loss.item() == pytest.approx(expected.item())
    vit_loss, _ = NeMo().mask_loss([first, second], labels, hparams, "vit")
    assert vit_loss.item() == pytest.approx(2.0 * contrastive_mask_loss([first, second], labels, 0.2).item())


def test_default_hyperparameters_follow_the_authors():
    from bench.plugins.manager import get_plugins
    from methods.mwt import MwT
    from methods.nemo import NeMo

    models = get_plugins().models
    assert NeMo().hparams(models.get("vit_s")).alpha == 0.1
    assert NeMo().hparams(models.get("simcnn")).alpha == 1.3
    assert NeMo().hparams(models.get("resnet18")).alpha == 1.1
    assert NeMo().hparams(models.get("vgg16")).tau == 0.2
    assert (MwT().hparams(models.get("vgg16")).alpha, MwT().hparams(models.get("vgg16")).beta) == (0.5, 1.5)
    assert MwT().hparams(models.get("deit_s")).beta == 0.5


def test_mask_similarities_match_the_per_layer_products_for_mixed_widths():
    torch.manual_seed(0)
    masks = [torch.rand(5, 3), torch.rand(5, 7), torch.rand(5, 3)]
    masks[1][2] = 0  # an all-closed sample: its similarities are 0, not NaN
    sims = mask_similarities(masks)
    assert sims.shape == (3, 5, 5)
    expected = [F.normalize(m, dim=1) @ F.normalize(m, dim=1).T for m in masks]  # in layer order
    torch.testing.assert_close(sims, torch.stack(expected))
    assert torch.all(sims[1][2] == 0)


def test_unit_rate_is_the_mean_over_layers_of_open_fractions():
    masks = [torch.tensor([[0.0, 0.5], [0.2, 0.0]]), torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0]])]
    assert unit_rate(masks).item() == pytest.approx((2 / 4 + 1 / 6) / 2)


def _per_layer_losses(masks: list[torch.Tensor], labels: torch.Tensor, tau: float) -> dict[str, float]:
    """MwT's and NeMo's losses and the unit rate, one layer at a time, straight from their definitions."""
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    pos, neg = (same & upper).float(), (~same & upper).float()
    terms: dict[str, list[torch.Tensor]] = {"cohesion": [], "coupling": [], "contrastive": [], "rate": []}
    for mask in masks:
        z = F.normalize(mask.detach().double(), dim=1)
        s = z @ z.T
        terms["cohesion"].append(1 - (s * pos).sum() / pos.sum().clamp(min=1))
        terms["coupling"].append((s * neg).sum() / neg.sum().clamp(min=1))
        p = torch.exp(s * same / tau).sum(dim=1)
        n = torch.exp(s * ~same / tau).sum(dim=1)
        terms["contrastive"].append(-torch.log((p + 1e-8) / (p + n + 1e-8)).mean())
        terms["rate"].append((mask > 0).double().mean())
    return {k: float(torch.stack(v).mean()) for k, v in terms.items()}


@pytest.mark.parametrize("build", [lambda: simcnn(10, width=0.125), lambda: vit_s(10, width=0.25, depth=3)],
                         ids=["simcnn", "vit_s"])
def test_losses_of_a_masked_forward_pass_equal_the_per_layer_definitions(build):
    torch.manual_seed(0)
    model = attach_generators(build())
    labels = torch.tensor([0, 1, 1, 2, 0, 2, 1, 0])
    model(torch.randn(8, 3, 32, 32))
    masks = current_masks(model)
    expected = _per_layer_losses(masks, labels, 0.2)
    cohesion, coupling = cohesion_coupling_loss(masks, labels)
    got = {"cohesion": cohesion, "coupling": coupling, "contrastive": contrastive_mask_loss(masks, labels, 0.2),
           "rate": unit_rate(masks)}
    assert {k: float(v.detach()) for k, v in got.items()} == pytest.approx(expected, rel=1e-5)


def test_generators_and_losses_run_in_float32_under_autocast():
    torch.manual_seed(0)
    model = attach_generators(vit_s(10, width=0.25, depth=3))
    x, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    model(x)
    full = [m.detach() for m in current_masks(model)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
        masks = [m.detach() for m in current_masks(model)]
        loss = contrastive_mask_loss(masks, labels, 0.2)
    assert all(m.dtype == torch.float32 for m in masks) and loss.dtype == torch.float32
    assert mask_similarities(masks).dtype == torch.float32
    # bfloat16 layer outputs feed the generators, which compute in float32: masks stay close
    assert max(float((m - f).abs().max()) for m, f in zip(masks, full, strict=True)) < 0.05


def test_a_generator_computes_its_definition():
    torch.manual_seed(0)
    unit = attach_generators(simcnn(10, width=0.125)).features[1]
    x = torch.randn(3, unit.conv.in_channels, 8, 8)
    g = unit.generator
    expected = F.relu(torch.tanh(g.fc2(F.relu(g.fc1(x.mean(dim=(2, 3)))))))
    assert g(x).equal(expected)
