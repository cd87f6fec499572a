"""Must NOT type-check: mypy --strict reports each call below (CI checks that it does)."""

import actorflow


@actorflow.flow
def greet(ctx: actorflow.Context, name: str) -> str:
    return f"hello {name}"


def main(rt: actorflow.Runtime) -> None:
    rt.start(greet, 1, 2, 3)  # too many arguments, and an int for a str
    rt.start(greet, nom="ada")  # an unknown keyword
    number: int = rt.start(greet, "ada").result()  # the result is a str
    print(number)
