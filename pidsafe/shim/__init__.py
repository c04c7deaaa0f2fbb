"""pidsafe.shim: containerd-shim-pidsafe-v1, a containerd runtime v2 shim.

``pidsafe.shim._messages`` holds the containerd 1.6 messages, generated from
the vendored protos (scripts/gen_shim_messages.py).
"""
