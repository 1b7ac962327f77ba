"""Command-line flags a user mistypes are refused at once, naming the flag."""

from __future__ import annotations

import pytest

from pinnace.cli.main import build_parser


@pytest.mark.parametrize("argv", [["server", "--kubelet-port", "0"],
                                  ["agent", "--kubelet-port", "70000"]])
def test_the_kubelet_port_must_be_a_real_port(argv: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Port 0 would have the node advertise a port nothing listens on:
    # `kubectl logs` and `exec` could never reach the node.
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --kubelet-port:" in err and "must be between 1 and 65535, inclusive" in err


def test_a_kubelet_port_in_range_is_taken() -> None:
    assert build_parser().parse_args(["agent", "--kubelet-port", "10251"]).kubelet_port == 10251
