# Runner for py> tasks. Shipped next to the task (local temp dir, Docker mount, ECS archive), so it
# imports nothing from airflow_cmdexec_provider and only the standard library (Python 3.6+).
#
# Usage: python runner.py METHOD IN_JSON OUT_JSON
#
# Contract (Digdag's runner.py, same files and keys):
#   IN_JSON  = {"params": {...}}
#   OUT_JSON = {"subtask_config": {}, "export_params": {}, "store_params": {}, "error"?: {...}}
# The user's code sees a module `digdag` (and `digdag_env`) exactly as in Digdag.
#
# As in Digdag, any SystemExit (even sys.exit(0)) fails the task with Digdag's message and hint: a
# method that exits is usually a stdlib module shadowing the user's (py>: tokenize.main). A non-zero
# code is kept as the exit code; 0 becomes 1.
#
# Differences from Digdag, on purpose (see README "Differences from Digdag"):
# - values given to store()/export() must be JSON-serialisable; a bad value fails at the call site,
#   naming the key, instead of breaking the output file later;
# - a method without a module ("py>: func") gets a clear error instead of ValueError;
# - an exception is reported once (in OUT_JSON, which the operator turns into the task error), not
#   also as a traceback on stderr; its backtrace holds only the user's frames.
#
# Annotations of arguments are strings (Python 3.6 cannot evaluate `dict[str, Any]`; those of local
# variables are never evaluated), and typing is imported only by the type checker, which reads the
# name TYPE_CHECKING as true: a task's start-up does not pay for importing typing.
import json
import os
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    Params = Mapping[str, Any]
    Error = dict[str, Any]


class _Env:
    def __init__(self, params: "Params") -> None:
        self.params = params
        self.subtask_config: dict[str, Any] = {}
        self.export_params: dict[str, Any] = {}
        self.store_params: dict[str, Any] = {}
        self.state_params: dict[str, Any] = {}
        self.subtask_index = 0

    @staticmethod
    def _check_serialisable(what: str, params: "Params") -> None:
        for key, value in params.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"digdag.env.{what}: the value of '{key}' is not JSON-serialisable "
                    f"({type(value).__name__}: {exc}); "
                    "store only str, int, float, bool, None, list and dict values"
                ) from exc

    def _merge(self, what: str, target: "dict[str, Any]", params: "Params | None", kwargs: "Params") -> None:
        merged = dict(params or {})
        merged.update(kwargs)
        self._check_serialisable(what, merged)
        target.update(merged)

    def export(self, params: "Params | None" = None, **kwargs: "Any") -> None:
        self._merge("export", self.export_params, params, kwargs)

    def store(self, params: "Params | None" = None, **kwargs: "Any") -> None:
        self._merge("store", self.store_params, params, kwargs)

    def set_state(self, params: "Params | None" = None, **kwargs: "Any") -> None:
        self._merge("set_state", self.state_params, params, kwargs)

    def add_subtask(self, function: object = None, **params: "Any") -> None:
        """Digdag's: a task to run after this one, as its child (``+subtask0``, ``+subtask1``...):
        ``add_subtask(Class.method, k=v)`` makes ``{"py>": "module.Class.method", "k": v}``,
        ``add_subtask({...}, k=v)`` a copy of the mapping with ``k`` set."""
        if function is not None and not isinstance(function, dict):
            config = dict(params)
            config["py>"] = getattr(function, "__module__", "") + "." + getattr(function, "__qualname__", "")
        else:
            config = dict(function or {})
            config.update(params)
        try:
            json.dumps(config)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Parameters must be serializable using JSON: {exc}") from exc
        self.subtask_config["+subtask" + str(self.subtask_index)] = config
        self.subtask_index += 1


def _install_digdag_module(env: _Env) -> None:
    """Make ``env`` what ``digdag.env`` (and ``digdag_env``) is. The module objects are made once and
    then changed in place: a user's module that did ``import digdag`` holds the object, and must
    see the env of the generated task that runs now."""
    digdag_env = sys.modules.get("digdag_env") or types.ModuleType("digdag_env")
    for name in ("params", "subtask_config", "export_params", "store_params", "state_params"):
        setattr(digdag_env, name, getattr(env, name))
    digdag = sys.modules.get("digdag") or types.ModuleType("digdag")
    digdag.__dict__["env"] = env  # a plain module declares no attributes to assign to
    sys.modules["digdag_env"] = digdag_env
    sys.modules["digdag"] = digdag


