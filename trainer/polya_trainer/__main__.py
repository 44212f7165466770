"""Pod entrypoint: ``python -m polya_trainer STAGE --spec FILE --workdir DIR --arm ARM``."""

from polya_trainer.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["stage", *__import__("sys").argv[1:]]))
