"""The one entry-point wrapper of every command (train.py, validate.py, python -m mindcv_lite.<command>): a user
error ends the command with a one-line message and a non-zero exit code, never a traceback."""
import argparse
import sys

__all__ = ["ArgumentParser", "CommandStopped", "STOPPED_EXIT_CODE", "on_failure", "run_command"]

# sysexits.h EX_TEMPFAIL ("try again later"): stopped on request (SIGTERM/SIGINT) with a checkpoint to resume from.
STOPPED_EXIT_CODE = 75

# Wrong paths, values, files, settings; a diverged run (FloatingPointError); a missing optional package.
USER_ERRORS = (ValueError, OSError, FloatingPointError, ImportError)


# The command run_command is running: its parsers' name in usage and errors (argparse would say "__main__.py").
_command_names = []


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with a one-line error and exit code 2 (argparse prints its whole usage line first)."""

    def __init__(self, *args, **kwargs):
        if _command_names and not args and "prog" not in kwargs:
            kwargs["prog"] = _command_names[-1]
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message.rstrip('.')} (see {self.prog} --help)\n")


class CommandStopped(Exception):
    """Not an error: the command stopped on request; its message says how to continue."""

    exit_code = STOPPED_EXIT_CODE


_failure_hooks = []


def on_failure(hook):
    """Call `hook(exit_code)` when a command fails (after its message, before it exits): an msrun worker leaves at
    once instead of shutting down in an orderly way, which its peers would take for a finished run."""
    _failure_hooks.append(hook)


def _fail(exit_code):
    for hook in _failure_hooks:
        hook(exit_code)
    sys.exit(exit_code)


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def run_command(main, name, argv=None):
    """Call `main(argv)`; exit 0 on success, else print `<name>: error: <message>` (or `<name>: <message>` when
    stopped) on stderr and exit with the error's `exit_code` (1 by default; 2 for a bad command line, from
    argparse; 130 for Ctrl-C outside training). Programming errors (TypeError, ...) keep their traceback."""
    _command_names.append(name)
    try:
        main(argv)
    except CommandStopped as stopped:
        print(f"{name}: {_one_line(stopped)}", file=sys.stderr)
        sys.exit(stopped.exit_code)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        _fail(130)
    except USER_ERRORS as error:
        print(f"{name}: error: {_one_line(error)}", file=sys.stderr)
        _fail(getattr(error, "exit_code", 1))
    finally:
        _command_names.pop()
