"""Talking to remotes: fetch and push, pushes over smart HTTP and git:// (dulwich),
proxies, pushes to a local repository, the objects a push sends, credentials
and remote URLs."""
