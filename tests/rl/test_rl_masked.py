import torch

from fnsft.rl import masked_mean, masked_sum, masked_var, masked_whiten

X = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -50.0, -50.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
VALID = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])


def test_sum_and_mean_ignore_masked_positions():
    assert masked_sum(X, MASK).item() == 15.0
    assert masked_mean(X, MASK).item() == 3.0
    torch.testing.assert_close(masked_mean(X, MASK, dim=-1), torch.tensor([2.0, 4.5]))


def test_empty_mask_gives_zero_not_nan():
    assert masked_mean(X, torch.zeros_like(X)).item() == 0.0


def test_var_matches_torch_var_of_valid_tokens():
    torch.testing.assert_close(masked_var(X, MASK), VALID.var())
    torch.testing.assert_close(masked_var(X, MASK, unbiased=False), VALID.var(unbiased=False))
    torch.testing.assert_close(masked_var(X, MASK, dim=-1), torch.tensor([1.0, 0.5]))


def test_whiten_zero_mean_unit_var_on_mask_and_zero_outside():
    w = masked_whiten(X, MASK)
    torch.testing.assert_close(masked_mean(w, MASK), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(masked_var(w, MASK), torch.tensor(1.0), atol=1e-5, rtol=0)
    assert (w[MASK == 0] == 0).all()
    kept = masked_whiten(X, MASK, shift_mean=False)
    torch.testing.assert_close(masked_mean(kept, MASK), torch.tensor(3.0))
