"""ClientApp: a meshrl PPO worker on this SuperNode's part of the twin.

`--node-config 'partition-id=P num-partitions=N'` on the SuperNode picks the part: the mesh every
worker shares is split into N sites around spread-out centres, and this worker learns from the
packets site P's nodes originate (meshrl.federated.Worker). Each training round it trains from
the global weights and replies with its delta.
"""

from meshrl.flower import client_app, worker_from_context

app = client_app(worker_from_context)
