"""Type stubs of the `stackless` extension module (src/python/*.cpp): Stackless Python's tasklets,
channels and scheduler on stock CPython 3.11.

Installed next to the extension module (site-packages/stackless.pyi) by `pip install .`.
tests/python/test_stubs.py checks that the names here are those of the built module.
"""
import contextvars
from collections.abc import Callable, Iterable, Iterator
from types import FrameType, ModuleType, TracebackType
from typing import Any, Literal, Self, TypeAlias, TypeVar, final, overload

_T = TypeVar("_T")

# sys.settrace / sys.setprofile functions, as tasklet.trace_function and profile_function hold.
_TraceFunction: TypeAlias = Callable[[FrameType, str, Any], Any]
# set_schedule_callback(cb): cb(prev, next), called in the incoming tasklet at every switch.
_ScheduleCallback: TypeAlias = Callable[[tasklet, tasklet], object]
# set_channel_callback(cb): cb(channel, tasklet, sending, willblock) before each channel action;
# sending and willblock are 0 or 1.
_ChannelCallback: TypeAlias = Callable[[channel, tasklet, int, int], object]

# Module attributes, computed on every access.
current: tasklet
"""The running tasklet (getcurrent())."""
main: tasklet
"""The thread's main tasklet (getmain())."""
runcount: int
"""Runnable tasklets, the current one included (getruncount())."""
threads: list[int]
"""Idents of the threads whose stackless scheduler is alive."""
debug: bool
"""Whether this is a debug build (getdebug())."""
uncollectables: list[tasklet]
"""Tasklets that could not be killed and freed (getuncollectables())."""
pickle_with_tracing_state: bool
"""Whether pickled tasklets keep their trace and profile functions (bit 1 of pickle_flags(); set,
it sets pickle_flags_default() too)."""

class TaskletExit(SystemExit):
    """Raised in a tasklet to end it (tasklet.kill()); ends it silently."""

