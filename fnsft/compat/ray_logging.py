"""Ray's driver-side printer of forwarded worker output, checked against ``ray>=2.60,<2.61``.

Ray forwards every line a worker, actor or Train controller prints to the driver and prints it
there through a handler named ``"ray_print_logs"`` on ``ray._private.ray_logging``'s
``global_worker_stdstream_dispatcher``. Ray has no public way to filter those lines;
:func:`wrap_worker_output_printer` puts a function in front of that printer (see
:mod:`fnsft.runtime.log_routing` for what it filters). Public path (another Ray): Ray prints
every line itself, as with ``log_to_driver=True`` alone.
"""

from __future__ import annotations

from typing import Callable

from fnsft.compat import in_range

CHECKED = ((2, 60), (2, 61))  # ray>=2.60,<2.61
# (module, name, attributes of it) the hook relies on.
HOOK = ("ray._private.ray_logging", "global_worker_stdstream_dispatcher", ("_lock", "handlers", "add_handler"))
PRINTER = "ray_print_logs"  # the name Ray's ray.init gives the printer it adds
_MARK = "_fnsft_wrapped"


def checked() -> bool:
    return in_range("ray", *CHECKED)


def wrap_worker_output_printer(wrap: Callable[[Callable], Callable]) -> bool:
    """Replace Ray's printer of forwarded worker lines by ``wrap(printer)``, now and for one
    ``ray.init`` adds later; idempotent (a printer already wrapped stays as it is).

    ``wrap(printer)`` returns a function taking Ray's ``data`` dict (``lines``, ``pid``,
    ``actor_name``, ...). Returns False, leaving Ray as it is, outside :data:`CHECKED` or when
    the dispatcher lacks what this relies on.
    """
    if not checked():
        return False
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    if not all(hasattr(dispatcher, a) for a in HOOK[2]):
        return False

    def wrapped(handler):
        if getattr(handler, _MARK, False):
            return handler
        out = wrap(handler)
        setattr(out, _MARK, True)
        return out

    # Ray adds its printer in ray.init: wrap one that exists, and any added later.
    with dispatcher._lock:
        dispatcher.handlers = [(n, wrapped(h) if n == PRINTER else h) for n, h in dispatcher.handlers]
    if not getattr(dispatcher.add_handler, _MARK, False):
        original = dispatcher.add_handler

        def add_handler(name, handler):
            original(name, wrapped(handler) if name == PRINTER else handler)

        setattr(add_handler, _MARK, True)
        dispatcher.add_handler = add_handler
    return True