def _resolve(command: str) -> "tuple[type[Any], str] | tuple[None, Callable[..., Any]]":
    """Return (callable_owner_class_or_None, callable) for 'mod.func', 'mod.Class.meth' or 'mod.Class'."""
    if "." not in command:
        raise ValueError(
            f"py> method '{command}' must be 'module.function', 'module.Class.method' or 'module.Class' "
            "(a module file in the project, e.g. tasks/my_workflow.py -> 'tasks.my_workflow.step1')"
        )
    fragments = command.split(".")
    method_name = fragments.pop()
    module_name = ".".join(fragments)
    try:
        module = __import__(module_name, fromlist=[method_name])
    except ImportError as module_error:
        # 'mod.Class.meth': the part before the method is a class, not a module. Only fall back when
        # that very name is what could not be found, not a module that the user's code imports.
        if len(fragments) < 2 or getattr(module_error, "name", module_name) != module_name:
            raise
        class_name = fragments.pop()
        owner_name = ".".join(fragments)
        owner_module = __import__(owner_name, fromlist=[class_name])
        # The ImportError only told that the name is a class: it is not the cause of these errors.
        if not hasattr(owner_module, class_name):
            raise AttributeError(f"Module '{owner_name}' has no attribute '{class_name}'") from None
        klass = getattr(owner_module, class_name)
        if not hasattr(klass, method_name):
            raise AttributeError(f"Class '{owner_name}.{class_name}' has no method '{method_name}'") from None
        return klass, method_name
    if not hasattr(module, method_name):
        raise AttributeError(f"Module '{module_name}' has no attribute '{method_name}'")
    target = getattr(module, method_name)
    if isinstance(target, type):
        return target, "run"
    return None, target


def _argspec(func: object) -> "tuple[list[str], tuple[Any, ...], list[str], dict[str, Any], bool]":
    """(positional names, their defaults, keyword-only names, their defaults, takes **kwargs) of a
    function or method, read from its code object: what inspect.getfullargspec gives, without
    importing inspect, which costs a no-op task a fifth of its start-up."""
    function = getattr(func, "__func__", func)  # a bound method's function (its first name is self)
    code = getattr(function, "__code__", None)
    if code is None:
        raise TypeError("no Python code")  # builtins such as object.__init__
    positional = code.co_argcount
    names = code.co_varnames
    kwonly = names[positional : positional + code.co_kwonlyargcount]
    takes_kwargs = bool(code.co_flags & 0x08)  # CO_VARKEYWORDS
    return (
        list(names[:positional]),
        getattr(function, "__defaults__", None) or (),
        list(kwonly),
        getattr(function, "__kwdefaults__", None) or {},
        takes_kwargs,
    )


def _bind(func: object, params: "Params", qualname: str, skip_self: bool) -> "dict[str, Any]":
    try:
        args, defaults, kwonlyargs, kwonlydefaults, takes_kwargs = _argspec(func)
    except TypeError:
        return {}  # builtins such as object.__init__ take nothing from params
    if takes_kwargs:
        return dict(params)
    args = args[1:] if skip_self else args
    first_default = len(args) - len(defaults)
    kwargs = {}
    for index, name in enumerate(args):
        if name in params:
            kwargs[name] = params[name]
        elif index < first_default:
            raise TypeError(f"Method '{qualname}' requires parameter '{name}' but not set")
    for name in kwonlyargs:
        if name in params:
            kwargs[name] = params[name]
        elif name not in kwonlydefaults:
            raise TypeError(f"Method '{qualname}' requires parameter '{name}' but not set")
    return kwargs


def _call(command: str, params: "Params") -> object:
    resolved = _resolve(command)
    if resolved[0] is None:
        function = resolved[1]
        return function(**_bind(function, params, command, skip_self=False))
    klass, method_name = resolved
    init = klass.__init__
    init_kwargs = {} if init is object.__init__ else _bind(init, params, klass.__name__ + ".__init__", True)
    instance = klass(**init_kwargs)
    method = getattr(instance, method_name)
    return method(**_bind(method, params, command, skip_self=isinstance(method, types.MethodType)))


def _run_subtasks(parent: _Env, params: "Params") -> None:
    """Run the tasks ``parent`` generated, here, in the order added (Digdag runs them as the task's
    children, after it; with ``_parallel`` at once: here always one after the other). Each sees the
    parent's params, what the parent exported and stored, what earlier subtasks stored, and its own
    keys; what it stores reaches the later subtasks and, as the parent's, the tasks after it. A
    generated group (``{"+a": {...}, "+b": {...}}``) runs its tasks in order. Only ``py>`` tasks can
    run in this process: anything else fails the task and says so."""
    ran = False
    for name, config in list(parent.subtask_config.items()):
        if name.startswith("+"):
            ran = True
            _run_generated(name, config, parent, params)
    _install_digdag_module(parent)
    parent.subtask_config.clear()  # they ran: nothing is left for the operator to run
    if ran:
        parent.export_params.clear()  # applied to the children, which is all an export does


