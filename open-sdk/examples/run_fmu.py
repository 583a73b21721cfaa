"""Upload the sample FMU, simulate it with a changed parameter, print the first rows, save a plot.

With `make run` serving in one terminal, from the repository root in another:

    .venv/bin/python open-sdk/examples/run_fmu.py

The API key comes from $FMU_GATEWAY_API_KEY, else from var/dev-api-key (written by `make run`);
the server from $FMU_GATEWAY_URL, else http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fmu_gateway_sdk import FMUGatewayClient

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description="Simulate an FMU on FMU Gateway.")
    parser.add_argument("fmu", nargs="?", type=Path, default=REPO / "var" / "samples" / "VanDerPol.fmu",
                        help="the .fmu file (default: the sample built by `make sample`)")
    parser.add_argument("--mu", type=float, default=2.5, help="the Van der Pol damping parameter")
    parser.add_argument("--stop-time", type=float, default=20.0)
    parser.add_argument("--plot", type=Path, default=REPO / "var" / "run_fmu.png", help="where to save the plot")
    args = parser.parse_args()

    api_key = os.environ.get("FMU_GATEWAY_API_KEY") or (REPO / "var" / "dev-api-key").read_text().strip()
    with FMUGatewayClient(api_key=api_key) as client:
        fmu = client.fmus.upload(args.fmu)  # skipped when the server already has these bytes
        print(f"{fmu.model_name} ({fmu.id}), FMI {fmu.fmi_version}; parameters: "
              + ", ".join(f"{p.name}={p.start}" for p in fmu.parameters))

        result = client.simulate(fmu, start_values={"mu": args.mu}, stop_time=args.stop_time)
        print(f"run {result.run.id} {result.run.status}: {len(result)} rows in {result.run.timings.run_s:.3f} s")

        try:
            print(result.to_pandas().head(10).to_string(index=False))
        except ImportError:  # pandas is an optional extra; NumPy comes with [arrow]
            print(result.to_numpy()[:10])

        try:
            result.plot(filename=args.plot)
            print(f"plot saved to {args.plot}")
        except ImportError as exc:
            print(f"no plot: {exc}")


if __name__ == "__main__":
    main()
