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
import json
import os
import sys
import types


class _Env:
    def __init__(self, params):
        self.params = params
        self.subtask_config = {}
        self.export_params = {}
        self.store_params = {}
        self.state_params = {}
        self.subtask_index = 0

    @staticmethod
    def _check_serialisable(what, params):
        for key, value in params.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    "digdag.env.%s: the value of '%s' is not JSON-serialisable (%s: %s); "
                    "store only str, int, float, bool, None, list and dict values"
                    % (what, key, type(value).__name__, exc)
                )

    def _merge(self, what, target, params, kwargs):
        merged = dict(params or {})
        merged.update(kwargs)
        self._check_serialisable(what, merged)
        target.update(merged)

    def export(self, params=None, **kwargs):
        self._merge("export", self.export_params, params, kwargs)

    def store(self, params=None, **kwargs):
        self._merge("store", self.store_params, params, kwargs)

    def set_state(self, params=None, **kwargs):
        self._merge("set_state", self.state_params, params, kwargs)

    def add_subtask(self, function=None, **params):
        raise NotImplementedError(
            "digdag.env.add_subtask is not supported on Airflow: tasks cannot be added to a running "
            "DAG run. Use dynamic task mapping (.expand) in the DAG instead."
        )


def _install_digdag_module(env):
    digdag_env = types.ModuleType("digdag_env")
    for name in ("params", "subtask_config", "export_params", "store_params", "state_params"):
        setattr(digdag_env, name, getattr(env, name))
    digdag = types.ModuleType("digdag")
    digdag.env = env
    sys.modules["digdag_env"] = digdag_env
    sys.modules["digdag"] = digdag


def _resolve(command):
    """Return (callable_owner_class_or_None, callable) for 'mod.func', 'mod.Class.meth' or 'mod.Class'."""
    if "." not in command:
        raise ValueError(
            "py> method '%s' must be 'module.function', 'module.Class.method' or 'module.Class' "
            "(a module file in the project, e.g. tasks/my_workflow.py -> 'tasks.my_workflow.step1')" % command
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
        owner_module = __import__(".".join(fragments), fromlist=[class_name])
        if not hasattr(owner_module, class_name):
            raise AttributeError("Module '%s' has no attribute '%s'" % (".".join(fragments), class_name))
        klass = getattr(owner_module, class_name)
        if not hasattr(klass, method_name):
            raise AttributeError(
                "Class '%s.%s' has no method '%s'" % (".".join(fragments), class_name, method_name)
            )
        return klass, method_name
    if not hasattr(module, method_name):
        raise AttributeError("Module '%s' has no attribute '%s'" % (module_name, method_name))
    target = getattr(module, method_name)
    if isinstance(target, type):
        return target, "run"
    return None, target


def _argspec(func):
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
        function.__defaults__ or (),
        list(kwonly),
        function.__kwdefaults__ or {},
        takes_kwargs,
    )


def _bind(func, params, qualname, skip_self):
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
            raise TypeError("Method '%s' requires parameter '%s' but not set" % (qualname, name))
    for name in kwonlyargs:
        if name in params:
            kwargs[name] = params[name]
        elif name not in kwonlydefaults:
            raise TypeError("Method '%s' requires parameter '%s' but not set" % (qualname, name))
    return kwargs


def _call(command, params):
    klass, target = _resolve(command)
    if klass is None:
        return target(**_bind(target, params, command, skip_self=False))
    init = klass.__init__
    init_kwargs = {} if init is object.__init__ else _bind(init, params, klass.__name__ + ".__init__", True)
    instance = klass(**init_kwargs)
    method = getattr(instance, target)
    return method(**_bind(method, params, command, skip_self=isinstance(method, types.MethodType)))


def _user_backtrace(exc):
    """Return the user's frames of the traceback, one 'File "f", line N, in name' (+ source) each."""
    import traceback  # only on failure: its import costs a no-op task start-up time

    here = os.path.abspath(__file__)
    frames = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == here:
            continue
        text = 'File "%s", line %s, in %s' % (frame.filename, frame.lineno, frame.name)
        if frame.line:
            text += "\n    " + frame.line
        frames.append(text)
    return frames


def _exit_error(exc):
    """Digdag's report of a SystemExit, and the exit code to end with: the code if non-zero, else 1."""
    if exc.code is None or isinstance(exc.code, int):
        code, note = int(exc.code or 0), ""
    else:  # sys.exit("text") would print the text and exit 1
        code, note = 1, " (sys.exit message: %s)" % (exc.code,)
    message = (
        "Failed to call python command with code:%d Possible cause: Invalid python module call, "
        "duplicate module name with standard library%s" % (code, note)
    )
    # A failed task never exits 0, and an exit status is one byte: 256 would read as 0.
    exit_code = code if 0 < code < 256 else 1
    return {"class": "SystemExit", "message": message, "backtrace": _user_backtrace(exc)}, exit_code


def _output(env, error):
    """Return the text of OUT_JSON and the error it reports (None when the task succeeded)."""
    values = {
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
            "message": "a value stored by the task is not JSON-serialisable: %s" % exc,
        }
    if error is not None:
        values["error"] = error
    return json.dumps(values), error


def main(argv):
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
    error = None
    exit_code = 0
    try:
        _call(command, params)
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
