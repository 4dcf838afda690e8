"""The one exception type that reaches the user as a one-line message."""


class BpdError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: a supervisor stopping bpd or its terminal closing, handled as Ctrl-C is
    (bpd_app/cli.py raises it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        import signal

        return signal.Signals(self.signum).name
