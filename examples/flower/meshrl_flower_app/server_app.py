"""ServerApp: Flower's FedAvg loop with a meshrl robust rule as the aggregation."""

from flwr.app import Context

from meshrl.flower import MeshrlStrategy, server_app, strategy_from_run_config


def strategy(context: Context) -> MeshrlStrategy:
    # The run config's [strategy] table (pyproject.toml, or `flwr run -c "strategy.rule='krum'"`).
    # Written out, the same thing reads e.g.
    #     MeshrlStrategy("krum", {"num_byzantine": 1}, nnm=True, min_available_nodes=5, min_train_nodes=5)
    return strategy_from_run_config(context.run_config)


app = server_app(strategy)
