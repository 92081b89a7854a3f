"""The loss in TensorBoard, against steps and against accelerated time."""

from dlnlab.callbacks.base import NetworkCallback


class LossLogger(NetworkCallback):
    """`loss` and `time/accelerated` at the steps the record marks worth logging (dlnlab.record.
    Schedule: a grid in accelerated time and every move of log L by `run.log_loss_rtol`), in the
    network's `run` series; `vs_t/loss` against accelerated time."""

    def start(self, replica, task):
        return _Losses(replica)


class _Losses:
    def __init__(self, replica):
        self.replica = replica

    def update(self, trajectory) -> None:
        if self.replica.tensorboard is None:
            return
        steps = trajectory.first_step + trajectory.logged
        t, run = self.replica.time(steps), self.replica.tensorboard["run"]
        run.scalars(steps, ("loss",), trajectory.losses[trajectory.logged], t=t)
        run.scalars(steps, ("time/accelerated",), t)
