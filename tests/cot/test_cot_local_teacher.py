"""The local teacher: a pool of Ray generation actors (tiny model), batched sampling, cached."""

import pytest

from fnsft.actors.group import RoleResources
from fnsft.teachers.distill_data import DistillSettings, distill
from fnsft.teachers.local import LocalTeacher
from fnsft.testing import TINY


@pytest.mark.slow
def test_local_teacher_pool(tmp_path, ray_session):
    teacher = LocalTeacher(TINY, resources=RoleResources(num_replicas=2, num_cpus=1), batch_size=2)
    rows = [{"id": str(i), "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]
    try:
        out = teacher.generate([r["question"] for r in rows], n=3, temperature=1.0, max_new_tokens=8)
        assert len(out) == 5 and all(len(s) == 3 for s in out)
        # a random tiny model never stops within 8 tokens: every sample is cut, and said so
        assert all(x["finish_reason"] == "length" and isinstance(x["text"], str) for s in out for x in s)
        assert teacher.batch_size == 4 and len(teacher.group) == 2
        res = distill(teacher, rows, DistillSettings(num_samples_per_question=2, max_new_tokens=8), str(tmp_path))
        assert res.metrics["teacher_samples_asked"] == 10 and res.metrics["dropped/truncated"] == 10
        assert all(r["teacher"] == f"local:{TINY}" for r in res.records)
        again = distill(teacher, rows, DistillSettings(num_samples_per_question=2, max_new_tokens=8), str(tmp_path))
        assert again.metrics["teacher_samples_asked"] == 0
    finally:
        teacher.close()
