import pytest
import torch

from core_model.dropout import Dropout


@pytest.mark.parametrize("p", [0.1, 0.35, 0.5])
def test_drops_a_share_p_and_scales_the_rest(p: float) -> None:
    dropout = Dropout(p).train()
    out = dropout(torch.ones(1000, 999))  # an odd count: the last draw is used only in part
    dropped = float((out == 0).float().mean())
    assert abs(dropped - p) < 0.005
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - p)))


def test_masks_differ_between_calls_and_repeat_under_a_seed() -> None:
    dropout = Dropout(0.5).train()
    x = torch.ones(64, 7, 32)
    torch.manual_seed(3)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(3)
    assert not torch.equal(first, second)
    assert torch.equal(dropout(x), first)


def test_mask_positions_are_not_correlated_along_any_dimension() -> None:
    # Lanes are cut from 64-bit draws: neighbours share a draw, so check that a lane's position in
    # its draw does not change its rate.
    torch.manual_seed(0)
    kept = Dropout(0.25).train()(torch.ones(200_000, 4)) != 0  # column = lane within its draw
    rates = kept.float().mean(dim=0)
    assert float((rates - 0.75).abs().max()) < 0.01


def test_gradient_flows_through_kept_elements_only() -> None:
    x = torch.randn(50, 40, requires_grad=True)
    out = Dropout(0.3).train()(x)
    out.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, (out != 0).float() / 0.7)


def test_eval_mode_and_zero_rate_are_the_identity() -> None:
    x = torch.randn(8, 9)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_keeps_the_input_dtype() -> None:
    assert Dropout(0.2).train()(torch.ones(4, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("p", [-0.1, 1.0, float("nan")])
def test_rate_out_of_range_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match="dropout"):
        Dropout(p)
