"""Only the model's own tokens of a multi-turn episode enter the loss and the KL: on the tiny
model (torch only), the environment's tokens get no gradient for grpo (KL in the loss) and ppo
(critic, GAE, KL in the reward), yet the model attends to them."""

import pytest
import torch

from fnsft.models.forward import ValueHead, completion_forward
from fnsft.rl import get_algorithm
from fnsft.rl.loop import LossSettings, compute_advantages, policy_objective

# completion = model reply (4) | environment turn (3) | model reply (4) | environment turn (3)
MASK = [1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
ENV_MID, REPLY_2, ENV_END = slice(4, 7), slice(7, 11), slice(11, 14)


def loss_and_grads(model, head, algorithm, completion, kl_in_reward):
    spec = get_algorithm(algorithm)
    rows = completion.shape[0]
    mask = torch.tensor([MASK] * rows)
    batch = {"prompt_ids": torch.tensor([[5, 6, 7, 8, 9]] * rows), "prompt_mask": torch.ones(rows, 5, dtype=torch.long),
             "completion_ids": completion, "completion_mask": mask, "completion_attention": torch.ones_like(mask)}
    model.zero_grad(set_to_none=True)
    head.zero_grad(set_to_none=True)
    out = completion_forward(model, batch, value_head=head if spec.uses_critic else None)
    logprobs = out["logprobs"]
    logprobs.retain_grad()
    values = out.get("values")
    settings = LossSettings(num_generations=rows, kl_in_reward=kl_in_reward, whiten_advantages=False)
    ref = logprobs.detach() - 0.3 * torch.arange(rows).unsqueeze(1)  # a reference that differs
    scores = torch.linspace(0.0, 1.0, rows)
    adv = compute_advantages(spec, settings, scores, mask.float(), logprobs.detach(), ref,
                             None if values is None else values.detach(), kl_coef=0.1)
    mb = {"completion_mask": mask, "old_logprobs": logprobs.detach(), "ref_logprobs": ref, **adv}
    if values is not None:
        mb["old_values"] = values.detach() + 0.05
    loss, _ = policy_objective(spec, settings, logprobs, mb, 0.1, values=values)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in list(model.parameters()) + list(head.parameters())
                       if p.grad is not None])
    return logprobs, grads


@pytest.mark.parametrize("algorithm, kl_in_reward", [("grpo", False), ("ppo", True)])
def test_environment_tokens_do_not_change_the_gradient(tiny_model_dir, algorithm, kl_in_reward):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    head = ValueHead.build(model.config.hidden_size)
    completion = torch.randint(10, 200, (4, len(MASK)))
    logprobs, grads = loss_and_grads(model, head, algorithm, completion, kl_in_reward)
    env = torch.tensor(MASK) == 0
    assert torch.all(logprobs.grad[:, env] == 0) and torch.any(logprobs.grad[:, ~env] != 0)

    other_env = completion.clone()
    other_env[:, ENV_END] = torch.randint(10, 200, (4, 3))  # the environment says something else at the end
    _, grads_env = loss_and_grads(model, head, algorithm, other_env, kl_in_reward)
    assert torch.allclose(grads, grads_env, atol=1e-7), "environment tokens changed the gradient"

    other_reply = completion.clone()
    other_reply[:, REPLY_2] = torch.randint(10, 200, (4, 4))  # the model said something else
    _, grads_reply = loss_and_grads(model, head, algorithm, other_reply, kl_in_reward)
    assert not torch.allclose(grads, grads_reply, atol=1e-6)

    other_mid = completion.clone()
    other_mid[:, ENV_MID] = torch.randint(10, 200, (4, 3))  # what the model read before its second reply
    logprobs_mid, _ = loss_and_grads(model, head, algorithm, other_mid, kl_in_reward)
    assert not torch.allclose(logprobs[:, REPLY_2], logprobs_mid[:, REPLY_2]), "the model must see the environment"
