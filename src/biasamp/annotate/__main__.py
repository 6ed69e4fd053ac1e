"""`python -m biasamp.annotate sample|serve|export …`: the same commands as `biasamp annotate`."""

from biasamp.annotate.commands import annotate_app

if __name__ == "__main__":
    annotate_app(prog_name="biasamp annotate")
