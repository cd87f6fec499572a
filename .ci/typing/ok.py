"""Type-checks clean with mypy --strict after `pip install -e .`: flows, handles and results are typed."""

import actorflow


@actorflow.flow
def greet(ctx: actorflow.Context, name: str) -> str:
    return f"hello {name}"


@actorflow.flow
def parent(ctx: actorflow.Context, names: list[str]) -> int:
    children = [ctx.start(greet, name) for name in names]
    return sum(len(child.result()) for child in children)


def main() -> None:
    with actorflow.Runtime("typed.db") as rt:
        run: actorflow.RunHandle[str] = rt.start(greet, "ada")
        text: str = run.result(timeout=10)
        total: int = rt.start(parent, ["a", "b"]).result()
        print(text, total)
