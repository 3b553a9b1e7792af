"""``teacher_model_type: local`` — a Hugging Face model in a pool of Ray generation actors.

``teacher_model_path`` is a local folder, a hub id or a ``builtin:`` model. The pool is the RL
stage's :class:`~fnsft.actors.generation.GenerationActor` in an
:class:`~fnsft.actors.group.ActorGroup` (``teacher_resources: {num_replicas, num_cpus,
num_gpus}``): a batch of prompts is split across the replicas, each samples its share in one
batched ``generate`` (every prompt's ``n`` copies share one prefill).
"""

from __future__ import annotations

import logging
from typing import Optional

from fnsft.actors.group import ActorGroup, RoleResources
from fnsft.teachers.base import Teacher

log = logging.getLogger("fnsft")


class LocalTeacher(Teacher):
    kind = "local"

    def __init__(self, model_path: str, resources: Optional[RoleResources] = None, dtype: str = "auto",
                 apply_chat_template: bool = True, batch_size: int = 8, generation_batch_size: int = 0,
                 seed: int = 0, trust_remote_code: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.model_path = model_path
        self.resources = resources or RoleResources()
        self.batch_size = max(1, batch_size) * self.resources.num_replicas
        self.seed = seed
        self._group_args = dict(dtype=dtype, apply_chat_template=apply_chat_template,
                                generation_batch_size=generation_batch_size, trust_remote_code=trust_remote_code)
        self.group: Optional[ActorGroup] = None

    @property
    def identity(self) -> str:
        return f"local:{self.model_path}"

    def start(self) -> None:
        """Start the actors (model loading runs in them, in parallel)."""
        if self.group is not None:
            return
        from fnsft.actors.generation import GenerationActor
        from fnsft.models.handle import ModelHandle
        from fnsft.models.spec import resolve_model_path

        a = self._group_args
        handle = ModelHandle(source=resolve_model_path(self.model_path), trust_remote_code=a["trust_remote_code"])
        self.group = ActorGroup(GenerationActor, self.resources, args=(handle,),
                                kwargs={"dtype": a["dtype"], "apply_chat_template": a["apply_chat_template"],
                                        "batch_size": a["generation_batch_size"], "engine": "hf"},
                                name="cot-teacher")
        self.group.wait_ready()
        log.info("[cot_distillation] teacher %s ready: %d actor(s)", self.model_path, len(self.group))

    def _complete(self, prompts, questions, hints, n, temperature, max_new_tokens):
        self.start()
        repeated = [p for p in prompts for _ in range(n)]  # copies side by side: one prefill each
        sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        seed = self.seed
        self.seed += len(repeated)
        out = self.group.split(repeated, lambda actor, chunk: actor.generate.remote(chunk, sampling, seed))
        samples = [{"text": t, "finish_reason": "length" if cut else "stop"}
                   for t, cut in zip(out["texts"], out["truncated"])]
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]

    def close(self) -> None:
        if self.group is not None:
            self.group.kill()
            self.group = None
