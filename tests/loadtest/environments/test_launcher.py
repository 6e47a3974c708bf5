"""Stopping a launched environment: a Ctrl-C during the teardown neither cuts it short
nor is lost."""

import os
import signal

import pytest

from loadtest.environments.launcher import _interrupts_deferred


def test_a_ctrl_c_during_a_teardown_is_raised_once_it_is_done() -> None:
    before = signal.getsignal(signal.SIGINT)
    stopped = []
    with pytest.raises(KeyboardInterrupt), _interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)  # handled before the next line runs
        stopped.append("every process")  # the teardown carries on
    assert stopped == ["every process"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_teardown_without_a_ctrl_c_raises_nothing() -> None:
    before = signal.getsignal(signal.SIGINT)
    with _interrupts_deferred():
        stopped = True
    assert stopped
    assert signal.getsignal(signal.SIGINT) is before
