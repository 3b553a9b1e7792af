"""A user's .py file imported by path (fnsft.utils.pyfile): threads asking for the same file at
once (an environment actor's concurrent resets) all get the whole module, never a half-run one."""

import threading

from fnsft.utils.pyfile import import_file


def test_concurrent_imports_wait_for_the_whole_file(tmp_path):
    path = tmp_path / "slow_env.py"
    path.write_text("import time\ntime.sleep(0.3)\n\nclass Env:\n    pass\n")
    found, threads = [], []
    for _ in range(4):
        def load():
            module = import_file(str(path), "fnsft_test_slow_env", "environment.class", str(path), reuse=True)
            found.append(hasattr(module, "Env"))
        threads.append(threading.Thread(target=load))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found == [True] * 4
