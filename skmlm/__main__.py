"""``python -m skmlm``: fit the bundled sleepstudy data and print the summary."""

from . import MixedLinearRegressor
from .datasets import load_sleepstudy


def main():
    df = load_sleepstudy()
    model = MixedLinearRegressor(random_slopes=["Days"], reml=True)
    model.fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    print("Reaction ~ Days + (Days | Subject) on lme4's sleepstudy data\n")
    print(model.summary())


if __name__ == "__main__":
    main()
