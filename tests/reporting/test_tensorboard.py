"""``--tensorboard``: per-trial scalars with tensorboardX (read back with its event reader)."""

from __future__ import annotations

from tensorboardX.event_file_writer import EventFileWriter  # noqa: F401  (tensorboardX present)

from pbtune.engines.base import Trial
from pbtune.results.tensorboard import TensorBoardLogger


def read_scalars(directory):
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):  # TFRecord: len(8) crc(4) payload crc(4)
            length = int.from_bytes(data[pos:pos + 8], "little")
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 16 + length
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_scalars_per_trial_with_config(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    trial = Trial("t001", {"lr": 0.1}, seed=0)
    for it, lr in ((1, 0.1), (2, 0.5)):
        logger.on_result(trial, {"iteration": it, "score": it * 1.5, "loss": float("nan"),
                                 "config": {"lr": lr, "opt": "sgd"}, "worker": 0, "node": "x"})
    logger.on_end({}, None)
    scalars = read_scalars(tmp_path / "tensorboard" / "t001")
    assert scalars["score"] == [(1, 1.5), (2, 3.0)]
    assert [round(v, 6) for _, v in scalars["config/lr"]] == [0.1, 0.5]
    assert "loss" not in scalars and "config/opt" not in scalars and "worker" not in scalars
