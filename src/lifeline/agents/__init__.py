"""AI agents escalate for themselves: the MCP server, its tools, and the CLI forms."""
