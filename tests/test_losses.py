"""The mask losses of MwT and NeMo against small hand-computed cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from bench.modular.similarity import mask_similarities, unit_rate
from methods.mwt import cohesion_coupling_loss
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
    expected = [F.normalize(m, dim=1) @ F.normalize(m, dim=1).T for m in (masks[0], masks[2], masks[1])]
    torch.testing.assert_close(sims, torch.stack(expected))
    assert torch.all(sims[2][2] == 0)


def test_unit_rate_is_the_mean_over_layers_of_open_fractions():
    masks = [torch.tensor([[0.0, 0.5], [0.2, 0.0]]), torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0]])]
    assert unit_rate(masks).item() == pytest.approx((2 / 4 + 1 / 6) / 2)