@final
class bomb:
    """An exception in transit over a channel: the receiver raises it."""

    @overload
    def __new__(
        cls,
        exc_info: tuple[type[BaseException] | None, BaseException | None, TracebackType | None],
        /,
    ) -> Self: ...
    @overload
    def __new__(
        cls,
        type: type[BaseException] | None = None,
        value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> Self: ...
    @property
    def type(self) -> type[BaseException] | None: ...
    @property
    def value(self) -> BaseException | None: ...
    @property
    def traceback(self) -> TracebackType | None: ...

class atomic:
    """`with stackless.atomic():` the current tasklet is atomic inside the block."""

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> Literal[False]: ...

class tasklet:
    """tasklet(func=None, args=None, kwargs=None): a lightweight thread.

    tasklet(func)(*args, **kwargs) binds `func`, then its arguments, and inserts the tasklet in
    the run queue.
    """

    def __init__(
        self,
        func: Callable[..., object] | None = None,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None: ...
    def bind(
        self,
        func: Callable[..., object] | None = None,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> Self:
        """Binds a function and, if given, its arguments; bind(None) unbinds."""
    def setup(self, *args: Any, **kwargs: Any) -> Self:
        """Binds the arguments and inserts the tasklet in the run queue."""
    def __call__(self, *args: Any, **kwargs: Any) -> Self:
        """setup(*args, **kwargs)."""
    def insert(self) -> Self:
        """Inserts the tasklet at the end of the run queue."""
    def remove(self) -> Self:
        """Removes the tasklet from the run queue."""
    def run(self) -> None:
        """Switches to this tasklet now; the caller stays runnable."""
    def switch(self) -> None:
        """Switches to this tasklet now; the caller is paused."""
    def throw(
        self,
        exc: type[BaseException] | BaseException | None = None,
        val: object = None,
        tb: TracebackType | None = None,
        pending: bool = False,
    ) -> None:
        """Raises an exception in the tasklet (TaskletExit if `exc` is None)."""
    def raise_exception(self, exc_class: type[BaseException], /, *args: Any) -> None:
        """Raises exc_class(*args) in the tasklet."""
    def kill(self, pending: bool = False) -> None:
        """Raises TaskletExit in the tasklet."""
    def set_context(self, context: contextvars.Context, /) -> Self:
        """The contextvars context it runs in from now on; returns the tasklet."""
    def context_run(self, callable: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """callable(*args, **kwargs) in the tasklet's context."""
    def set_atomic(self, flag: bool, /) -> bool:
        """Sets the atomic flag; returns the old one."""
    def set_ignore_nesting(self, flag: bool, /) -> bool:
        """Sets the ignore_nesting flag; returns the old one."""
    def bind_thread(self, thread_id: int | None = None, /) -> None:
        """Moves a tasklet that has not run yet (just made or just unpickled) to this thread, or
        to the thread with that id, where it will run."""
    @property
    def alive(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    @property
    def blocked(self) -> bool: ...
    @property
    def scheduled(self) -> bool: ...
    @property
    def is_current(self) -> bool: ...
    @property
    def is_main(self) -> bool: ...
    @property
    def next(self) -> tasklet | None: ...
    @property
    def prev(self) -> tasklet | None: ...
    @property
    def tempval(self) -> Any: ...
    @tempval.setter
    def tempval(self, value: Any) -> None: ...
    @tempval.deleter
    def tempval(self) -> None: ...
    @property
    def block_trap(self) -> bool: ...
    @block_trap.setter
    def block_trap(self, value: bool) -> None: ...
    @block_trap.deleter
    def block_trap(self) -> None: ...
    @property
    def atomic(self) -> bool: ...
    @property
    def ignore_nesting(self) -> bool: ...
    @property
    def thread_id(self) -> int: ...
    @property
    def restorable(self) -> bool: ...
    @property
    def nesting_level(self) -> int:
        """C-level interpreter calls in its frames that a pickle cannot rebuild (Stackless's
        nesting level; without soft switching, every frame)."""
    @property
    def recursion_depth(self) -> int:
        """How deep its Python calls are."""
    @property
    def frame(self) -> FrameType | None:
        """The innermost frame it runs in (None if it has not started or has ended)."""
    @property
    def context(self) -> contextvars.Context | None: ...
    @property
    def trace_function(self) -> _TraceFunction | None: ...
    @trace_function.setter
    def trace_function(self, value: _TraceFunction | None) -> None: ...
    @trace_function.deleter
    def trace_function(self) -> None: ...
    @property
    def profile_function(self) -> _TraceFunction | None: ...
    @profile_function.setter
    def profile_function(self, value: _TraceFunction | None) -> None: ...
    @profile_function.deleter
    def profile_function(self) -> None: ...

class channel:
    """channel(): synchronous communication between tasklets."""

    def send(self, value: Any, /) -> None:
        """Sends a value; blocks until a receiver takes it."""
    def receive(self) -> Any:
        """Receives a value; blocks until a sender provides one."""
    def send_exception(self, exc: type[BaseException], /, *args: Any) -> None:
        """The receiver raises exc(*args)."""
    def send_throw(
        self,
        exc: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
    ) -> None:
        """The receiver raises `exc` (a class, with `val`, or an instance)."""
    def send_sequence(self, seq: Iterable[Any], /) -> int:
        """Sends every item; returns how many were sent."""
    def close(self) -> None:
        """Refuses new blocking operations once the channel is empty."""
    def open(self) -> None:
        """Undoes close()."""
    def __iter__(self) -> Iterator[Any]: ...
    def __next__(self) -> Any: ...
    @property
    def balance(self) -> int:
        """Senders (> 0) or receivers (< 0) waiting."""
    @property
    def closing(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def preference(self) -> int:
        """-1: the receiver runs first, 1: the sender, 0: neither."""
    @preference.setter
    def preference(self, value: int) -> None: ...
    @property
    def schedule_all(self) -> int: ...
    @schedule_all.setter
    def schedule_all(self, value: bool) -> None: ...
    @schedule_all.deleter
    def schedule_all(self) -> None: ...
    @property
    def queue(self) -> tasklet | None:
        """The first tasklet waiting on the channel."""

def getcurrent() -> tasklet:
    """The running tasklet."""

def getmain() -> tasklet:
    """The thread's main tasklet."""

def getruncount() -> int:
    """Runnable tasklets, the current one included."""

def schedule(retval: Any = ...) -> Any:
    """Lets the next tasklet run; returns `retval` (default: the current tasklet)."""

def schedule_remove(retval: Any = ...) -> Any:
    """Leaves the run queue and lets others run; returns `retval` (default: the current one)."""

def run(
    timeout: int = 0,
    threadblock: bool = False,
    soft: bool = False,
    ignore_nesting: bool = False,
    totaltimeout: bool = False,
) -> tasklet | None:
    """Runs tasklets until none other is runnable. With timeout > 0 (main thread only), a
    tasklet that runs about that many instructions without switching is interrupted, taken out
    of the run queue and returned (soft: at its next schedule(); totaltimeout: the budget
    covers the whole call). threadblock=True raises NotImplementedError."""

def enable_softswitch(flag: bool | None, /) -> bool:
    """Turns soft switching on or off for the process (None only asks); returns the old flag.
    On (the default), blocked tasklets may drop their C stacks and resume their frames, and
    unpickled tasklets run; off, every tasklet keeps its C stack."""

@overload
def get_thread_info(thread_id: int = ...) -> tuple[tasklet | None, tasklet | None, int]: ...
@overload
def get_thread_info(thread_id: int, flags: int) -> tuple[Any, ...]:
    """(main, current, runcount) of a thread (default, or -1: this one); (None, None, 0) for a
    thread that never used stackless. flags (Stackless's): 1 << 30 appends (serial,
    serial_last_jump, None), 1 << 31 the thread's watchdog list."""

def set_error_handler(handler: Callable[[type[BaseException], BaseException, Any], object] | None = ..., /) -> Any:
    """Installs handler(type, value, traceback), called in a tasklet that ends with an
    exception instead of raising it in the main tasklet (None: the default); returns the old
    one."""

def getcurrentid() -> int:
    """A number for the running tasklet (the thread's id for a main tasklet)."""

def getthreads() -> list[int]:
    """Idents of the threads that use stackless."""

def getdebug() -> bool:
    """Whether this is a debug build."""

def getuncollectables() -> list[tasklet]:
    """Tasklets that could not be killed and freed (they are in gc.garbage)."""

def set_schedule_callback(callback: _ScheduleCallback | None, /) -> _ScheduleCallback | None:
    """Installs cb(prev, next), called at every switch (None removes); returns the old one."""

def get_schedule_callback() -> _ScheduleCallback | None: ...
def set_channel_callback(callback: _ChannelCallback | None, /) -> _ChannelCallback | None:
    """Installs cb(channel, tasklet, sending, willblock), called before each channel action
    (None removes); returns the old one."""

def get_channel_callback() -> _ChannelCallback | None: ...
def switch_trap(delta: int, /) -> int:
    """Adds `delta` to the switch trap level, returns the old level; while it is above 0,
    switching tasklets raises RuntimeError."""

stackless: ModuleType
"""The module itself (Stackless's deprecated self-reference)."""

PICKLEFLAGS_PRESERVE_TRACING_STATE: int
"""pickle_flags() bit: pickled tasklets keep their trace and profile functions."""
PICKLEFLAGS_PRESERVE_AG_FINALIZER: int
"""pickle_flags() bit: pickled async generators keep their finalizer."""
PICKLEFLAGS_RESET_AG_FINALIZER: int
"""pickle_flags() bit: unpickled async generators forget their hooks (sys.set_asyncgen_hooks)."""

def pickle_flags(new_flags: int = -1, mask: int = -1) -> int:
    """This thread's pickle flags (the bits of `mask` taken from `new_flags`; -1 only asks);
    returns the flags before."""

def pickle_flags_default(new_default: int = -1, mask: int = -1) -> int:
    """The pickle flags a new thread starts with (as pickle_flags); returns the default
    before."""

def _stats() -> dict[str, int]:
    """The core scheduler's counters for this thread."""

def _atexit() -> None:
    """Kills the main thread's tasklets (registered with atexit)."""
