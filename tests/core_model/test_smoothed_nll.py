import pytest
import torch
import torch.nn.functional as F

from core_model.smoothed_nll import smoothed_nll


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_it_is_cross_entropy_with_label_smoothing_in_value_and_gradient(smoothing: float) -> None:
    torch.manual_seed(0)
    logits = torch.randn(9, 30) * 3
    targets = torch.randint(0, 30, (9,))
    targets[3] = targets[4]  # a target repeated across rows
    results = []
    for loss_of in (lambda x: F.cross_entropy(x, targets, label_smoothing=smoothing),
                    lambda x: smoothed_nll(torch.log_softmax(x, dim=-1), targets, smoothing)):
        x = logits.clone().requires_grad_()
        loss = loss_of(x)
        (2.5 * loss).backward()  # a scaled loss scales the gradient
        assert x.grad is not None
        results.append((loss.detach(), x.grad))
    (expected, expected_grad), (loss, grad) = results
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-7)
