"""The ``moodring`` command line. Sub-commands import their heavy modules only when run."""

from __future__ import annotations

import importlib

import click

# name -> (module:attribute, one-line help shown by `moodring --help`). Each command lives with
# its role; this table is the only place that lists them, and it imports none of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": (
        "inference.serve.analyze:analyze_command",
        "Read the emotion of every face in a photo (offline).",
    ),
    "submit": (
        "inference.api.submit:submit_command",
        "Send one photo through the queue to a worker (smoke test).",
    ),
    "evaluate": (
        "inference.training.evaluate:evaluate_command",
        "Score the model on an ImageFolder tree of faces.",
    ),
    "train": (
        "inference.training.train_cli:train_command",
        "Train the ResNet50 on FER2013 (resumable, CPU or GPU).",
    ),
    "average": (
        "inference.training.average:average_command",
        "Average a run's last epochs' weights (SWA-style).",
    ),
    "interpolate": (
        "inference.training.average:interpolate_command",
        "Export a model between two others' weights (WiSE-FT).",
    ),
    "quantize": (
        "inference.training.quantize_cli:quantize_command",
        "Write the int8 trunk for CPU serving and measure it against fp32.",
    ),
    "calibrate": (
        "inference.training.calibrate:calibrate_command",
        "Fit the softmax temperature on labelled faces.",
    ),
    "adapt": (
        "inference.training.community:adapt_group",
        "Community calibration: fit, show or roll back the adapter learnt from users.",
    ),
    "recommend": ("recommender.cli:recommend_command", "Recommend music for an emotion (offline catalog)."),
    "catalog": ("recommender.cli:catalog_group", "Import a CSV track table (Spotify URIs + audio features)."),
    "worker": (
        "inference.worker.__main__:worker_command",
        "Consume analysis jobs from the queue (scales out).",
    ),
    "bot": ("bot.__main__:bot_command", "Run the Discord bot (needs MOODRING_DISCORD_TOKEN)."),
    "doctor": (
        "bot.doctor:doctor_command",
        "Check a deployment end to end; exit 0 when nothing is a problem.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use (no torch for `--help`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name][0].split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="moodring")
def cli() -> None:
    """moodring: selfie → emotion (ResNet50, FER2013) → Grad-CAM → music for the mood."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
