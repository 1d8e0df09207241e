"""WeChat Pay protocol core: pure message building, parsing, signing and ciphers.

Nothing in this package opens a socket, reads a clock or draws random numbers: timestamps,
nonces and keys are arguments. The client and the simulator are the two shells around it.
"""
