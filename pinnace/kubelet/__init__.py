"""pinnace.kubelet: the node agent (agent.py and what it drives) and the
simulated nodes (sim.py). Import the module you need: the package imports
nothing itself, so the API server reading one helper (podstatus.rfc3339)
does not load the simulator too."""