def _run_generated(name: str, config: object, parent: _Env, params: "Params") -> None:
    if not isinstance(config, dict):
        raise ValueError(f"generated subtask {name} must be a mapping, got {json.dumps(config)[:200]}")
    child_params = dict(params)
    child_params.update(parent.export_params)
    child_params.update(parent.store_params)
    exported = config.get("_export")
    if isinstance(exported, dict):
        child_params.update(exported)
    operators = sorted(k for k in config if k.endswith(">"))
    children = [(k, v) for k, v in config.items() if k.startswith("+")]
    if children and not operators:
        group = _Env(child_params)  # the group's tasks store into it, in turn
        for child_name, child in children:
            _run_generated(f"{name}{child_name}", child, group, child_params)
        parent.store_params.update(group.store_params)
        return
    if operators != ["py>"] or children:
        raise ValueError(
            f"generated subtask {name} ({json.dumps(config)[:200]}): on Airflow, tasks generated "
            "with add_subtask run inside the generating task, and only py> tasks can: generate "
            "py> tasks, or write the steps in the workflow"
        )
    child_params.update({k: v for k, v in config.items() if not k.startswith("_") and k != "py>"})
    child = _Env(child_params)
    _install_digdag_module(child)
    print(f"Running generated subtask {name}: py> {config['py>']}", flush=True)
    _call(config["py>"], child_params)
    _run_subtasks(child, child_params)
    parent.store_params.update(child.store_params)


def _user_backtrace(exc: BaseException) -> "list[str]":
    """Return the user's frames of the traceback, one 'File "f", line N, in name' (+ source) each."""
    import traceback  # only on failure: its import costs a no-op task start-up time

    here = os.path.abspath(__file__)
    frames = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == here:
            continue
        text = f'File "{frame.filename}", line {frame.lineno}, in {frame.name}'
        if frame.line:
            text += "\n    " + frame.line
        frames.append(text)
    return frames


def _exit_error(exc: SystemExit) -> "tuple[Error, int]":
    """Digdag's report of a SystemExit, and the exit code to end with: the code if non-zero, else 1."""
    if exc.code is None or isinstance(exc.code, int):
        code, note = int(exc.code or 0), ""
    else:  # sys.exit("text") would print the text and exit 1
        code, note = 1, f" (sys.exit message: {exc.code})"
    message = (
        f"Failed to call python command with code:{code} Possible cause: Invalid python module call, "
        f"duplicate module name with standard library{note}"
    )
    # A failed task never exits 0, and an exit status is one byte: 256 would read as 0.
    exit_code = code if 0 < code < 256 else 1
    return {"class": "SystemExit", "message": message, "backtrace": _user_backtrace(exc)}, exit_code


def _output(env: _Env, error: "Error | None") -> "tuple[str, Error | None]":
    """Return the text of OUT_JSON and the error it reports (None when the task succeeded)."""
    values: dict[str, Any] = {
        "subtask_config": env.subtask_config,
        "export_params": env.export_params,
        "store_params": env.store_params,
    }
    try:
        json.dumps(values)
    except (TypeError, ValueError) as exc:
        # Values put into digdag.env.store_params (or export_params) directly skip store()'s check.
        values = {"subtask_config": {}, "export_params": {}, "store_params": {}}
        error = error or {
            "class": type(exc).__name__,
            "backtrace": [],
            "message": f"a value stored by the task is not JSON-serialisable: {exc}",
        }
    if error is not None:
        values["error"] = error
    return json.dumps(values), error


def main(argv: "list[str]") -> int:
    command, in_file, out_file = argv[1:4]
    # Output goes to a pipe, where Python buffers it in blocks: flush each line so that the task log
    # shows it as it is printed (Python 3.7+; PYTHONUNBUFFERED does the same for older ones).
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    # Importing the project's modules must not write __pycache__ folders into the project (with
    # Docker, as the container's user, possibly root).
    sys.dont_write_bytecode = True
    with open(in_file) as f:
        params = json.load(f)["params"]
    env = _Env(params)
    _install_digdag_module(env)
    cwd = os.path.abspath(os.getcwd())
    if cwd not in sys.path:
        sys.path.append(cwd)
    error: Error | None = None
    exit_code = 0
    try:
        _call(command, params)
        _run_subtasks(env, params)
    except SystemExit as exc:
        error, exit_code = _exit_error(exc)
    except BaseException as exc:  # noqa: BLE001 - everything the user's code raises is reported
        exit_code = 1
        error = {"class": type(exc).__name__, "message": str(exc), "backtrace": _user_backtrace(exc)}
    text, error = _output(env, error)
    with open(out_file, "w") as f:
        f.write(text)
    sys.stdout.flush()
    return exit_code or (0 if error is None else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
