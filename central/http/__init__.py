"""HTTP layer of the endpoint: FastAPI routers for the agent API and the read API."""
